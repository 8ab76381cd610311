import t from 'tap'
import { build, TestClock } from '../helpers/app.js'
import { STRONG_PASSWORD, signUpAndLogin } from '../helpers/flows.js'
import { startSmtpServer } from '../helpers/smtp.js'

const METRICS_TOKEN = 'metrics-token-0123456789abcdef'

/** The value of one sample line of a Prometheus text answer, or undefined. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue
    const match = line.match(/^([a-zA-Z0-9_:]+)(?:\{(.*)\})? (\S+)$/)
    if (!match || match[1] !== name) continue
    const present = Object.fromEntries(
      [...(match[2] ?? '').matchAll(/([a-z_]+)="([^"]*)"/g)].map(([, key, value]) => [key, value]),
    )
    if (Object.entries(labels).every(([key, value]) => present[key] === value)) return Number(match[3])
  }
  return undefined
}

t.test('GET /metrics', async (t) => {
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  const clock = new TestClock(Date.now() - 300_000)
  const { app } = await build(t, { SMTP_URL: smtp.url, METRICS_TOKEN }, { clock })
  const scrape = async () => {
    const response = await app.inject({
      method: 'GET',
      url: '/metrics',
      headers: { authorization: `Bearer ${METRICS_TOKEN}` },
    })
    t.equal(response.statusCode, 200)
    t.match(response.headers['content-type'], /^text\/plain; version=0\.0\.4/)
    return response.body
  }

  const anonymous = await app.inject({ method: 'GET', url: '/metrics' })
  t.equal(anonymous.statusCode, 401)
  t.equal(anonymous.headers['www-authenticate'], 'Bearer realm="metrics"')
  const wrong = await app.inject({
    method: 'GET',
    url: '/metrics',
    headers: { authorization: `Bearer ${METRICS_TOKEN}x` },
  })
  t.equal(wrong.statusCode, 401)

  const tokens = await signUpAndLogin(app, smtp, 'metrics@example.com')
  const badLogin = await app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    payload: { email: 'metrics@example.com', password: `${STRONG_PASSWORD}x` },
  })
  t.equal(badLogin.statusCode, 401)
  const refresh = (token: string) =>
    app.inject({
      method: 'POST',
      url: '/v1/auth/token',
      payload: { grant_type: 'refresh_token', refresh_token: token },
    })
  t.equal((await refresh(tokens.refresh_token)).statusCode, 200)
  t.equal((await refresh(tokens.refresh_token)).statusCode, 200, 'a retry within the grace window')
  clock.advance(app.config.REFRESH_REUSE_GRACE + 1)
  t.equal((await refresh(tokens.refresh_token)).statusCode, 400, 'reuse after it')
  t.equal((await refresh('not-a-token')).statusCode, 400)

  const text = await scrape()
  t.equal(sample(text, 'latchkey_logins_total', { method: 'password', outcome: 'success' }), 1)
  t.equal(sample(text, 'latchkey_logins_total', { method: 'password', outcome: 'invalid_credentials' }), 1)
  t.equal(sample(text, 'latchkey_refreshes_total', { outcome: 'rotated' }), 1)
  t.equal(sample(text, 'latchkey_refreshes_total', { outcome: 'grace_retry' }), 1)
  t.equal(sample(text, 'latchkey_refreshes_total', { outcome: 'reuse_detected' }), 1)
  t.equal(sample(text, 'latchkey_refreshes_total', { outcome: 'invalid' }), 1)
  t.equal(
    sample(text, 'latchkey_http_request_duration_seconds_count', {
      method: 'POST',
      route: '/v1/auth/login',
      status_code: '200',
    }),
    1,
    'latency per route template',
  )
  t.equal(
    sample(text, 'latchkey_http_request_duration_seconds_count', {
      method: 'POST',
      route: '/v1/auth/token',
      status_code: '400',
    }),
    2,
  )
  t.equal(sample(text, 'latchkey_argon2_queue_depth'), 0)
  t.equal(sample(text, 'latchkey_argon2_in_flight'), 0)
  const keyAge = sample(text, 'latchkey_signing_key_age_seconds')
  t.ok(keyAge !== undefined && keyAge >= 0 && keyAge < 3600, `the signing key's age (${keyAge})`)
  t.ok(sample(text, 'latchkey_process_resident_memory_bytes'), 'process metrics')
  t.notMatch(text, /metrics@example\.com|eyJ/, 'no personal data or tokens')

  // A 404 is one series, whatever the URL.
  await app.inject({ method: 'GET', url: '/no/such/path/1' })
  await app.inject({ method: 'GET', url: '/no/such/path/2' })
  t.equal(
    sample(await scrape(), 'latchkey_http_request_duration_seconds_count', {
      route: 'unmatched',
      status_code: '404',
    }),
    2,
  )
})

t.test('rate-limit hits and shed logins are counted; /metrics is open without METRICS_TOKEN', async (t) => {
  const { app } = await build(t, { RATE_LIMIT_LOGIN_IP: '1/minute' })
  const login = () =>
    app.inject({
      method: 'POST',
      url: '/v1/auth/login',
      payload: { email: 'nobody@example.com', password: 'x' },
    })
  t.equal((await login()).statusCode, 401)
  t.equal((await login()).statusCode, 429)
  const response = await app.inject({ method: 'GET', url: '/metrics' })
  t.equal(response.statusCode, 200)
  t.equal(sample(response.body, 'latchkey_rate_limit_hits_total', { limit: 'login_ip' }), 1)
  t.equal(sample(response.body, 'latchkey_logins_total', { method: 'password', outcome: 'rate_limited' }), 1)
})
