import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { loadConfig } from '../../src/config.js'
import errorHandler from '../../src/plugins/app/error-handler.js'
import rateLimit, { clientAddressKey } from '../../src/plugins/app/rate-limit.js'
import type { Services } from '../../src/services.js'
import { build } from '../helpers/app.js'
import { eventually } from '../helpers/faults.js'
import { STRONG_PASSWORD } from '../helpers/flows.js'
import { testRedisUrl } from '../helpers/services.js'

const WRONG_PASSWORD = 'not the right password at all'

interface Answer {
  status: number
  headers: Record<string, unknown>
  body: string
  json(): Record<string, unknown>
}

function login(
  app: FastifyInstance,
  email: string,
  options: { remoteAddress?: string; headers?: Record<string, string> } = {},
) {
  return app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    payload: { email, password: WRONG_PASSWORD },
    ...(options.remoteAddress ? { remoteAddress: options.remoteAddress } : {}),
    ...(options.headers ? { headers: options.headers } : {}),
  })
}

/** A real HTTP request from a chosen source address (any 127.0.0.0/8 address on Linux). */
function post(
  port: number,
  path: string,
  body: unknown,
  localAddress: string,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const payload = JSON.stringify(body)
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: 'POST',
        localAddress,
        agent: false,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(payload),
          ...headers,
        },
      },
      (response) => {
        const chunks: Buffer[] = []
        response.on('data', (chunk: Buffer) => chunks.push(chunk))
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            body: text,
            json: () => JSON.parse(text),
          })
        })
      },
    )
    request.on('error', reject)
    request.end(payload)
  })
}

async function listen(app: FastifyInstance): Promise<number> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  return (app.server.address() as AddressInfo).port
}

function signup(
  app: FastifyInstance,
  email: string,
  remoteAddress: string,
  headers: Record<string, string> = {},
) {
  return app.inject({
    method: 'POST',
    url: '/v1/auth/signup',
    remoteAddress,
    headers,
    payload: { email, password: STRONG_PASSWORD },
  })
}

function resend(app: FastifyInstance, email: string, remoteAddress: string) {
  return app.inject({
    method: 'POST',
    url: '/v1/auth/verify-email/resend',
    remoteAddress,
    payload: { email },
  })
}

async function rateLimitEvents(app: FastifyInstance) {
  return app.services.database.db.query.auditEvents.findMany({
    where: (event, { eq }) => eq(event.type, 'rate_limit.exceeded'),
  })
}

/** Asserts a 429 rate_limited problem with Retry-After and the RateLimit-* headers. */
function assertRateLimited(
  t: Test,
  response: { statusCode?: number; status?: number; headers: Answer['headers']; json(): unknown },
  limit: number,
) {
  t.equal(response.statusCode ?? response.status, 429, 'refused with 429')
  t.equal(response.headers['content-type'], 'application/problem+json; charset=utf-8')
  const body = response.json() as Record<string, unknown>
  t.equal(body.code, 'rate_limited')
  t.equal(body.status, 429)
  t.same(Object.keys(body).sort(), ['code', 'detail', 'request_id', 'status', 'title', 'type'])
  const retryAfter = Number(response.headers['retry-after'])
  t.ok(Number.isInteger(retryAfter) && retryAfter >= 1, `Retry-After is whole seconds (${retryAfter})`)
  t.equal(response.headers['ratelimit-limit'], String(limit), 'RateLimit-Limit')
  t.equal(response.headers['ratelimit-remaining'], '0', 'RateLimit-Remaining')
  t.equal(response.headers['ratelimit-reset'], String(retryAfter), 'RateLimit-Reset')
}

t.test('client address key: IPv4 as is, IPv6 per /64, mapped IPv4 as IPv4', async (t) => {
  t.equal(clientAddressKey('203.0.113.7'), '203.0.113.7')
  t.equal(clientAddressKey('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64')
  t.equal(clientAddressKey('2001:0DB8:0001:0002:ffff:ffff:ffff:ffff'), '2001:db8:1:2::/64', 'normalised')
  t.equal(clientAddressKey('2001:db8:1:2::1'), '2001:db8:1:2::/64', 'compressed host part')
  t.equal(clientAddressKey('2001:db8::1'), '2001:db8:0:0::/64', 'compressed network part')
  t.not(clientAddressKey('2001:db8:1:3::1'), clientAddressKey('2001:db8:1:2::1'), 'another /64')
  t.equal(clientAddressKey('::ffff:198.51.100.4'), '198.51.100.4', 'mapped IPv4, dotted')
  t.equal(clientAddressKey('::FFFF:c633:6404'), '198.51.100.4', 'mapped IPv4, hex')
  t.equal(clientAddressKey('::1'), '0:0:0:0::/64')
  t.equal(clientAddressKey('fe80::1%eth0'), 'fe80:0:0:0::/64', 'zone id dropped')
  t.equal(clientAddressKey('64:ff9b::198.51.100.4'), '64:ff9b:0:0::/64', 'NAT64 stays IPv6')
  t.equal(clientAddressKey(undefined), 'unknown')
})

t.test('a per-account limit placed before validation is refused at registration', async (t) => {
  // A bare app, as the OpenAPI generator builds it: configuration, no services.
  const app = Fastify()
  app.decorate('config', loadConfig({ NODE_ENV: 'test' }))
  await app.register(errorHandler)
  await app.register(rateLimit, { services: {} as Services })
  await app.register(async (child) => {
    t.throws(
      () => child.post('/misplaced', { onRequest: child.rateLimits.emailAccount }, async () => ({})),
      /must be a preHandler/,
    )
    child.post('/placed', { preHandler: child.rateLimits.emailAccount }, async () => ({}))
  })
  await app.ready()
  t.teardown(() => app.close())
})

t.test('limits with small settings (TRUST_PROXY unset)', async (t) => {
  const { app, logs } = await build(t, {
    RATE_LIMIT_DEFAULT: '3/minute',
    RATE_LIMIT_LOGIN_IP: '4/minute',
    RATE_LIMIT_LOGIN_ACCOUNT: '2/minute',
    RATE_LIMIT_EMAIL_IP: '3/minute',
    RATE_LIMIT_EMAIL_ACCOUNT: '2/minute',
    EMAIL_VERIFICATION: 'optional',
  })

  await t.test('login: per address, trips at exactly the configured number', async (t) => {
    // Of the two limits (4 per address, 2 per account and address), the answer shows the one
    // closest to exhaustion.
    const shown = []
    for (let attempt = 1; attempt <= 4; attempt++) {
      const response = await login(app, `user${attempt}@example.com`, { remoteAddress: '192.0.2.10' })
      t.equal(response.statusCode, 401, `attempt ${attempt} is answered`)
      t.ok(Number(response.headers['ratelimit-reset']) >= 1, 'RateLimit-Reset')
      t.notOk(response.headers['retry-after'])
      shown.push(`${response.headers['ratelimit-limit']}/${response.headers['ratelimit-remaining']}`)
    }
    // At the third attempt both limits have one left: either may be shown (ties go by reset time,
    // which depends on how fast the machine is).
    t.same(
      [shown[0], shown[1], shown[3]],
      ['2/1', '2/1', '4/0'],
      'RateLimit-Limit/-Remaining on every answer',
    )
    t.ok(['2/1', '4/1'].includes(shown[2] ?? ''), `a tie shows either limit (${shown[2]})`)
    const refused = await login(app, 'user5@example.com', { remoteAddress: '192.0.2.10' })
    assertRateLimited(t, refused, 4)
    t.ok(Number(refused.headers['retry-after']) <= 60)
    t.notMatch(refused.body, /user5|example\.com|password/i, 'the body names no account')

    const other = await login(app, 'user5@example.com', { remoteAddress: '192.0.2.11' })
    t.equal(other.statusCode, 401, 'another address has its own budget')

    // The login limit counts before the body is read: a bad body counts, and is refused.
    const badBody = await app.inject({
      method: 'POST',
      url: '/v1/auth/login',
      remoteAddress: '192.0.2.10',
      payload: { email: 'x@example.com' },
    })
    t.equal(badBody.statusCode, 429)
  })

  await t.test('login: IPv6 clients are counted per /64', async (t) => {
    const same64 = ['2001:db8:1:2::1', '2001:db8:1:2:aaaa::9', '2001:db8:1:2::1', '2001:db8:1:2::2']
    for (const [n, address] of same64.entries())
      t.equal((await login(app, `six${n}@example.com`, { remoteAddress: address })).statusCode, 401)
    t.equal((await login(app, 'v@example.com', { remoteAddress: '2001:db8:1:2::77' })).statusCode, 429)
    t.equal((await login(app, 'v@example.com', { remoteAddress: '2001:db8:1:3::1' })).statusCode, 401)
    const mapped = ['::ffff:192.0.2.1', '192.0.2.1', '::ffff:192.0.2.1', '192.0.2.1']
    for (const [n, address] of mapped.entries())
      t.equal((await login(app, `four${n}@example.com`, { remoteAddress: address })).statusCode, 401)
    t.equal(
      (await login(app, 'm@example.com', { remoteAddress: '192.0.2.1' })).statusCode,
      429,
      'mapped is IPv4',
    )
  })

  await t.test('login: per account and address, the same for known and unknown accounts', async (t) => {
    const signup = await app.inject({
      method: 'POST',
      url: '/v1/auth/signup',
      remoteAddress: '192.0.2.19',
      payload: { email: 'known@example.com', password: STRONG_PASSWORD },
    })
    t.equal(signup.statusCode, 202)

    const refusals = []
    for (const [email, address] of [
      ['known@example.com', '192.0.2.20'],
      ['unknown@example.com', '192.0.2.21'],
    ] as const) {
      const first = await login(app, email, { remoteAddress: address })
      t.equal(first.statusCode, 401)
      t.equal(first.headers['ratelimit-limit'], '2', 'the limit closest to exhaustion is shown')
      t.equal(first.headers['ratelimit-remaining'], '1')
      const variant = await login(app, email.toUpperCase(), { remoteAddress: address })
      t.equal(variant.statusCode, 401, 'case does not matter')
      const refused = await login(app, email, { remoteAddress: address, headers: { 'x-request-id': 'same' } })
      assertRateLimited(t, refused, 2)
      refusals.push(refused)
    }
    const [known, unknown] = refusals
    t.equal(known?.body, unknown?.body, 'identical bytes for a known and an unknown account')
    t.same(Object.keys(known?.headers ?? {}).sort(), Object.keys(unknown?.headers ?? {}).sort())

    const answer = (address: string) =>
      app.inject({
        method: 'POST',
        url: '/v1/auth/login',
        remoteAddress: address,
        payload: { email: 'known@example.com', password: STRONG_PASSWORD },
      })
    await login(app, 'known@example.com', { remoteAddress: '192.0.2.23' })
    await login(app, 'known@example.com', { remoteAddress: '192.0.2.23' })
    const waits = await answer('192.0.2.23')
    assertRateLimited(t, waits, 2)
    t.pass('the right password waits at that address too')
    t.equal((await answer('192.0.2.22')).statusCode, 200, 'from another address the owner signs in')
    t.equal(
      (await login(app, 'third@example.com', { remoteAddress: '192.0.2.21' })).statusCode,
      401,
      'another account from the same address is not refused',
    )
  })

  await t.test('sign-up and resend: per email address, across endpoints and clients', async (t) => {
    const first = await signup(app, 'target@example.com', '198.51.100.1')
    t.equal(first.statusCode, 202)
    t.equal(first.headers['ratelimit-limit'], '3', "the headers show the caller's own budget")
    t.equal(first.headers['ratelimit-remaining'], '2')
    t.equal((await resend(app, 'Target@Example.com', '198.51.100.2')).statusCode, 202)
    assertRateLimited(t, await resend(app, 'target@example.com', '198.51.100.3'), 2)
    assertRateLimited(t, await signup(app, 'TARGET@example.com', '198.51.100.4'), 2)
    t.equal(
      (await resend(app, 'other@example.com', '198.51.100.3')).statusCode,
      202,
      'other addresses are served',
    )
  })

  await t.test('sign-up and resend: per client address', async (t) => {
    for (let n = 1; n <= 3; n++)
      t.equal((await resend(app, `r${n}@example.com`, '198.51.100.50')).statusCode, 202)
    assertRateLimited(t, await resend(app, 'r4@example.com', '198.51.100.50'), 3)
    assertRateLimited(t, await signup(app, 'r5@example.com', '198.51.100.50'), 3)
    t.equal((await resend(app, 'r4@example.com', '198.51.100.51')).statusCode, 202)
  })

  await t.test('sign-up: a taken and a new address get the same headers and bytes', async (t) => {
    const taken = await signup(app, 'Known@example.com', '198.51.100.60', { 'x-request-id': 'same' })
    const fresh = await signup(app, 'new@example.com', '198.51.100.61', { 'x-request-id': 'same' })
    t.equal(taken.statusCode, 202)
    t.equal(taken.body, fresh.body)
    const names = (headers: Record<string, unknown>) => Object.keys(headers).sort()
    t.same(names(taken.headers), names(fresh.headers))
    const rateHeaders = (response: typeof taken) =>
      ['ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset'].map((name) => response.headers[name])
    t.same(rateHeaders(taken), rateHeaders(fresh), 'the per-email count of other clients is not shown')
  })

  await t.test('the default limit covers other routes, never the probes', async (t) => {
    const from = '192.0.2.40'
    for (let n = 1; n <= 3; n++) {
      const jwks = await app.inject({ method: 'GET', url: '/.well-known/jwks.json', remoteAddress: from })
      t.equal(jwks.statusCode, 200)
      t.equal(jwks.headers['ratelimit-limit'], '3')
      t.equal(jwks.headers['ratelimit-remaining'], String(3 - n))
    }
    assertRateLimited(t, await app.inject({ method: 'GET', url: '/v1/me', remoteAddress: from }), 3)
    const token = await app.inject({
      method: 'POST',
      url: '/v1/auth/token',
      remoteAddress: from,
      payload: { grant_type: 'refresh_token', refresh_token: 'x' },
    })
    t.equal(token.statusCode, 429, 'the token endpoint too')
    t.ok(token.headers['retry-after'])
    for (const url of ['/healthz', '/readyz', '/healthz', '/readyz']) {
      const probe = await app.inject({ method: 'GET', url, remoteAddress: from })
      t.equal(probe.statusCode, 200, `${url} answers`)
      t.notOk(probe.headers['ratelimit-limit'], `${url} is not limited`)
    }
    const docs = await app.inject({ method: 'GET', url: '/docs/static/index.html', remoteAddress: from })
    t.not(docs.statusCode, 429, '/docs is not limited')
    t.equal((await login(app, 'x@example.com', { remoteAddress: from })).statusCode, 401, 'login has its own')
    t.equal((await app.inject({ method: 'GET', url: '/v1/me', remoteAddress: '192.0.2.41' })).statusCode, 401)
  })

  await t.test('real HTTP: addresses apart, X-Forwarded-For ignored with one warning', async (t) => {
    const port = await listen(app)
    const body = (n: number) => ({ email: `h${n}@example.com`, password: WRONG_PASSWORD })
    const send = (n: number, from: string, forwarded?: string) =>
      post(port, '/v1/auth/login', body(n), from, forwarded ? { 'x-forwarded-for': forwarded } : {})
    for (const [n, forwarded] of [
      [1, '1.1.1.1'],
      [2, '2.2.2.2'],
      [3, '3.3.3.3, 4.4.4.4'],
      [4, '127.0.0.9'],
    ] as const)
      t.equal((await send(n, '127.0.0.2', forwarded)).status, 401, `request ${n}`)
    assertRateLimited(t, await send(5, '127.0.0.2', '5.5.5.5'), 4)
    t.equal((await send(6, '127.0.0.3')).status, 401, 'another source address')
    t.equal((await send(7, '127.0.0.4', '127.0.0.2')).status, 401, 'and another')

    const warnings = logs.lines
      .map((line) => JSON.parse(line) as { level: number; msg: string })
      .filter((line) => /X-Forwarded-For is ignored/.test(line.msg))
    t.equal(warnings.length, 1, 'one warning for six requests')
    t.equal(warnings[0]?.level, 40, 'at warn level')
    t.match(warnings[0]?.msg, /TRUST_PROXY/)
    const events = await rateLimitEvents(app)
    t.ok(
      events.some(
        (event) => event.ip === '127.0.0.2' && (event.details as { limit: string }).limit === 'login_ip',
      ),
      'the audit event has the socket address',
    )
  })
})

t.test('the window resets; the audit event is written once per key per window', async (t) => {
  const { app } = await build(t, { RATE_LIMIT_LOGIN_IP: '2/second', RATE_LIMIT_LOGIN_ACCOUNT: '100/minute' })
  const attempt = (n: number) =>
    login(app, `w${n}@example.com`, {
      remoteAddress: '192.0.2.30',
      headers: { 'user-agent': 'flood/1.0', 'x-request-id': `req-${n}` },
    })
  const first = await Promise.all([attempt(1), attempt(2), attempt(3), attempt(4), attempt(5)])
  t.same(
    first.map((response) => response.statusCode).sort(),
    [401, 401, 429, 429, 429],
    'two answered, the rest refused',
  )
  let events = await rateLimitEvents(app)
  t.equal(events.length, 1, 'one audit event for three refusals')
  const event = events[0]!
  t.equal(event.outcome, 'failure')
  t.same(event.details, { limit: 'login_ip', max: 2, window_seconds: 1 })
  t.equal(event.ip, '192.0.2.30')
  t.equal(event.userAgent, 'flood/1.0')
  t.match(event.requestId, /^req-\d$/)
  t.equal(event.actorId, null)
  t.notMatch(JSON.stringify(event), new RegExp(WRONG_PASSWORD), 'never the password')

  const retryAfter = Number(first.find((response) => response.statusCode === 429)?.headers['retry-after'])
  t.equal(retryAfter, 1)
  await sleep(1100)
  t.equal((await attempt(6)).statusCode, 401, 'a new window answers again')
  t.equal((await attempt(7)).statusCode, 401)
  t.equal((await attempt(8)).statusCode, 429)
  t.equal((await attempt(9)).statusCode, 429)
  events = await rateLimitEvents(app)
  t.equal(events.length, 2, 'one more event in the new window')
})

t.test('defaults: 10 a minute per address, 5 a minute per account and address', async (t) => {
  const defaults = loadConfig({})
  t.same(defaults.RATE_LIMIT_LOGIN_IP, { max: 10, windowSeconds: 60 })
  t.same(defaults.RATE_LIMIT_LOGIN_ACCOUNT, { max: 5, windowSeconds: 60 })
  // Set explicitly, so that this test holds even if the test helper relaxes limits by default.
  const { app } = await build(t, { RATE_LIMIT_LOGIN_IP: '10/minute', RATE_LIMIT_LOGIN_ACCOUNT: '5/minute' })
  const statuses: number[] = []
  for (let n = 1; n <= 11; n++) statuses.push((await login(app, `d${n}@example.com`)).statusCode)
  t.same(statuses, [...new Array(10).fill(401), 429])
  const ipRefusal = await login(app, 'd12@example.com')
  assertRateLimited(t, ipRefusal, 10)
  t.ok(Number(ipRefusal.headers['retry-after']) <= 60)

  const account: number[] = []
  for (let n = 1; n <= 6; n++)
    account.push((await login(app, 'victim@example.com', { remoteAddress: '192.0.2.99' })).statusCode)
  t.same(account, [401, 401, 401, 401, 401, 429])
  assertRateLimited(t, await login(app, 'victim@example.com', { remoteAddress: '192.0.2.99' }), 5)
  t.equal(
    (await login(app, 'victim@example.com', { remoteAddress: '192.0.2.100' })).statusCode,
    401,
    "another address keeps the account's budget",
  )
})

t.test('two instances on one Redis share the counts', { skip: !testRedisUrl }, async (t) => {
  const env = { RATE_LIMIT_LOGIN_IP: '4/minute' }
  const first = await build(t, env)
  const second = await build(t, env, { databaseUrl: first.databaseUrl!, redisPrefix: first.redisPrefix })
  const elsewhere = await build(t, env)
  t.equal((await login(first.app, 'a@example.com')).statusCode, 401)
  t.equal((await login(second.app, 'b@example.com')).statusCode, 401)
  t.equal((await login(first.app, 'c@example.com')).statusCode, 401)
  const fourth = await login(second.app, 'd@example.com')
  t.equal(fourth.statusCode, 401)
  t.equal(fourth.headers['ratelimit-remaining'], '0')
  assertRateLimited(t, await login(first.app, 'e@example.com'), 4)
  assertRateLimited(t, await login(second.app, 'e@example.com'), 4)
  t.equal((await login(elsewhere.app, 'e@example.com')).statusCode, 401, 'another key prefix is apart')
})

t.test(
  'the default limit leases counts: shared exactly enough, one Redis call per block',
  { skip: !testRedisUrl },
  async (t) => {
    const env = { RATE_LIMIT_DEFAULT: '40/minute' }
    const first = await build(t, env)
    const second = await build(t, env, { databaseUrl: first.databaseUrl!, redisPrefix: first.redisPrefix })
    const jwks = (app: typeof first.app) =>
      app.inject({ method: 'GET', url: '/.well-known/jwks.json', remoteAddress: '192.0.2.90' })
    let allowed = 0
    for (let n = 0; n < 60; n++)
      if ((await jwks(n % 2 === 0 ? first.app : second.app)).statusCode === 200) allowed++
    // Each instance may hold back at most 40/20 = 2 counts it claimed and never used.
    t.ok(allowed <= 40 && allowed >= 38, `two instances let ${allowed} of 60 through a limit of 40`)
    assertRateLimited(t, await jwks(first.app), 40)
    assertRateLimited(t, await jwks(second.app), 40)

    // One busy client on one instance: claims of 1, 2, 4, … up to 1000/20 = 50 counts each.
    const { app, redisPrefix } = await build(t, { RATE_LIMIT_DEFAULT: '1000/minute' })
    await app.ready()
    // Redis's MONITOR shows every command the server receives for this client's counter.
    const from = '192.0.2.91'
    const counter = `${redisPrefix}rl:default:${from}`
    const client = new Redis(testRedisUrl!)
    const monitor = await client.monitor()
    t.teardown(() => {
      monitor.disconnect()
      client.disconnect()
    })
    let calls = 0
    let sawRead = false
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (args.includes(counter) && /^eval/i.test(args[0] ?? '')) calls++
      if (args.includes(counter) && /^get$/i.test(args[0] ?? '')) sawRead = true
    })
    for (let n = 1; n <= 200; n++) {
      const response = await app.inject({ method: 'GET', url: '/.well-known/jwks.json', remoteAddress: from })
      t.equal(response.headers['ratelimit-remaining'], String(1000 - n), `request ${n} is counted exactly`)
    }
    // MONITOR reports in order: once it shows this read, it has shown every claim before it.
    const counted = Number(await app.services.redis!.get(counter))
    t.ok(await eventually(async () => sawRead), 'the monitor caught up')
    t.ok(calls > 0 && calls <= 12, `200 requests cost ${calls} Redis calls`)
    t.ok(
      counted >= 200 && counted <= 250,
      `Redis counted ${counted}: the requests and at most one block ahead`,
    )
  },
)

t.test(
  'Redis down: limited routes answer 503, the probes still answer',
  { skip: !testRedisUrl },
  async (t) => {
    const { app } = await build(t)
    await app.ready()
    app.services.redis?.disconnect()
    const started = Date.now()
    const jwks = await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })
    t.equal(jwks.statusCode, 503)
    t.equal(jwks.json().code, 'service_unavailable')
    t.equal(jwks.headers['retry-after'], '1')
    const refused = await login(app, 'a@example.com')
    t.equal(refused.statusCode, 503, 'login fails closed')
    t.equal(refused.json().code, 'service_unavailable')
    t.ok(Date.now() - started < 3000, 'without hanging')
    t.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200)
    const ready = await app.inject({ method: 'GET', url: '/readyz' })
    t.equal(ready.statusCode, 503)
    t.match(ready.body, /redis/)
  },
)

t.test('real HTTP with TRUST_PROXY: the right-most untrusted hop is the key', async (t) => {
  const body = (n: number) => ({ email: `h${n}@example.com`, password: WRONG_PASSWORD })
  const { app, logs } = await build(t, {
    RATE_LIMIT_LOGIN_IP: '2/minute',
    TRUST_PROXY: '127.0.0.2,10.0.0.0/8',
  })
  const port = await listen(app)
  const via = (n: number, forwarded: string, from = '127.0.0.2') =>
    post(port, '/v1/auth/login', body(n), from, { 'x-forwarded-for': forwarded })
  t.equal((await via(1, '203.0.113.7')).status, 401)
  t.equal((await via(2, '198.51.100.1, 203.0.113.7, 10.1.2.3')).status, 401, 'spoofed left hops are ignored')
  const refused = await via(3, '6.6.6.6, 203.0.113.7')
  assertRateLimited(t, refused, 2)
  t.equal((await via(4, '203.0.113.8')).status, 401, 'another client behind the proxy')
  t.equal((await via(5, '203.0.113.7', '127.0.0.3')).status, 401, 'an untrusted peer is keyed on its socket')
  t.equal((await via(6, '203.0.113.7', '127.0.0.3')).status, 401)
  t.equal((await via(7, '203.0.113.9', '127.0.0.3')).status, 429, 'whatever header it sends')
  const events = await rateLimitEvents(app)
  t.same(events.map((event) => event.ip).sort(), ['127.0.0.3', '203.0.113.7'])
  t.notMatch(logs.text, /X-Forwarded-For is ignored/, 'no warning when TRUST_PROXY is set')
})
