import t from 'tap'
import { build } from './helpers/app.js'

t.test('health and discovery answer', async (t) => {
  const { app } = await build(t)
  const health = await app.inject({ method: 'GET', url: '/healthz' })
  t.equal(health.statusCode, 200)
  t.same(health.json(), { status: 'ok' })
  t.match(health.headers['x-request-id'], /^[0-9a-f-]{36}$/)

  const ready = await app.inject({ method: 'GET', url: '/readyz' })
  t.equal(ready.statusCode, 200)
  t.same(ready.json().checks, { database: 'up', redis: 'up' })

  const jwks = await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })
  t.equal(jwks.statusCode, 200)
  t.equal(jwks.json().keys.length, 1)
  t.equal(jwks.json().keys[0].alg, 'RS256')
  t.notOk(jwks.json().keys[0].d, 'no private member')
  t.equal(jwks.headers['cache-control'], 'public, max-age=300')
})

t.test('RFC 8414 metadata describes what the server does', async (t) => {
  const { app, config } = await build(t)
  const answer = await app.inject({ method: 'GET', url: '/.well-known/oauth-authorization-server' })
  t.equal(answer.statusCode, 200)
  const metadata = answer.json()
  t.equal(metadata.issuer, config.ISSUER)
  t.equal(metadata.jwks_uri, `${config.ISSUER}/.well-known/jwks.json`)
  t.equal(metadata.token_endpoint, `${config.ISSUER}/v1/auth/token`)
  t.equal(metadata.revocation_endpoint, `${config.ISSUER}/v1/auth/revoke`)
  t.same(metadata.token_endpoint_auth_methods_supported, ['none'])
  t.same(metadata.code_challenge_methods_supported, ['S256'])
  // Every advertised grant is one the token endpoint accepts.
  for (const grant of metadata.grant_types_supported as string[]) {
    const tried = await app.inject({ method: 'POST', url: '/v1/auth/token', payload: { grant_type: grant } })
    t.not(tried.json().error, 'unsupported_grant_type', `${grant} is supported`)
  }
})
