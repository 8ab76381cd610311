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
