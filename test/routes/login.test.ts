import argon2 from 'argon2'
import { decodeJwt } from 'jose'
import t from 'tap'
import { build } from '../helpers/app.js'
import { STRONG_PASSWORD, signUpAndLogin } from '../helpers/flows.js'
import { startSmtpServer } from '../helpers/smtp.js'

t.test('login rules', async (t) => {
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  const { app } = await build(t, { SMTP_URL: smtp.url })
  const login = (payload: Record<string, unknown>) =>
    app.inject({ method: 'POST', url: '/v1/auth/login', payload })
  const { users } = app.services

  await t.test('scope narrows, never widens', async (t) => {
    await signUpAndLogin(app, smtp, 'scoped@example.com')
    const narrow = await login({ email: 'scoped@example.com', password: STRONG_PASSWORD, scope: 'profile' })
    t.equal(narrow.statusCode, 200)
    t.equal(narrow.json().scope, 'profile')
    t.equal(decodeJwt(narrow.json().access_token).scope, 'profile')
    const sessions = await app.inject({
      method: 'GET',
      url: '/v1/me/sessions',
      headers: { authorization: `Bearer ${narrow.json().access_token}` },
    })
    t.equal(sessions.statusCode, 403, 'the narrowed token lacks the sessions scope')
    t.equal(sessions.json().code, 'insufficient_scope')

    const refreshed = await app.inject({
      method: 'POST',
      url: '/v1/auth/token',
      payload: { grant_type: 'refresh_token', refresh_token: narrow.json().refresh_token },
    })
    t.equal(refreshed.json().scope, 'profile', 'a refresh keeps the narrowed scope')

    const wide = await login({
      email: 'scoped@example.com',
      password: STRONG_PASSWORD,
      scope: 'profile admin:users',
    })
    t.equal(wide.statusCode, 400)
    t.equal(wide.json().code, 'invalid_scope')
  })

  await t.test('a disabled account is told only to the right password', async (t) => {
    await signUpAndLogin(app, smtp, 'disabled@example.com')
    const user = await users.findByEmail('disabled@example.com')
    await users.update(user!.id, { disabledAt: new Date() })
    const right = await login({ email: 'disabled@example.com', password: STRONG_PASSWORD })
    t.equal(right.statusCode, 403)
    t.equal(right.json().code, 'account_disabled')
    const wrong = await login({ email: 'disabled@example.com', password: 'some other long password' })
    t.equal(wrong.statusCode, 401)
    t.equal(wrong.json().code, 'invalid_credentials')
  })

  await t.test('a hash with old parameters is replaced at the next login', async (t) => {
    await signUpAndLogin(app, smtp, 'rehash@example.com')
    const user = await users.findByEmail('rehash@example.com')
    // As stored by an earlier configuration: argon2id with weaker parameters, no pepper.
    const old = await argon2.hash(STRONG_PASSWORD.normalize('NFKC'), {
      type: argon2.argon2id,
      memoryCost: 8192,
      timeCost: 1,
      parallelism: 1,
    })
    await users.update(user!.id, { passwordHash: old })
    t.equal((await login({ email: 'rehash@example.com', password: STRONG_PASSWORD })).statusCode, 200)
    const after = await users.findByEmail('rehash@example.com')
    t.not(after!.passwordHash, old, 'rehashed')
    t.match(after!.passwordHash, /^\$argon2id\$v=19\$m=19456,p=1,t=2\$/)
    t.equal((await login({ email: 'rehash@example.com', password: STRONG_PASSWORD })).statusCode, 200)
  })

  await t.test('RFC 7009 revocation of a refresh token ends its session', async (t) => {
    const tokens = await signUpAndLogin(app, smtp, 'revoke@example.com')
    const revoked = await app.inject({
      method: 'POST',
      url: '/v1/auth/revoke',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: `token=${encodeURIComponent(tokens.refresh_token)}&token_type_hint=refresh_token`,
    })
    t.equal(revoked.statusCode, 200)
    t.equal(revoked.headers['cache-control'], 'no-store')
    const me = await app.inject({
      method: 'GET',
      url: '/v1/me',
      headers: { authorization: `Bearer ${tokens.access_token}` },
    })
    t.equal(me.statusCode, 401)
    const again = await app.inject({
      method: 'POST',
      url: '/v1/auth/revoke',
      payload: { token: tokens.refresh_token },
    })
    t.equal(again.statusCode, 200, 'revoking twice is still 200')
  })

  await t.test('EMAIL_VERIFICATION=optional lets an unverified user in', async (t) => {
    const optional = await build(t, { SMTP_URL: smtp.url, EMAIL_VERIFICATION: 'optional' })
    await optional.app.inject({
      method: 'POST',
      url: '/v1/auth/signup',
      payload: { email: 'soon@example.com', password: STRONG_PASSWORD },
    })
    const answer = await optional.app.inject({
      method: 'POST',
      url: '/v1/auth/login',
      payload: { email: 'soon@example.com', password: STRONG_PASSWORD },
    })
    t.equal(answer.statusCode, 200)
    const me = await optional.app.inject({
      method: 'GET',
      url: '/v1/me',
      headers: { authorization: `Bearer ${answer.json().access_token}` },
    })
    t.equal(me.json().email_verified, false)
  })
})
