import { decodeJwt } from 'jose'
import t from 'tap'
import { build, TestClock } from '../helpers/app.js'
import { readableMail, STRONG_PASSWORD, signUpAndLogin, tokenFromMail } from '../helpers/flows.js'
import { startSmtpServer } from '../helpers/smtp.js'

const NEW_PASSWORD = 'lighthouse keeper orbit 77 violet'

t.test('account lifecycle', async (t) => {
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  // Access tokens are checked against the real clock: subtests that use them set the test
  // clock a few minutes into the past, so moving it forward keeps them valid.
  const clock = new TestClock(Date.now() - 400_000)
  const { app } = await build(t, { SMTP_URL: smtp.url, APP_URL: 'https://app.example.com' }, { clock })
  const post = (url: string, payload: unknown, headers: Record<string, string> = {}) =>
    app.inject({ method: 'POST', url, payload: payload as Record<string, unknown>, headers })
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
  const refresh = (token: string) =>
    post('/v1/auth/token', { grant_type: 'refresh_token', refresh_token: token })
  const resetMail = async (email: string, after: number) => {
    const message = await smtp.waitFor(
      (m) =>
        m.to.includes(email) &&
        /reset-password\?token=/.test(readableMail(m.raw)) &&
        smtp.messages.indexOf(m) >= after,
    )
    return message
  }

  await t.test('forgot-password: same answer for everyone; the link comes from APP_URL', async (t) => {
    await signUpAndLogin(app, smtp, 'forgot@example.com')
    const before = smtp.messages.length
    const known = await post(
      '/v1/auth/password/forgot',
      { email: 'forgot@example.com' },
      { host: 'evil.example.net', 'x-forwarded-host': 'evil.example.net', 'x-request-id': 'same' },
    )
    const unknown = await post(
      '/v1/auth/password/forgot',
      { email: 'nobody@example.com' },
      { 'x-request-id': 'same' },
    )
    t.equal(known.statusCode, 202)
    t.equal(known.body, unknown.body, 'identical bytes')
    t.same(known.json(), { status: 'reset_email_sent' })
    const names = (headers: Record<string, unknown>) =>
      Object.keys(headers)
        .filter((name) => name !== 'date')
        .sort()
    t.same(names(known.headers), names(unknown.headers))
    const mail = await resetMail('forgot@example.com', before)
    const text = readableMail(mail.raw)
    t.match(text, /https:\/\/app\.example\.com\/reset-password\?token=/)
    t.notMatch(text, /evil\.example\.net/, 'never from Host or X-Forwarded-Host')
    await app.services.outbox.drain()
    t.notOk(
      smtp.messages.some((m) => m.to.includes('nobody@example.com')),
      'no mail to an address without an account',
    )
  })

  await t.test('reset: single use, revokes every session, does not sign in, emails a notice', async (t) => {
    const first = await signUpAndLogin(app, smtp, 'reset@example.com')
    const second = (
      await post('/v1/auth/login', { email: 'reset@example.com', password: STRONG_PASSWORD })
    ).json()
    const before = smtp.messages.length
    await post('/v1/auth/password/forgot', { email: 'reset@example.com' })
    const token = tokenFromMail(await resetMail('reset@example.com', before), '/reset-password')

    const stored = await app.services.database.db.query.emailTokens.findMany({
      where: (row, { eq }) => eq(row.purpose, 'reset_password'),
    })
    t.ok(stored.length > 0)
    t.notOk(
      stored.some((row) => row.tokenHash === token || row.tokenHash.includes(token)),
      'the reset token is stored only as a hash',
    )
    const weak = await post('/v1/auth/password/reset', { token, password: 'short' })
    t.equal(weak.statusCode, 422)
    t.equal(weak.json().code, 'weak_password')

    const done = await post('/v1/auth/password/reset', { token, password: NEW_PASSWORD })
    t.equal(done.statusCode, 204, 'a refused password did not spend the link')
    t.equal(done.body, '', 'no tokens: the reset does not sign in')

    const again = await post('/v1/auth/password/reset', { token, password: NEW_PASSWORD })
    t.equal(again.statusCode, 400)
    t.equal(again.json().code, 'invalid_token', 'single use')

    for (const session of [first, second]) {
      t.equal((await refresh(session.refresh_token)).statusCode, 400, 'refresh token revoked')
      t.equal(
        (await app.inject({ method: 'GET', url: '/v1/me', headers: bearer(session.access_token) }))
          .statusCode,
        401,
      )
    }
    const old = await post('/v1/auth/login', { email: 'reset@example.com', password: STRONG_PASSWORD })
    t.equal(old.statusCode, 401, 'the old password is gone')
    const fresh = await post('/v1/auth/login', { email: 'reset@example.com', password: NEW_PASSWORD })
    t.equal(fresh.statusCode, 200, 'the new one works')
    const notice = await smtp.waitFor(
      (m) => m.to.includes('reset@example.com') && /password was changed/i.test(m.raw),
    )
    t.ok(notice, 'the owner is told')
  })

  await t.test('reset tokens expire and are superseded by newer ones', async (t) => {
    await signUpAndLogin(app, smtp, 'expiry@example.com')
    let before = smtp.messages.length
    await post('/v1/auth/password/forgot', { email: 'expiry@example.com' })
    const older = tokenFromMail(await resetMail('expiry@example.com', before), '/reset-password')
    before = smtp.messages.length
    await post('/v1/auth/password/forgot', { email: 'expiry@example.com' })
    const newer = tokenFromMail(await resetMail('expiry@example.com', before), '/reset-password')
    t.not(older, newer)
    const superseded = await post('/v1/auth/password/reset', { token: older, password: NEW_PASSWORD })
    t.equal(superseded.statusCode, 400)
    t.equal(superseded.json().code, 'invalid_token', 'a newer request voids the older link')

    clock.advance(3601)
    const expired = await post('/v1/auth/password/reset', { token: newer, password: NEW_PASSWORD })
    t.equal(expired.statusCode, 400)
    t.equal(expired.json().code, 'invalid_token', 'RESET_TOKEN_TTL is 1 hour')

    const garbage = await post('/v1/auth/password/reset', { token: 'not-a-token', password: NEW_PASSWORD })
    t.equal(garbage.json().code, 'invalid_token')
  })

  await t.test('change password: fresh login required, other sessions end, current continues', async (t) => {
    clock.current = Date.now() - 400_000
    const current = await signUpAndLogin(app, smtp, 'change@example.com')
    const other = (
      await post('/v1/auth/login', { email: 'change@example.com', password: STRONG_PASSWORD })
    ).json()

    clock.advance(301)
    const stale = await post(
      '/v1/me/password',
      { current_password: STRONG_PASSWORD, new_password: NEW_PASSWORD },
      bearer(current.access_token),
    )
    t.equal(stale.statusCode, 401)
    t.equal(stale.json().code, 'fresh_login_required')
    t.match(stale.headers['www-authenticate'], /^Bearer error="insufficient_user_authentication"/)
    t.match(stale.headers['www-authenticate'], /max_age=300/)

    // A refresh never makes a session fresh (RFC 9068 §2.2.1).
    const refreshed = (await refresh(current.refresh_token)).json()
    t.equal(decodeJwt(refreshed.access_token).auth_time, decodeJwt(current.access_token).auth_time)
    const stillStale = await post(
      '/v1/me/password',
      { current_password: STRONG_PASSWORD, new_password: NEW_PASSWORD },
      bearer(refreshed.access_token),
    )
    t.equal(stillStale.json().code, 'fresh_login_required')

    const wrongStepUp = await post(
      '/v1/auth/reauthenticate',
      { password: 'not my password at all' },
      bearer(refreshed.access_token),
    )
    t.equal(wrongStepUp.statusCode, 400)
    t.equal(wrongStepUp.json().code, 'invalid_credentials')

    const stepUp = await post(
      '/v1/auth/reauthenticate',
      { password: STRONG_PASSWORD },
      bearer(refreshed.access_token),
    )
    t.equal(stepUp.statusCode, 200)
    t.equal(stepUp.headers['cache-control'], 'no-store')
    const upClaims = decodeJwt(stepUp.json().access_token)
    t.ok(
      (upClaims.auth_time as number) > (decodeJwt(current.access_token).auth_time as number),
      'a new auth_time',
    )
    t.equal(upClaims.sid, decodeJwt(current.access_token).sid, 'the same session')
    t.notOk(stepUp.json().refresh_token, 'the refresh token is unchanged')
    const afterStepUp = (await refresh(refreshed.refresh_token)).json()
    t.equal(
      decodeJwt(afterStepUp.access_token).auth_time,
      upClaims.auth_time,
      'later refreshes keep the new auth_time',
    )

    const wrong = await post(
      '/v1/me/password',
      { current_password: 'not my password at all', new_password: NEW_PASSWORD },
      bearer(afterStepUp.access_token),
    )
    t.equal(wrong.statusCode, 400)
    t.equal(wrong.json().code, 'invalid_credentials')

    const changed = await post(
      '/v1/me/password',
      { current_password: STRONG_PASSWORD, new_password: NEW_PASSWORD },
      bearer(afterStepUp.access_token),
    )
    t.equal(changed.statusCode, 204)
    t.equal((await refresh(other.refresh_token)).statusCode, 400, 'the other session ended')
    t.equal(
      (await app.inject({ method: 'GET', url: '/v1/me', headers: bearer(other.access_token) })).statusCode,
      401,
    )
    t.equal(
      (await app.inject({ method: 'GET', url: '/v1/me', headers: bearer(afterStepUp.access_token) }))
        .statusCode,
      200,
      'the current session continues',
    )
    t.equal((await refresh(afterStepUp.refresh_token)).statusCode, 200)
    t.equal(
      (await post('/v1/auth/login', { email: 'change@example.com', password: NEW_PASSWORD })).statusCode,
      200,
    )
    await smtp.waitFor((m) => m.to.includes('change@example.com') && /password was changed/i.test(m.raw))
  })

  await t.test('delete the account: fresh login, everything gone, audit keeps the id', async (t) => {
    clock.current = Date.now() - 400_000
    const tokens = await signUpAndLogin(app, smtp, 'leaving@example.com')
    const userId = decodeJwt(tokens.access_token).sub as string
    clock.advance(301)
    const stale = await app.inject({ method: 'DELETE', url: '/v1/me', headers: bearer(tokens.access_token) })
    t.equal(stale.statusCode, 401)
    t.equal(stale.json().code, 'fresh_login_required')
    const up = (
      await post('/v1/auth/reauthenticate', { password: STRONG_PASSWORD }, bearer(tokens.access_token))
    ).json()
    const deleted = await app.inject({ method: 'DELETE', url: '/v1/me', headers: bearer(up.access_token) })
    t.equal(deleted.statusCode, 204)
    t.equal(
      (await app.inject({ method: 'GET', url: '/v1/me', headers: bearer(up.access_token) })).statusCode,
      401,
    )
    t.equal((await refresh(tokens.refresh_token)).statusCode, 400)
    t.equal(
      (await post('/v1/auth/login', { email: 'leaving@example.com', password: STRONG_PASSWORD })).statusCode,
      401,
    )
    t.equal(await app.services.users.findById(userId), undefined)
    await app.services.outbox.drain()
    const events = await app.services.database.db.query.auditEvents.findMany({
      where: (event, { eq }) => eq(event.userId, userId),
    })
    const types = events.map((event) => event.type)
    for (const type of ['user.signed_up', 'auth.login_succeeded', 'auth.reauthenticated', 'user.deleted']) {
      t.ok(types.includes(type), `${type} kept with the user id`)
    }
  })
})
