import { decodeJwt, decodeProtectedHeader } from 'jose'
import t from 'tap'
import { build } from '../helpers/app.js'
import { readableMail, STRONG_PASSWORD, signUpAndLogin, tokenFromMail } from '../helpers/flows.js'
import { startSmtpServer } from '../helpers/smtp.js'

t.test('sign-up, verification, login, refresh, /v1/me, logout', async (t) => {
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  const { app, logs } = await build(t, { SMTP_URL: smtp.url })

  const email = 'ada@example.com'
  const signup = await app.inject({
    method: 'POST',
    url: '/v1/auth/signup',
    payload: { email, password: STRONG_PASSWORD },
  })
  t.equal(signup.statusCode, 202)
  t.same(signup.json(), { status: 'verification_email_sent' })

  const unverified = await app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    payload: { email, password: STRONG_PASSWORD },
  })
  t.equal(unverified.statusCode, 403)
  t.equal(unverified.json().code, 'email_not_verified')
  t.equal(unverified.headers['content-type'], 'application/problem+json; charset=utf-8')

  const mail = await smtp.waitFor((message) => message.to.includes(email))
  const verifyToken = tokenFromMail(mail, '/verify-email')
  t.match(readableMail(mail.raw), /http:\/\/latchkey\.test\/verify-email\?token=/)
  const verified = await app.inject({
    method: 'POST',
    url: '/v1/auth/verify-email',
    payload: { token: verifyToken },
  })
  t.equal(verified.statusCode, 204)
  const again = await app.inject({
    method: 'POST',
    url: '/v1/auth/verify-email',
    payload: { token: verifyToken },
  })
  t.equal(again.statusCode, 400, 'a verification token is single use')
  t.equal(again.json().code, 'invalid_token')

  const wrong = await app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    payload: { email, password: 'not the right password at all' },
  })
  const unknown = await app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    payload: { email: 'nobody@example.com', password: 'not the right password at all' },
  })
  t.equal(wrong.statusCode, 401)
  t.equal(unknown.statusCode, 401)
  const strip = (body: Record<string, unknown>) => ({ ...body, request_id: undefined })
  t.same(strip(wrong.json()), strip(unknown.json()), 'unknown email and wrong password look alike')
  t.equal(wrong.json().code, 'invalid_credentials')

  const login = await app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    payload: { email: 'ADA@example.com', password: STRONG_PASSWORD },
  })
  t.equal(login.statusCode, 200, 'email matches without regard to case')
  t.equal(login.headers['cache-control'], 'no-store')
  t.equal(login.headers.pragma, 'no-cache')
  const tokens = login.json()
  t.equal(tokens.token_type, 'Bearer')
  t.equal(tokens.expires_in, 900)
  t.equal(tokens.scope, 'profile sessions')
  t.match(tokens.refresh_token, /^[0-9a-f-]{36}\.[A-Za-z0-9_-]{43}$/)

  const header = decodeProtectedHeader(tokens.access_token)
  t.equal(header.typ, 'at+jwt')
  t.equal(header.alg, 'RS256')
  t.ok(header.kid)
  const claims = decodeJwt(tokens.access_token)
  t.equal(claims.iss, 'http://latchkey.test')
  t.equal(claims.aud, 'http://latchkey.test')
  t.equal(claims.client_id, 'first-party')
  t.equal(claims.scope, 'profile sessions')
  t.same(claims.roles, ['user'])
  t.same(claims.amr, ['pwd'])
  for (const name of ['exp', 'iat', 'nbf', 'auth_time'] as const) t.ok(Number.isInteger(claims[name]), name)
  t.equal((claims.exp as number) - (claims.iat as number), 900)
  t.type(claims.jti, 'string')
  t.type(claims.sid, 'string')

  const me = await app.inject({
    method: 'GET',
    url: '/v1/me',
    headers: { authorization: `Bearer ${tokens.access_token}` },
  })
  t.equal(me.statusCode, 200)
  t.equal(me.headers['cache-control'], 'no-store')
  t.match(me.json(), { id: claims.sub, email, email_verified: true, roles: ['user'], identities: [] })

  const refreshed = await app.inject({
    method: 'POST',
    url: '/v1/auth/token',
    payload: { grant_type: 'refresh_token', refresh_token: tokens.refresh_token },
  })
  t.equal(refreshed.statusCode, 200)
  t.equal(refreshed.headers['cache-control'], 'no-store')
  const next = refreshed.json()
  t.not(next.refresh_token, tokens.refresh_token, 'the refresh token rotates')
  t.equal(decodeJwt(next.access_token).auth_time, claims.auth_time, 'a refresh keeps auth_time')
  t.same(decodeJwt(next.access_token).amr, ['pwd'])

  const form = await app.inject({
    method: 'POST',
    url: '/v1/auth/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: `grant_type=refresh_token&refresh_token=${encodeURIComponent(next.refresh_token)}&client_id=first-party`,
  })
  t.equal(form.statusCode, 200, 'the token endpoint takes form bodies')
  const third = form.json()

  const sessions = await app.inject({
    method: 'GET',
    url: '/v1/me/sessions',
    headers: { authorization: `Bearer ${third.access_token}` },
  })
  t.equal(sessions.statusCode, 200)
  t.equal(sessions.json().items.length, 1)
  t.match(sessions.json().items[0], { id: claims.sid, current: true, remember: false })
  t.equal(sessions.json().next_cursor, null)

  const logout = await app.inject({
    method: 'POST',
    url: '/v1/auth/logout',
    payload: { refresh_token: third.refresh_token },
  })
  t.equal(logout.statusCode, 204)
  const afterLogout = await app.inject({
    method: 'GET',
    url: '/v1/me',
    headers: { authorization: `Bearer ${third.access_token}` },
  })
  t.equal(afterLogout.statusCode, 401, "a revoked session's access token is refused at once")
  t.equal(afterLogout.headers['www-authenticate'], 'Bearer error="invalid_token"')
  const refreshAfterLogout = await app.inject({
    method: 'POST',
    url: '/v1/auth/token',
    payload: { grant_type: 'refresh_token', refresh_token: third.refresh_token },
  })
  t.equal(refreshAfterLogout.statusCode, 400)
  t.same(Object.keys(refreshAfterLogout.json()).sort(), ['error', 'error_description'])
  t.equal(refreshAfterLogout.json().error, 'invalid_grant')

  // No secret may reach a log line.
  await app.services.outbox.drain()
  const secrets = [
    STRONG_PASSWORD,
    verifyToken,
    tokens.refresh_token,
    tokens.access_token,
    next.refresh_token,
  ]
  for (const secret of secrets) t.notOk(logs.text.includes(secret), 'a secret is absent from the logs')
  t.ok(logs.lines.length > 10, 'the app did log')
})

t.test('sign-up of a taken address answers exactly like a new one', async (t) => {
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  const { app } = await build(t, { SMTP_URL: smtp.url })
  await signUpAndLogin(app, smtp, 'grace@example.com')

  const fresh = await app.inject({
    method: 'POST',
    url: '/v1/auth/signup',
    headers: { 'x-request-id': 'same-id' },
    payload: { email: 'new@example.com', password: STRONG_PASSWORD },
  })
  const taken = await app.inject({
    method: 'POST',
    url: '/v1/auth/signup',
    headers: { 'x-request-id': 'same-id' },
    payload: { email: 'Grace@Example.com', password: STRONG_PASSWORD },
  })
  t.equal(taken.statusCode, fresh.statusCode)
  t.equal(taken.body, fresh.body, 'identical bytes')
  const headerNames = (headers: Record<string, unknown>) =>
    Object.keys(headers)
      .filter((name) => name !== 'date')
      .sort()
  t.same(headerNames(taken.headers), headerNames(fresh.headers))
  t.equal(taken.headers['content-length'], fresh.headers['content-length'])

  const notice = await smtp.waitFor(
    (message) => message.to.includes('grace@example.com') && !/verify-email/.test(readableMail(message.raw)),
  )
  t.match(readableMail(notice.raw), /reset-password/, 'the owner gets a notice, not a verification link')
})

t.test('bad input answers problems, never 500', async (t) => {
  const { app } = await build(t)
  const unknownProperty = await app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    payload: { email: 'a@example.com', password: 'x', admin: true },
  })
  t.equal(unknownProperty.statusCode, 400)
  t.equal(unknownProperty.json().code, 'validation_failed')
  t.same(unknownProperty.json().errors, [{ path: '/admin', message: 'is not an allowed property' }])

  const formOnJsonRoute = await app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: 'email=a@example.com&password=x',
  })
  t.equal(formOnJsonRoute.statusCode, 415)
  t.equal(formOnJsonRoute.json().code, 'unsupported_media_type')

  const malformed = await app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    headers: { 'content-type': 'application/json' },
    payload: '{"email":',
  })
  t.equal(malformed.statusCode, 400)
  t.equal(malformed.json().code, 'validation_failed')

  const huge = await app.inject({
    method: 'POST',
    url: '/v1/auth/signup',
    payload: { email: 'a@example.com', password: 'x'.repeat(70_000) },
  })
  t.equal(huge.statusCode, 413)
  t.equal(huge.json().code, 'payload_too_large')

  const weak = await app.inject({
    method: 'POST',
    url: '/v1/auth/signup',
    payload: { email: 'weak@example.com', password: 'password1234' },
  })
  t.equal(weak.statusCode, 422)
  t.equal(weak.json().code, 'weak_password')
  t.ok(weak.json().errors.length > 0)

  const missing = await app.inject({ method: 'GET', url: '/nope' })
  t.equal(missing.statusCode, 404)
  t.equal(missing.json().code, 'not_found')

  const badId = await app.inject({
    method: 'GET',
    url: '/healthz',
    headers: { 'x-request-id': 'bad id with spaces' },
  })
  t.not(badId.headers['x-request-id'], 'bad id with spaces')
  const goodId = await app.inject({
    method: 'GET',
    url: '/healthz',
    headers: { 'x-request-id': 'abc.DEF-123_x' },
  })
  t.equal(goodId.headers['x-request-id'], 'abc.DEF-123_x')

  const grant = await app.inject({
    method: 'POST',
    url: '/v1/auth/token',
    payload: { grant_type: 'password', username: 'a', password: 'b' },
  })
  t.equal(grant.statusCode, 400)
  t.equal(grant.json().error, 'invalid_request')
  t.equal(grant.headers['cache-control'], 'no-store')

  const unsupported = await app.inject({
    method: 'POST',
    url: '/v1/auth/token',
    payload: { grant_type: 'password' },
  })
  t.equal(unsupported.json().error, 'unsupported_grant_type')

  const client = await app.inject({
    method: 'POST',
    url: '/v1/auth/token',
    payload: { grant_type: 'refresh_token', refresh_token: 'x', client_id: 'someone-else' },
  })
  t.equal(client.statusCode, 401)
  t.equal(client.json().error, 'invalid_client')

  const revoke = await app.inject({ method: 'POST', url: '/v1/auth/revoke', payload: { token: 'garbage' } })
  t.equal(revoke.statusCode, 200, 'RFC 7009: an unknown token is not an error')
})
