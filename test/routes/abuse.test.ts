import { setTimeout } from 'node:timers/promises'
import t from 'tap'
import { build } from '../helpers/app.js'
import { readableMail, STRONG_PASSWORD, signUpAndLogin, tokenFromMail } from '../helpers/flows.js'
import { startSmtpServer } from '../helpers/smtp.js'

const ATTACKER = '127.0.0.2'
const OWNER = '127.0.0.3'

t.test('progressive cooldown cannot lock the owner out', async (t) => {
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  const { app } = await build(t, { SMTP_URL: smtp.url })
  await signUpAndLogin(app, smtp, 'victim@example.com')
  const login = (email: string, password: string, remoteAddress: string) =>
    app.inject({ method: 'POST', url: '/v1/auth/login', remoteAddress, payload: { email, password } })
  const strip = (body: Record<string, unknown>) => ({ ...body, request_id: undefined })

  for (let attempt = 1; attempt <= 5; attempt++) {
    const answer = await login('victim@example.com', `guess number ${attempt} for you`, ATTACKER)
    t.equal(answer.statusCode, 401, `failure ${attempt}`)
  }
  const cooling = await login('victim@example.com', STRONG_PASSWORD, ATTACKER)
  t.equal(cooling.statusCode, 401, 'even the right password waits while the attacker address cools down')
  const unknown = await login('nobody-at-all@example.com', 'whatever password here', ATTACKER)
  t.same(
    strip(cooling.json()),
    strip(unknown.json()),
    'indistinguishable from a wrong password for an unknown account',
  )

  const owner = await login('victim@example.com', STRONG_PASSWORD, OWNER)
  t.equal(owner.statusCode, 200, 'the owner signs in from another address')

  const notice = await smtp.waitFor(
    (m) => m.to.includes('victim@example.com') && /Failed sign-in attempts/.test(m.raw),
  )
  t.ok(notice, 'the owner is emailed when the threshold is crossed')
  await app.services.outbox.drain()
  const events = await app.services.database.db.query.auditEvents.findMany({
    where: (event, { eq }) => eq(event.type, 'account.cooldown_started'),
  })
  t.equal(events.length, 1, 'one audit event at the threshold')
  t.equal(events[0]?.ip, ATTACKER)

  // The owner's success cleared the failures: the attacker address starts over.
  const afterSuccess = await login('victim@example.com', STRONG_PASSWORD, ATTACKER)
  t.equal(afterSuccess.statusCode, 200, 'success resets the count')

  // Failing again up to the threshold cools the attacker down again; password reset still works.
  for (let attempt = 1; attempt <= 6; attempt++)
    await login('victim@example.com', `again ${attempt} nope nope`, ATTACKER)
  const before = smtp.messages.length
  const forgot = await app.inject({
    method: 'POST',
    url: '/v1/auth/password/forgot',
    remoteAddress: ATTACKER,
    payload: { email: 'victim@example.com' },
  })
  t.equal(forgot.statusCode, 202)
  const mail = await smtp.waitFor(
    (m) => smtp.messages.indexOf(m) >= before && /reset-password\?token=/.test(readableMail(m.raw)),
  )
  const reset = await app.inject({
    method: 'POST',
    url: '/v1/auth/password/reset',
    remoteAddress: ATTACKER,
    payload: { token: tokenFromMail(mail, '/reset-password'), password: 'a brand new passphrase 2026 ok' },
  })
  t.equal(reset.statusCode, 204, 'password reset keeps working during a cooldown')
  const signIn = await login('victim@example.com', 'a brand new passphrase 2026 ok', ATTACKER)
  t.equal(signIn.statusCode, 200, 'and the reset clears the cooldown')
})

/** Median of a list of numbers. */
function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

t.test('known and unknown addresses answer alike, in bytes and in time', async (t) => {
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  const { app } = await build(t, { SMTP_URL: smtp.url })
  await signUpAndLogin(app, smtp, 'known@example.com')
  await app.inject({
    method: 'POST',
    url: '/v1/auth/signup',
    payload: { email: 'unverified@example.com', password: STRONG_PASSWORD },
  })

  const cases = [
    { url: '/v1/auth/login', known: { email: 'known@example.com', password: 'wrong password 123456' } },
    { url: '/v1/auth/password/forgot', known: { email: 'known@example.com' } },
    { url: '/v1/auth/verify-email/resend', known: { email: 'unverified@example.com' } },
    { url: '/v1/auth/signup', known: { email: 'known@example.com', password: STRONG_PASSWORD } },
  ]
  for (const { url, known } of cases) {
    const times: Record<'known' | 'unknown', number[]> = { known: [], unknown: [] }
    let knownAnswer: Awaited<ReturnType<typeof app.inject>> | undefined
    let unknownAnswer: Awaited<ReturnType<typeof app.inject>> | undefined
    for (let round = 0; round < 24; round++) {
      // Interleaved, alternating which goes first, with a distinct unknown address each time.
      const order = round % 2 ? (['unknown', 'known'] as const) : (['known', 'unknown'] as const)
      for (const kind of order) {
        const payload =
          kind === 'known' ? known : { ...known, email: `ghost${round}-${url.length}@example.com` }
        const started = process.hrtime.bigint()
        const answer = await app.inject({
          method: 'POST',
          url,
          remoteAddress: `10.9.${round}.${kind === 'known' ? 1 : 2}`,
          headers: { 'x-request-id': 'fixed' },
          payload,
        })
        times[kind].push(Number(process.hrtime.bigint() - started) / 1e6)
        // Work left for after the answer must not slow the next request being timed.
        await app.services.outbox.drain()
        if (kind === 'known') knownAnswer = answer
        else unknownAnswer = answer
      }
    }
    t.equal(knownAnswer?.statusCode, unknownAnswer?.statusCode, `${url}: same status`)
    t.equal(knownAnswer?.body, unknownAnswer?.body, `${url}: same body`)
    const names = (headers: Record<string, unknown>) =>
      Object.keys(headers)
        .filter((name) => name !== 'date')
        .sort()
    t.same(names(knownAnswer!.headers), names(unknownAnswer!.headers), `${url}: same headers`)
    const knownMedian = median(times.known)
    const unknownMedian = median(times.unknown)
    const tolerance = 4 + 0.25 * Math.max(knownMedian, unknownMedian)
    t.ok(
      Math.abs(knownMedian - unknownMedian) <= tolerance,
      `${url}: medians ${knownMedian.toFixed(1)} ms (known) vs ${unknownMedian.toFixed(1)} ms (unknown)`,
    )
  }
})

t.test('a login flood is shed with 503 and Retry-After; bearer requests still answer', async (t) => {
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  // A queue of 64 whose waits outlast the flood: this is about the queue's size.
  const { app } = await build(t, {
    SMTP_URL: smtp.url,
    ARGON2_CONCURRENCY: '1',
    ARGON2_MAX_QUEUE: '64',
    ARGON2_QUEUE_TIMEOUT: '10',
  })
  const tokens = await signUpAndLogin(app, smtp, 'steady@example.com')
  const flood = Array.from({ length: 100 }, (_, index) =>
    app.inject({
      method: 'POST',
      url: '/v1/auth/login',
      remoteAddress: `10.1.${index}.1`,
      payload: { email: `flood${index}@example.com`, password: 'flooding password 1234' },
    }),
  )
  const me = await app.inject({
    method: 'GET',
    url: '/v1/me',
    headers: { authorization: `Bearer ${tokens.access_token}` },
  })
  t.equal(me.statusCode, 200, 'token verification answers during the flood')
  // With the queue full, a login is shed before its body is read or a limit counted: even a
  // malformed one gets the 503, not a 400.
  const until = Date.now() + 10_000
  while (app.services.hasher.queueDepth < 64 && Date.now() < until) await setTimeout(2)
  t.equal(app.services.hasher.queueDepth, 64, 'the queue is full')
  const malformed = await app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    remoteAddress: '10.2.0.1',
    payload: { email: 'not an address' },
  })
  t.equal(malformed.statusCode, 503, 'shed at the door')
  t.equal(malformed.headers['retry-after'], '1')
  const answers = await Promise.all(flood)
  const shed = answers.filter((answer) => answer.statusCode === 503)
  const checked = answers.filter((answer) => answer.statusCode === 401)
  t.equal(shed.length + checked.length, 100, 'every login got 401 or 503, nothing else')
  t.ok(shed.length >= 30, `the overflow was shed (${shed.length} of 100)`)
  t.ok(checked.length >= 60, `the queue's worth was checked (${checked.length})`)
  t.equal(shed[0]?.json().code, 'service_unavailable')
  t.equal(shed[0]?.headers['retry-after'], '1')
  t.equal(app.services.hasher.queueDepth, 0, 'the queue drains')
})

t.test('a login that waits ARGON2_QUEUE_TIMEOUT for a hashing slot gets 503 then, not before', async (t) => {
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  const { app } = await build(t, { SMTP_URL: smtp.url, ARGON2_CONCURRENCY: '1', ARGON2_QUEUE_TIMEOUT: '1' })
  const tokens = await signUpAndLogin(app, smtp, 'patient@example.com')
  // Seconds of hashing on one slot (an argon2id hash takes 15 ms or more), all of it queued at
  // once: the logins still waiting after a second are refused then, with Retry-After.
  const started = performance.now()
  const flood = await Promise.all(
    Array.from({ length: 150 }, async (_, index) => {
      const answer = await app.inject({
        method: 'POST',
        url: '/v1/auth/login',
        remoteAddress: `10.3.${index}.1`,
        payload: { email: `queued${index}@example.com`, password: 'waiting password 1234' },
      })
      return { answer, elapsed: performance.now() - started }
    }),
  )
  const refused = flood.filter(({ answer }) => answer.statusCode === 503)
  const checked = flood.filter(({ answer }) => answer.statusCode === 401)
  t.equal(refused.length + checked.length, 150, 'every login got 401 or 503, nothing else')
  t.ok(checked.length > 0, `the queue was served while it could (${checked.length})`)
  t.ok(refused.length > 0, `the rest ran out of time (${refused.length})`)
  const soonest = Math.min(...refused.map(({ elapsed }) => elapsed))
  t.ok(
    soonest >= 1000,
    `no login was refused before its second of waiting (first after ${soonest.toFixed(0)} ms)`,
  )
  for (const { answer } of refused) {
    t.equal(answer.json().code, 'service_unavailable')
    t.equal(answer.headers['retry-after'], '1')
  }
  t.equal(app.services.hasher.queueDepth, 0, 'nobody is left waiting')
  t.equal(app.services.hasher.inFlight, 0, 'no hash runs for a refused login')
  const me = await app.inject({
    method: 'GET',
    url: '/v1/me',
    headers: { authorization: `Bearer ${tokens.access_token}` },
  })
  t.equal(me.statusCode, 200)
  const login = await app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    remoteAddress: '10.4.0.1',
    payload: { email: 'patient@example.com', password: STRONG_PASSWORD },
  })
  t.equal(login.statusCode, 200, 'a login after the flood is served')
})
