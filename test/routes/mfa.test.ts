import { decodeJwt } from 'jose'
import { Secret, TOTP } from 'otpauth'
import t from 'tap'
import { build, TestClock } from '../helpers/app.js'
import { readableMail, STRONG_PASSWORD, signUpAndLogin, tokenFromMail } from '../helpers/flows.js'
import { startSmtpServer } from '../helpers/smtp.js'

t.test('TOTP MFA', async (t) => {
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  // Access tokens are checked against the real clock, so the test clock stays a little behind it.
  const clock = new TestClock(Math.floor((Date.now() - 400_000) / 30_000) * 30_000 + 1_000)
  const { app } = await build(t, { SMTP_URL: smtp.url }, { clock })
  const post = (url: string, payload: unknown, headers: Record<string, string> = {}) =>
    app.inject({ method: 'POST', url, payload: payload as Record<string, unknown>, headers })
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
  const email = 'mfa@example.com'
  const login = (extra: Record<string, unknown> = {}) =>
    post('/v1/auth/login', { email, password: STRONG_PASSWORD, ...extra })

  const first = await signUpAndLogin(app, smtp, email)

  // Enrolment.
  const enrol = await post('/v1/me/mfa/totp', {}, bearer(first.access_token))
  t.equal(enrol.statusCode, 200)
  t.equal(enrol.headers['cache-control'], 'no-store')
  const { secret, otpauth_uri: uri, qr_svg: svg } = enrol.json()
  t.match(uri, /^otpauth:\/\/totp\/Latchkey:mfa%40example\.com\?/)
  t.match(uri, /issuer=Latchkey/)
  t.match(uri, /algorithm=SHA1&digits=6&period=30/)
  t.match(svg, /^<svg[\s\S]*<\/svg>\s*$/)
  const totp = new TOTP({ issuer: 'Latchkey', label: email, secret: Secret.fromBase32(secret) })
  const code = (offsetSteps = 0) => totp.generate({ timestamp: clock.now() + offsetSteps * 30_000 })
  const stored = await app.services.users.findByEmail(email)
  t.notOk(stored?.totpPendingSealed?.includes(secret), 'the secret is sealed at rest')

  const meBefore = await app.inject({ method: 'GET', url: '/v1/me', headers: bearer(first.access_token) })
  t.same(meBefore.json().mfa, { totp: false, recovery_codes_left: 0 }, 'inactive until activated')
  t.equal((await login()).statusCode, 200, 'no challenge before activation')

  const wrongActivation = await post(
    '/v1/me/mfa/totp/activate',
    { code: '000000' },
    bearer(first.access_token),
  )
  t.equal(wrongActivation.statusCode, 400)
  t.equal(wrongActivation.json().code, 'invalid_code')
  const activated = await post('/v1/me/mfa/totp/activate', { code: code() }, bearer(first.access_token))
  t.equal(activated.statusCode, 200)
  t.equal(activated.headers['cache-control'], 'no-store')
  const recoveryCodes: string[] = activated.json().recovery_codes
  t.equal(recoveryCodes.length, 10)
  t.equal(new Set(recoveryCodes).size, 10)
  await smtp.waitFor((m) => m.to.includes(email) && /Two-step sign-in is on/.test(m.raw))
  const active = await app.services.users.findByEmail(email)
  t.ok(active?.totpSecretSealed, 'the active secret is stored')
  t.notOk(active?.totpSecretSealed?.includes(secret), 'sealed, not in clear')
  const storedCodes = await app.services.database.db.query.recoveryCodes.findMany({
    where: (row, { eq }) => eq(row.userId, active!.id),
  })
  t.equal(storedCodes.length, 10)
  const plain = new Set(recoveryCodes.flatMap((c) => [c, c.replace('-', '')]))
  t.notOk(
    storedCodes.some((row) => plain.has(row.codeHash)),
    'recovery codes are stored only as hashes',
  )
  const meAfter = await app.inject({ method: 'GET', url: '/v1/me', headers: bearer(first.access_token) })
  t.same(meAfter.json().mfa, { totp: true, recovery_codes_left: 10 })

  await t.test('login is challenged; the mfa_token is no bearer or refresh token', async (t) => {
    const challenged = await login({ remember: true, scope: 'profile' })
    t.equal(challenged.statusCode, 403)
    t.equal(challenged.json().code, 'mfa_required')
    t.same(challenged.json().methods, ['totp', 'recovery_code'])
    const mfaToken = challenged.json().mfa_token
    t.type(mfaToken, 'string')
    t.notOk(challenged.json().access_token, 'nothing is issued')

    const asBearer = await app.inject({ method: 'GET', url: '/v1/me', headers: bearer(mfaToken) })
    t.equal(asBearer.statusCode, 401)
    const asRefresh = await post('/v1/auth/token', { grant_type: 'refresh_token', refresh_token: mfaToken })
    t.equal(asRefresh.statusCode, 400)
    t.equal(asRefresh.json().error, 'invalid_grant')

    const wrong = await post('/v1/auth/mfa/verify', { mfa_token: mfaToken, code: '123456' })
    t.equal(wrong.statusCode, 401)
    t.equal(wrong.json().code, 'invalid_code')

    clock.advance(30)
    const verified = await post('/v1/auth/mfa/verify', { mfa_token: mfaToken, code: code() })
    t.equal(verified.statusCode, 200)
    t.equal(verified.headers['cache-control'], 'no-store')
    const claims = decodeJwt(verified.json().access_token)
    t.same([...(claims.amr as string[])].sort(), ['mfa', 'otp', 'pwd'])
    t.equal(claims.scope, 'profile', 'scope carried through')
    const sessions = await app.services.database.db.query.sessions.findFirst({
      where: (session, { eq }) => eq(session.id, claims.sid as string),
    })
    t.equal(sessions?.remember, true, 'remember carried through')

    const again = await post('/v1/auth/mfa/verify', { mfa_token: mfaToken, code: code() })
    t.equal(again.statusCode, 401, 'an mfa_token is single use')
  })

  await t.test(
    'a code is accepted once in its window; one step of drift is accepted, two are not',
    async (t) => {
      clock.advance(30)
      const used = code()
      const firstToken = (await login()).json().mfa_token
      t.equal((await post('/v1/auth/mfa/verify', { mfa_token: firstToken, code: used })).statusCode, 200)
      const secondToken = (await login()).json().mfa_token
      const replay = await post('/v1/auth/mfa/verify', { mfa_token: secondToken, code: used })
      t.equal(replay.statusCode, 401, 'replay refused')
      t.equal(replay.json().code, 'invalid_code')

      clock.advance(90)
      const late = (await login()).json().mfa_token
      t.equal(
        (await post('/v1/auth/mfa/verify', { mfa_token: late, code: code(-2) })).statusCode,
        401,
        'two steps old: refused',
      )
      t.equal(
        (await post('/v1/auth/mfa/verify', { mfa_token: late, code: code(-1) })).statusCode,
        200,
        'one step old: accepted',
      )
      clock.advance(30)
      const early = (await login()).json().mfa_token
      t.equal(
        (await post('/v1/auth/mfa/verify', { mfa_token: early, code: code(1) })).statusCode,
        200,
        'one step ahead: accepted',
      )
    },
  )

  await t.test('five wrong codes void the challenge', async (t) => {
    clock.advance(60)
    const token = (await login()).json().mfa_token
    for (let attempt = 1; attempt <= 5; attempt++) {
      const answer = await post('/v1/auth/mfa/verify', { mfa_token: token, code: '000000' })
      t.equal(answer.json().code, 'invalid_code', `wrong code ${attempt}`)
    }
    const right = await post('/v1/auth/mfa/verify', { mfa_token: token, code: code() })
    t.equal(right.statusCode, 401)
    t.equal(right.json().code, 'invalid_token', 'the challenge is void')
    // Wrong codes count toward the account's cooldown like wrong passwords.
    const cooling = await login()
    t.equal(cooling.statusCode, 401, 'this address now waits before its next attempt')
    t.equal(cooling.json().code, 'invalid_credentials')
    clock.advance(2)
    t.equal((await login()).statusCode, 403, 'after the delay, the password is checked again')
  })

  await t.test('recovery codes: single use, emailed, regenerated', async (t) => {
    const token = (await login()).json().mfa_token
    const [recovery] = recoveryCodes as [string]
    const used = await post('/v1/auth/mfa/verify', {
      mfa_token: token,
      recovery_code: recovery.toUpperCase(),
    })
    t.equal(used.statusCode, 200, used.body)
    t.ok((decodeJwt(used.json().access_token).amr as string[]).includes('mfa'))
    await smtp.waitFor((m) => m.to.includes(email) && /recovery code was used/i.test(m.raw))
    const token2 = (await login()).json().mfa_token
    const reused = await post('/v1/auth/mfa/verify', { mfa_token: token2, recovery_code: recovery })
    t.equal(reused.statusCode, 401, 'single use')
    const me = await app.inject({ method: 'GET', url: '/v1/me', headers: bearer(used.json().access_token) })
    t.equal(me.json().mfa.recovery_codes_left, 9)

    const regenerated = await post('/v1/me/mfa/recovery-codes', {}, bearer(used.json().access_token))
    t.equal(regenerated.statusCode, 200)
    t.equal(regenerated.headers['cache-control'], 'no-store')
    t.equal(regenerated.json().recovery_codes.length, 10)
    const token3 = (await login()).json().mfa_token
    const old = await post('/v1/auth/mfa/verify', { mfa_token: token3, recovery_code: recoveryCodes[1] })
    t.equal(old.statusCode, 401, 'the old set is void')
  })

  await t.test('password reset does not bypass the factor', async (t) => {
    const before = smtp.messages.length
    await post('/v1/auth/password/forgot', { email })
    const mail = await smtp.waitFor(
      (m) => smtp.messages.indexOf(m) >= before && /reset-password\?token=/.test(readableMail(m.raw)),
    )
    const reset = await post('/v1/auth/password/reset', {
      token: tokenFromMail(mail, '/reset-password'),
      password: 'the otter swims at dawn 31',
    })
    t.equal(reset.statusCode, 204)
    const next = await post('/v1/auth/login', { email, password: 'the otter swims at dawn 31' })
    t.equal(next.statusCode, 403)
    t.equal(next.json().code, 'mfa_required', 'the next login still asks for the factor')
  })

  await t.test('sensitive actions need a fresh second factor; turning MFA off', async (t) => {
    clock.advance(30)
    const token = (await post('/v1/auth/login', { email, password: 'the otter swims at dawn 31' })).json()
      .mfa_token
    const session = (await post('/v1/auth/mfa/verify', { mfa_token: token, code: code() })).json()
    const stepUpPassword = await post(
      '/v1/auth/reauthenticate',
      { password: 'the otter swims at dawn 31' },
      bearer(session.access_token),
    )
    t.equal(stepUpPassword.statusCode, 200)
    const pwdOnly = stepUpPassword.json().access_token
    t.same(decodeJwt(pwdOnly).amr, ['pwd'])
    const offWithoutFactor = await app.inject({
      method: 'DELETE',
      url: '/v1/me/mfa/totp',
      headers: bearer(pwdOnly),
    })
    t.equal(offWithoutFactor.statusCode, 401)
    t.equal(offWithoutFactor.json().code, 'fresh_login_required')
    t.match(offWithoutFactor.headers['www-authenticate'], /insufficient_user_authentication/)
    const changeWithoutFactor = await post(
      '/v1/me/password',
      { current_password: 'the otter swims at dawn 31', new_password: 'another fine passphrase 88' },
      bearer(pwdOnly),
    )
    t.equal(
      changeWithoutFactor.json().code,
      'fresh_login_required',
      'an MFA user changes the password only with mfa in amr',
    )

    clock.advance(30)
    const wrongCode = await post('/v1/auth/reauthenticate', { code: '000000' }, bearer(pwdOnly))
    t.equal(wrongCode.statusCode, 400)
    t.equal(wrongCode.json().code, 'invalid_code')
    const stepUpCode = await post('/v1/auth/reauthenticate', { code: code() }, bearer(pwdOnly))
    t.equal(stepUpCode.statusCode, 200)
    t.ok((decodeJwt(stepUpCode.json().access_token).amr as string[]).includes('mfa'))

    const off = await app.inject({
      method: 'DELETE',
      url: '/v1/me/mfa/totp',
      headers: bearer(stepUpCode.json().access_token),
    })
    t.equal(off.statusCode, 204)
    await smtp.waitFor((m) => m.to.includes(email) && /Two-step sign-in is off/.test(m.raw))
    const plain = await post('/v1/auth/login', { email, password: 'the otter swims at dawn 31' })
    t.equal(plain.statusCode, 200, 'a password alone signs in again')
    const me = await app.inject({ method: 'GET', url: '/v1/me', headers: bearer(plain.json().access_token) })
    t.same(me.json().mfa, { totp: false, recovery_codes_left: 0 })
    await app.services.outbox.drain()
    const events = await app.services.database.db.query.auditEvents.findMany({
      where: (event, { inArray }) =>
        inArray(event.type, ['mfa.enabled', 'mfa.disabled', 'mfa.recovery_code_used']),
    })
    t.same(events.map((event) => event.type).sort(), [
      'mfa.disabled',
      'mfa.enabled',
      'mfa.recovery_code_used',
    ])
  })
})

t.test('an mfa_token expires after MFA_TOKEN_TTL', async (t) => {
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  const { app } = await build(t, { SMTP_URL: smtp.url, MFA_TOKEN_TTL: '1' })
  const tokens = await signUpAndLogin(app, smtp, 'expiring@example.com')
  const headers = { authorization: `Bearer ${tokens.access_token}` }
  const { secret } = (await app.inject({ method: 'POST', url: '/v1/me/mfa/totp', headers })).json()
  const totp = new TOTP({ secret: Secret.fromBase32(secret) })
  await app.inject({
    method: 'POST',
    url: '/v1/me/mfa/totp/activate',
    headers,
    payload: { code: totp.generate() },
  })
  const challenged = await app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    payload: { email: 'expiring@example.com', password: STRONG_PASSWORD },
  })
  await new Promise((resolve) => setTimeout(resolve, 1500))
  const late = await app.inject({
    method: 'POST',
    url: '/v1/auth/mfa/verify',
    payload: {
      mfa_token: challenged.json().mfa_token,
      code: totp.generate({ timestamp: Date.now() + 30_000 }),
    },
  })
  t.equal(late.statusCode, 401)
  t.equal(late.json().code, 'invalid_token')
})
