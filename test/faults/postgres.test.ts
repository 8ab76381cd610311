import type { InjectOptions } from 'fastify'
import t from 'tap'
import { build, createTestDatabase } from '../helpers/app.js'
import { eventually, startProxy } from '../helpers/faults.js'
import { STRONG_PASSWORD, signUpAndLogin } from '../helpers/flows.js'
import { testDatabaseUrl } from '../helpers/services.js'
import { startSmtpServer } from '../helpers/smtp.js'

// PostgreSQL goes away behind a TCP proxy the test cuts (every connection reset, new ones
// refused) and restores; the machine's PostgreSQL itself is never stopped.

if (!testDatabaseUrl) {
  t.skip('PostgreSQL faults need TEST_DATABASE_URL (the embedded database cannot be cut)', () => {})
} else {
  t.test('PostgreSQL outage: fail closed, fast, and recover without a restart', async (t) => {
    const direct = new URL((await createTestDatabase(t))!)
    const proxy = await startProxy(t, { host: direct.hostname, port: Number(direct.port || 5432) })
    const proxied = new URL(direct)
    proxied.host = `127.0.0.1:${proxy.port}`
    const smtp = await startSmtpServer()
    t.teardown(() => smtp.close())
    const { app, logs } = await build(t, { SMTP_URL: smtp.url }, { databaseUrl: proxied.toString() })
    const tokens = await signUpAndLogin(app, smtp, 'pg-outage@example.com')

    const timed = async (options: InjectOptions) => {
      const started = performance.now()
      const response = await app.inject(options)
      return { response, ms: performance.now() - started }
    }
    const loginRequest: InjectOptions = {
      method: 'POST',
      url: '/v1/auth/login',
      payload: { email: 'pg-outage@example.com', password: STRONG_PASSWORD },
    }

    proxy.cut()
    const outage = {
      login: await timed(loginRequest),
      me: await timed({
        method: 'GET',
        url: '/v1/me',
        headers: { authorization: `Bearer ${tokens.access_token}` },
      }),
      signup: await timed({
        method: 'POST',
        url: '/v1/auth/signup',
        payload: { email: 'new-during-outage@example.com', password: STRONG_PASSWORD },
      }),
    }
    for (const [name, { response, ms }] of Object.entries(outage)) {
      t.equal(response.statusCode, 503, `${name}: 503 (${response.body.slice(0, 120)})`)
      t.equal(response.json().code, 'service_unavailable')
      t.ok(response.headers['retry-after'], `${name}: Retry-After`)
      t.ok(ms < 8000, `${name}: answered in ${Math.round(ms)} ms`)
    }
    const ready = await app.inject({ method: 'GET', url: '/readyz' })
    t.equal(ready.statusCode, 503)
    t.equal(ready.json().checks.database, 'down')

    proxy.restore()
    t.ok(
      await eventually(async () => (await app.inject({ method: 'GET', url: '/readyz' })).statusCode === 200),
      'ready again by itself',
    )
    t.equal((await app.inject(loginRequest)).statusCode, 200, 'sign-in works again')
    const refreshed = await app.inject({
      method: 'POST',
      url: '/v1/auth/token',
      payload: { grant_type: 'refresh_token', refresh_token: tokens.refresh_token },
    })
    t.equal(refreshed.statusCode, 200, 'the session from before the outage is intact')
    t.notOk(
      await app.services.users.findByEmail('new-during-outage@example.com'),
      'the sign-up that failed left nothing behind',
    )
    t.notMatch(
      logs.text,
      /\$argon2id\$|params: /,
      'no query parameters (password hashes, emails) in the logs',
    )
    const metrics = await app.inject({ method: 'GET', url: '/metrics' })
    t.match(metrics.body, /latchkey_dependency_errors_total\{dependency="database"\} [1-9]/)
  })

  t.test(
    'a proxy that accepts and then closes during the handshake: 503 at the deadline, then recovery',
    async (t) => {
      const direct = new URL((await createTestDatabase(t))!)
      const proxy = await startProxy(t, { host: direct.hostname, port: Number(direct.port || 5432) })
      const proxied = new URL(direct)
      proxied.host = `127.0.0.1:${proxy.port}`
      // postgres.js keeps reconnecting with the query queued when the server end closes each new
      // connection cleanly: only the request deadline answers.
      const { app } = await build(
        t,
        { REQUEST_TIMEOUT: '2', EMAIL_VERIFICATION: 'optional' },
        { databaseUrl: proxied.toString() },
      )
      const login: InjectOptions = {
        method: 'POST',
        url: '/v1/auth/login',
        payload: { email: 'handshake@example.com', password: STRONG_PASSWORD },
      }
      const signup = await app.inject({ ...login, url: '/v1/auth/signup' })
      t.equal(signup.statusCode, 202)
      t.equal((await app.inject(login)).statusCode, 200)

      proxy.cutQuietly()
      // The pooled connections are reset by the cut, and a query already on one fails at once
      // (503 too). Once the pool has seen that, a query must open a new connection.
      await new Promise((resolve) => setTimeout(resolve, 300))
      let stuck = await app.inject(login)
      t.equal(stuck.statusCode, 503, 'during the cut: 503')
      let ms = 0
      for (let attempt = 0; attempt < 3; attempt++) {
        const started = performance.now()
        stuck = await app.inject(login)
        ms = performance.now() - started
        t.equal(stuck.statusCode, 503, `attempt ${attempt + 1}: 503`)
        if (ms >= 1000) break
      }
      t.equal(stuck.statusCode, 503, stuck.body.slice(0, 120))
      t.equal(stuck.json().code, 'service_unavailable')
      t.ok(stuck.headers['retry-after'], 'Retry-After')
      t.ok(ms >= 1900 && ms < 4000, `answered at the 2 s deadline (${Math.round(ms)} ms)`)

      proxy.restore()
      t.ok(
        await eventually(async () => (await app.inject(login)).statusCode === 200),
        'sign-in works again by itself',
      )
    },
  )
}
