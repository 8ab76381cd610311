import { decodeJwt, decodeProtectedHeader } from 'jose'
import t from 'tap'
import { build, TestClock } from './helpers/app.js'
import { eventually } from './helpers/faults.js'
import { STRONG_PASSWORD, signUpAndLogin } from './helpers/flows.js'
import { testDatabaseUrl, testRedisUrl } from './helpers/services.js'
import { startSmtpServer } from './helpers/smtp.js'

// Two instances on one PostgreSQL and one Redis behave as one. (The embedded defaults are one
// process by design, so this runs against the real services only.)

if (!testDatabaseUrl || !testRedisUrl) {
  t.skip('scale-out needs TEST_DATABASE_URL and TEST_REDIS_URL', () => {})
} else {
  t.test('two instances behave as one', async (t) => {
    const smtp = await startSmtpServer()
    t.teardown(() => smtp.close())
    // One clock for both, a minute behind real time so that it can be moved on.
    const clock = new TestClock(Date.now() - 60_000)
    const env = { SMTP_URL: smtp.url, JWKS_MAX_AGE: '5', REFRESH_REUSE_GRACE: '10' }
    const a = await build(t, env, { clock, keyRefresh: true })
    const b = await build(t, env, {
      clock,
      keyRefresh: true,
      databaseUrl: a.databaseUrl!,
      redisPrefix: a.redisPrefix,
    })
    const refresh = (app: typeof a.app, token: string) =>
      app.inject({
        method: 'POST',
        url: '/v1/auth/token',
        payload: { grant_type: 'refresh_token', refresh_token: token },
      })
    const login = (app: typeof a.app, password = STRONG_PASSWORD) =>
      app.inject({ method: 'POST', url: '/v1/auth/login', payload: { email: 'pair@example.com', password } })

    const first = await signUpAndLogin(a.app, smtp, 'pair@example.com')

    await t.test('a refresh token rotated on one and replayed on the other', async (t) => {
      const rotated = await refresh(a.app, first.refresh_token)
      t.equal(rotated.statusCode, 200)
      const retry = await refresh(b.app, first.refresh_token)
      t.equal(retry.statusCode, 200, 'within the grace window: the same successor')
      t.equal(retry.json().refresh_token, rotated.json().refresh_token)
      clock.advance(11)
      const reuse = await refresh(b.app, first.refresh_token)
      t.equal(reuse.statusCode, 400, 'after it: reuse')
      t.equal(reuse.json().error, 'invalid_grant')
      const newest = await refresh(a.app, rotated.json().refresh_token)
      t.equal(newest.statusCode, 400, 'and the session is over on the other instance too')
      const events = await a.app.services.administration.auditEvents({
        type: 'auth.refresh_reuse_detected',
        limit: 10,
      })
      t.equal(events.items.length, 1, 'one audit event')
    })

    await t.test('a session revoked through one is refused by the other at once', async (t) => {
      const tokens = (await login(a.app)).json()
      const me = () =>
        b.app.inject({
          method: 'GET',
          url: '/v1/me',
          headers: { authorization: `Bearer ${tokens.access_token}` },
        })
      t.equal((await me()).statusCode, 200)
      const logout = await a.app.inject({
        method: 'POST',
        url: '/v1/auth/logout',
        payload: { refresh_token: tokens.refresh_token },
      })
      t.equal(logout.statusCode, 204)
      t.equal((await me()).statusCode, 401)
      t.equal((await refresh(b.app, tokens.refresh_token)).statusCode, 400)
    })

    await t.test('the cooldown is shared', async (t) => {
      for (let attempt = 0; attempt < 5; attempt += 1) {
        const app = attempt % 2 === 0 ? a.app : b.app
        t.equal((await login(app, `${STRONG_PASSWORD}-wrong`)).statusCode, 401)
      }
      const cooling = await login(b.app)
      t.equal(cooling.statusCode, 401, 'the right password waits on the other instance too')
      clock.advance(2)
      t.equal((await login(a.app)).statusCode, 200, 'after the delay it works')
    })

    await t.test('a key rotated through one is published by the other, and both sign with it', async (t) => {
      const { kid, activatesAt } = await a.app.services.keyRing.rotate()
      const published = await eventually(async () => {
        const jwks = (await b.app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json()
        return jwks.keys.some((key: { kid: string }) => key.kid === kid)
      }, 10_000)
      t.ok(published, 'in the other instance’s JWKS within JWKS_MAX_AGE')
      const before = (await login(b.app)).json().access_token
      t.not(decodeProtectedHeader(before).kid, kid, 'not signing before its activation time')
      clock.current = activatesAt.getTime() + 1000
      for (const app of [a.app, b.app]) {
        const token = (await login(app)).json().access_token
        t.equal(decodeProtectedHeader(token).kid, kid, 'signs after its activation time')
        const other = app === a.app ? b.app : a.app
        const me = await other.inject({
          method: 'GET',
          url: '/v1/me',
          headers: { authorization: `Bearer ${token}` },
        })
        t.equal(me.statusCode, 200, 'and the other instance accepts it')
        t.equal(decodeJwt(token).iss, 'http://latchkey.test')
      }
      const old = await b.app.inject({
        method: 'GET',
        url: '/v1/me',
        headers: { authorization: `Bearer ${before}` },
      })
      t.equal(old.statusCode, 200, 'tokens of the replaced key still verify')
    })
  })
}
