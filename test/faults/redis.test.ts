import type { InjectOptions } from 'fastify'
import t from 'tap'
import { build } from '../helpers/app.js'
import { eventually, startOwnRedis } from '../helpers/faults.js'
import { STRONG_PASSWORD, signUpAndLogin } from '../helpers/flows.js'
import { startSmtpServer } from '../helpers/smtp.js'

// Redis goes away and comes back; the machine's shared Redis is never touched: the test runs a
// redis-server of its own (append-only, so a restart keeps the data, as production's should).

t.test('Redis outage: fail closed, fast, and recover without a restart', async (t) => {
  const redis = await startOwnRedis(t)
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  const { app, logs } = await build(t, { SMTP_URL: smtp.url, REDIS_URL: redis.url })
  const tokens = await signUpAndLogin(app, smtp, 'outage@example.com')
  const bearer = { authorization: `Bearer ${tokens.access_token}` }

  /** One request, with how long it took: an outage must not hold requests. */
  const timed = async (options: InjectOptions) => {
    const started = performance.now()
    const response = await app.inject(options)
    return { response, ms: performance.now() - started }
  }
  const refresh = (token: string) =>
    timed({
      method: 'POST',
      url: '/v1/auth/token',
      payload: { grant_type: 'refresh_token', refresh_token: token },
    })

  // A refresh whose answer never reached the client (a crash after spending the token): the
  // client retries within the grace window and gets the same successor.
  const lost = await refresh(tokens.refresh_token)
  const retried = await refresh(tokens.refresh_token)
  t.equal(retried.response.statusCode, 200)
  t.equal(retried.response.json().refresh_token, lost.response.json().refresh_token, 'the same successor')
  const current: string = retried.response.json().refresh_token

  await redis.stop()

  const outage = {
    refresh: await refresh(current),
    login: await timed({
      method: 'POST',
      url: '/v1/auth/login',
      payload: { email: 'outage@example.com', password: STRONG_PASSWORD },
    }),
    logout: await timed({ method: 'POST', url: '/v1/auth/logout', payload: { refresh_token: current } }),
    mfa: await timed({
      method: 'POST',
      url: '/v1/auth/mfa/verify',
      payload: { mfa_token: 'x'.repeat(43), code: '123456' },
    }),
    me: await timed({ method: 'GET', url: '/v1/me', headers: bearer }),
  }
  for (const [name, { response, ms }] of Object.entries(outage)) {
    t.equal(response.statusCode, 503, `${name}: 503`)
    t.ok(response.headers['retry-after'], `${name}: Retry-After`)
    t.ok(ms < 8000, `${name}: answered in ${Math.round(ms)} ms, not held`)
  }
  t.equal(
    outage.refresh.response.json().error,
    'temporarily_unavailable',
    'the token endpoint in RFC 6749 shape',
  )
  t.equal(outage.login.response.json().code, 'service_unavailable')
  t.notOk(outage.refresh.response.json().access_token, 'nothing issued without the reuse check')

  const ready = await app.inject({ method: 'GET', url: '/readyz' })
  t.equal(ready.statusCode, 503)
  t.same(ready.json().checks, { database: 'up', redis: 'down' })
  t.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200, 'still alive')

  await redis.start()
  t.ok(
    await eventually(async () => (await app.inject({ method: 'GET', url: '/readyz' })).statusCode === 200),
    'ready again by itself',
  )
  const after = await refresh(current)
  t.equal(
    after.response.statusCode,
    200,
    'the refresh token from before the outage still works: nothing lost',
  )
  const login = await app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    payload: { email: 'outage@example.com', password: STRONG_PASSWORD },
  })
  t.equal(login.statusCode, 200)
  const metrics = await app.inject({ method: 'GET', url: '/metrics' })
  t.match(
    metrics.body,
    /latchkey_dependency_errors_total\{dependency="redis"\} [1-9]/,
    'counted in the metrics',
  )
  t.notMatch(logs.text, /"level":50.*"msg":"unhandled error"/, 'no 500s')
})
