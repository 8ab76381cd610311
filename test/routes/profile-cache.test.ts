/**
 * GET /v1/me is answered from a copy cached in the session after its first read. Every change
 * it shows must reach the session's next answer at once, from every session of the user: email
 * verification, MFA on and off, a recovery code used by another sign-in, new recovery codes, a
 * role change (identity links and unlinks are in social-login.test.ts).
 */
import { decodeJwt } from 'jose'
import { Secret, TOTP } from 'otpauth'
import t from 'tap'
import { ME_CACHE_TAG } from '../../src/routes/me/index.js'
import { build } from '../helpers/app.js'
import { STRONG_PASSWORD, tokenFromMail } from '../helpers/flows.js'
import { startSmtpServer } from '../helpers/smtp.js'

t.test('every change GET /v1/me shows reaches a cached answer at once', async (t) => {
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  const { app } = await build(t, { SMTP_URL: smtp.url, EMAIL_VERIFICATION: 'optional' })
  const { sessions, users } = app.services
  const email = 'cached@example.com'
  const inject = (
    method: 'GET' | 'POST' | 'DELETE' | 'PATCH',
    url: string,
    token?: string,
    payload?: object,
  ) =>
    app.inject({
      method,
      url,
      ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}),
      ...(payload ? { payload } : {}),
    })
  const login = async () =>
    (await inject('POST', '/v1/auth/login', undefined, { email, password: STRONG_PASSWORD })).json()

  t.equal(
    (await inject('POST', '/v1/auth/signup', undefined, { email, password: STRONG_PASSWORD })).statusCode,
    202,
  )
  const watcher = (await login()).access_token as string
  const sid = decodeJwt(watcher).sid as string
  const userId = decodeJwt(watcher).sub!
  const me = async () => {
    const response = await inject('GET', '/v1/me', watcher)
    t.equal(response.statusCode, 200)
    t.equal(response.headers['cache-control'], 'no-store')
    return response.json()
  }

  t.equal((await me()).email_verified, false)
  const cached = await sessions.liveWithProfile(sid)
  t.ok(cached?.profile.json?.startsWith(ME_CACHE_TAG), 'the first answer is cached in the session, tagged')
  t.equal(JSON.parse(cached!.profile.json!.slice(ME_CACHE_TAG.length)).email, email)

  const mail = await smtp.waitFor((message) => message.to.includes(email) && /verify-email/.test(message.raw))
  const verified = await inject('POST', '/v1/auth/verify-email', undefined, {
    token: tokenFromMail(mail, '/verify-email'),
  })
  t.equal(verified.statusCode, 204)
  t.equal((await me()).email_verified, true, 'email verification')

  const enrol = await inject('POST', '/v1/me/mfa/totp', watcher, {})
  const totp = new TOTP({ secret: Secret.fromBase32(enrol.json().secret) })
  const activated = await inject('POST', '/v1/me/mfa/totp/activate', watcher, { code: totp.generate() })
  t.equal(activated.statusCode, 200)
  const recoveryCodes = activated.json().recovery_codes as string[]
  t.same((await me()).mfa, { totp: true, recovery_codes_left: 10 }, 'MFA on')

  const challenge = await login()
  t.equal(challenge.error ?? challenge.code, 'mfa_required')
  const second = await inject('POST', '/v1/auth/mfa/verify', undefined, {
    mfa_token: challenge.mfa_token,
    recovery_code: recoveryCodes[0],
  })
  t.equal(second.statusCode, 200, second.body)
  t.same((await me()).mfa, { totp: true, recovery_codes_left: 9 }, 'a recovery code used by another sign-in')

  const withMfa = second.json().access_token as string
  t.equal((await inject('POST', '/v1/me/mfa/recovery-codes', withMfa, {})).statusCode, 200)
  t.same((await me()).mfa, { totp: true, recovery_codes_left: 10 }, 'new recovery codes')

  t.equal((await inject('DELETE', '/v1/me/mfa/totp', withMfa)).statusCode, 204)
  t.same((await me()).mfa, { totp: false, recovery_codes_left: 0 }, 'MFA off')

  await users.insert({
    email: 'root@example.com',
    passwordHash: null,
    roles: ['user', 'admin'],
    emailVerifiedAt: new Date(),
  })
  const root = await users.findByEmail('root@example.com')
  const { access_token: adminToken } = await sessions
    .start({
      user: root!,
      scope: '*',
      amr: ['pwd'],
      remember: false,
      context: { ip: '127.0.0.1', userAgent: undefined, requestId: 'r' },
    })
    .then((issued) => issued.response)
  const patched = await inject('PATCH', `/v1/admin/users/${userId}`, adminToken, { roles: ['user', 'admin'] })
  t.equal(patched.statusCode, 200, patched.body)
  t.same((await me()).roles, ['user', 'admin'], 'a role change')

  // The contract that makes this work: a change that does not tell the sessions is not seen.
  await users.update(userId, { emailVerifiedAt: null })
  t.equal((await me()).email_verified, true, 'a change behind the service is not seen (the cache answers)…')
  await sessions.userChanged(userId)
  t.equal((await me()).email_verified, false, '…until the sessions are told')
})

t.test('a profile read before a change is not cached after it', async (t) => {
  const { app } = await build(t, { EMAIL_VERIFICATION: 'optional' })
  const { sessions } = app.services
  await app.inject({
    method: 'POST',
    url: '/v1/auth/signup',
    payload: { email: 'race@example.com', password: STRONG_PASSWORD },
  })
  const login = await app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    payload: { email: 'race@example.com', password: STRONG_PASSWORD },
  })
  const { sid, sub } = decodeJwt(login.json().access_token) as { sid: string; sub: string }
  const seen = await sessions.liveWithProfile(sid)
  t.equal(seen?.profile.json, null)
  // A reader took the version, then a change landed before the reader stored what it read.
  t.equal(await sessions.userChanged(sub), 1)
  t.equal(await sessions.cacheProfile(sid, seen!.profile.version, '{"stale":true}'), false, 'refused')
  t.equal((await sessions.liveWithProfile(sid))?.profile.json, null, 'nothing cached')
  const current = await sessions.liveWithProfile(sid)
  t.equal(await sessions.cacheProfile(sid, current!.profile.version, '{"fresh":true}'), true)
  t.equal((await sessions.liveWithProfile(sid))?.profile.json, '{"fresh":true}')
})

t.test('an answer cached with another shape (another release) is read again, not served', async (t) => {
  const { app } = await build(t, { EMAIL_VERIFICATION: 'optional' })
  const { sessions } = app.services
  const email = 'rolling@example.com'
  await app.inject({ method: 'POST', url: '/v1/auth/signup', payload: { email, password: STRONG_PASSWORD } })
  const login = await app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    payload: { email, password: STRONG_PASSWORD },
  })
  const token = login.json().access_token as string
  const { sid } = decodeJwt(token) as { sid: string }
  const me = () => app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${token}` } })

  const version = (await sessions.liveWithProfile(sid))!.profile.version
  const older = 'AAAAAAAAAAAA {"id":"x","email":"old-shape@example.com"}'
  t.equal(await sessions.cacheProfile(sid, version, older), true)
  const answer = await me()
  t.equal(answer.statusCode, 200)
  t.equal(answer.json().email, email, 'read from the database')
  t.same(answer.json().mfa, { totp: false, recovery_codes_left: 0 }, "in this release's shape")
  const cached = (await sessions.liveWithProfile(sid))!.profile.json
  t.ok(cached?.startsWith(ME_CACHE_TAG), 'and cached again in it')
  t.same((await me()).json(), answer.json(), 'then served from the cache')
})
