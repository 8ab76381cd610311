import t from 'tap'
import { start as startExpress } from '../../examples/resource-servers/express.js'
import { start as startFastify } from '../../examples/resource-servers/fastify.js'
import { start as startJose } from '../../examples/resource-servers/jose.js'
import { build } from '../helpers/app.js'
import { freePort } from '../helpers/faults.js'
import { signUpAndLogin } from '../helpers/flows.js'
import { startSmtpServer } from '../helpers/smtp.js'

// The README's "integrating a resource server" examples, run against a real Latchkey over HTTP:
// each must accept Latchkey's access tokens, refuse forged and foreign ones, and check scope.

t.test('resource server examples verify Latchkey tokens', async (t) => {
  const port = await freePort()
  const issuer = `http://127.0.0.1:${port}`
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  const { app } = await build(t, { SMTP_URL: smtp.url, ISSUER: issuer })
  await app.listen({ port, host: '127.0.0.1' })
  const tokens = await signUpAndLogin(app, smtp, 'reader@example.com')
  const narrowed = (
    await app.inject({
      method: 'POST',
      url: '/v1/auth/login',
      payload: {
        email: 'reader@example.com',
        password: 'correct horse battery staple 42!',
        scope: 'sessions',
      },
    })
  ).json().access_token as string
  const [header, payload, signature] = tokens.access_token.split('.')
  const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString())
  const tampered = [
    header,
    Buffer.from(JSON.stringify({ ...claims, sub: 'someone-else' })).toString('base64url'),
    signature,
  ].join('.')
  for (const [name, start] of [
    ['jose', startJose],
    ['@fastify/jwt + get-jwks', startFastify],
    ['express-oauth2-jwt-bearer', startExpress],
  ] as const) {
    await t.test(name, async (t) => {
      const server = await start({ issuer })
      t.teardown(() => server.close())
      const get = (token?: string) =>
        fetch(`${server.url}/notes`, { headers: token ? { authorization: `Bearer ${token}` } : {} })
      const ok = await get(tokens.access_token)
      t.equal(ok.status, 200)
      t.same(await ok.json(), { sub: claims.sub, scope: 'profile sessions' })
      t.equal((await get()).status, 401, 'no token')
      t.equal((await get(tampered)).status, 401, 'a tampered token')
      const scoped = await get(narrowed)
      t.equal(scoped.status, 403, 'a token without the profile scope')
      t.match(scoped.headers.get('www-authenticate'), /insufficient_scope/)
      const otherAudience = await start({ issuer, audience: 'https://other-api.example' })
      t.teardown(() => otherAudience.close())
      const wrongAudience = await fetch(`${otherAudience.url}/notes`, {
        headers: { authorization: `Bearer ${tokens.access_token}` },
      })
      t.equal(wrongAudience.status, 401, 'a token for another audience')
    })
  }
})
