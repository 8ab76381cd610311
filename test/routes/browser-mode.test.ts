import { IncomingMessage, ServerResponse } from 'node:http'
import { Socket } from 'node:net'
import helmet from 'helmet'
import { Secret, TOTP } from 'otpauth'
import t from 'tap'
import { HELMET_OPTIONS } from '../../src/plugins/app/browser.js'
import { build } from '../helpers/app.js'
import { STRONG_PASSWORD, signUpAndLogin } from '../helpers/flows.js'
import { startSmtpServer } from '../helpers/smtp.js'

const SPA = 'https://app.example.com'
const browserHeaders = {
  origin: SPA,
  'x-requested-with': 'XMLHttpRequest',
  'content-type': 'application/json',
}

/** The value of the refresh cookie in a Set-Cookie header, with its attributes. */
function refreshCookie(setCookie: string | string[] | undefined) {
  const line = [setCookie ?? []].flat().find((item) => item.startsWith('__Host-refresh_token='))
  if (!line) return undefined
  const [pair = '', ...attributes] = line.split(';').map((part) => part.trim())
  return { value: pair.slice('__Host-refresh_token='.length), attributes, line }
}

t.test('browser mode: the refresh token lives in an HttpOnly cookie', async (t) => {
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  const { app } = await build(t, { SMTP_URL: smtp.url, CORS_ORIGINS: `${SPA},http://localhost:5173` })
  await signUpAndLogin(app, smtp, 'spa@example.com')
  const cookieLogin = (extra: Record<string, unknown> = {}) =>
    app.inject({
      method: 'POST',
      url: '/v1/auth/login',
      headers: { origin: SPA },
      payload: { email: 'spa@example.com', password: STRONG_PASSWORD, use_cookie: true, ...extra },
    })

  const login = await cookieLogin()
  t.equal(login.statusCode, 200)
  t.notOk('refresh_token' in login.json(), 'not in the body')
  t.ok(login.json().access_token)
  const cookie = refreshCookie(login.headers['set-cookie'])
  t.ok(cookie, 'set as __Host-refresh_token')
  t.match(cookie!.value, /^[0-9a-f-]{36}\.[A-Za-z0-9_-]{43}$/)
  t.same(
    [...cookie!.attributes].sort(),
    ['HttpOnly', 'Path=/', 'SameSite=Strict', 'Secure'],
    'no Domain, no Max-Age',
  )

  const remembered = refreshCookie((await cookieLogin({ remember: true })).headers['set-cookie'])
  const maxAge = Number(remembered?.attributes.find((item) => item.startsWith('Max-Age='))?.split('=')[1])
  t.ok(Math.abs(maxAge - 30 * 86400) <= 2, `remember-me: Max-Age is the absolute lifetime (${maxAge})`)

  const refresh = (
    headers: Record<string, string>,
    value = cookie!.value,
    payload = '{"grant_type":"refresh_token"}',
  ) =>
    app.inject({
      method: 'POST',
      url: '/v1/auth/token',
      headers: { cookie: `__Host-refresh_token=${value}`, ...headers },
      payload,
    })

  await t.test('each CSRF rule refuses a cookie request on its own', async (t) => {
    const cases: [string, Record<string, string>][] = [
      ['no Origin', { 'x-requested-with': 'XMLHttpRequest', 'content-type': 'application/json' }],
      ['an unlisted Origin', { ...browserHeaders, origin: 'https://evil.example.net' }],
      ['a look-alike Origin', { ...browserHeaders, origin: 'https://app.example.com.evil.net' }],
      ['another scheme', { ...browserHeaders, origin: 'http://app.example.com' }],
      ['another port', { ...browserHeaders, origin: 'https://app.example.com:8443' }],
      ['Origin null', { ...browserHeaders, origin: 'null' }],
      ['no X-Requested-With', { origin: SPA, 'content-type': 'application/json' }],
      ['Sec-Fetch-Site cross-site', { ...browserHeaders, 'sec-fetch-site': 'cross-site' }],
    ]
    for (const [name, headers] of cases) {
      const answer = await refresh(headers)
      t.equal(answer.statusCode, 403, name)
      t.equal(answer.json().error, 'csrf_check_failed', name)
      t.notOk(answer.headers['set-cookie'], `${name}: no cookie rotated`)
    }
    const form = await refresh(
      { ...browserHeaders, 'content-type': 'application/x-www-form-urlencoded' },
      cookie!.value,
      'grant_type=refresh_token',
    )
    t.equal(form.statusCode, 403, 'a form body with the cookie is refused')
    t.equal(form.json().error, 'csrf_check_failed')
    const text = await refresh(
      { ...browserHeaders, 'content-type': 'text/plain' },
      cookie!.value,
      'grant_type=refresh_token',
    )
    t.equal(text.statusCode, 415, 'text/plain is refused')
  })

  await t.test('the token endpoint rotates through the cookie; logout clears it', async (t) => {
    const rotated = await refresh(browserHeaders)
    t.equal(rotated.statusCode, 200)
    t.notOk('refresh_token' in rotated.json())
    t.equal(rotated.headers['cache-control'], 'no-store')
    const next = refreshCookie(rotated.headers['set-cookie'])
    t.ok(next)
    t.not(next!.value, cookie!.value, 'a new refresh token in the cookie')
    t.same([...next!.attributes].sort(), ['HttpOnly', 'Path=/', 'SameSite=Strict', 'Secure'])

    const me = await app.inject({
      method: 'GET',
      url: '/v1/me',
      headers: { authorization: `Bearer ${rotated.json().access_token}`, origin: SPA },
    })
    t.equal(me.statusCode, 200)
    t.equal(me.headers['access-control-allow-origin'], SPA)
    t.equal(me.headers['access-control-allow-credentials'], 'true')
    t.match(me.headers['access-control-expose-headers'], /X-Request-Id/)
    t.match(me.headers.vary, /Origin/)

    const logout = await app.inject({
      method: 'POST',
      url: '/v1/auth/logout',
      headers: { ...browserHeaders, cookie: `__Host-refresh_token=${next!.value}` },
      payload: '{}',
    })
    t.equal(logout.statusCode, 204)
    const cleared = refreshCookie(logout.headers['set-cookie'])
    t.equal(cleared?.value, '', 'cleared')
    t.ok(cleared?.attributes.includes('HttpOnly') && cleared.attributes.includes('Secure'))
    t.ok(cleared?.attributes.includes('SameSite=Strict') && cleared.attributes.includes('Path=/'))
    t.ok(cleared?.attributes.some((item) => /^Expires=Thu, 01 Jan 1970/.test(item) || item === 'Max-Age=0'))
    t.equal((await refresh(browserHeaders, next!.value)).statusCode, 400, 'the session ended')

    const csrfLogout = await app.inject({
      method: 'POST',
      url: '/v1/auth/logout',
      headers: {
        origin: 'https://evil.example.net',
        'content-type': 'application/json',
        cookie: `__Host-refresh_token=${remembered!.value}`,
      },
      payload: '{}',
    })
    t.equal(csrfLogout.statusCode, 403)
    t.equal(csrfLogout.json().code, 'csrf_check_failed')
  })

  await t.test('use_cookie carries through the MFA challenge', async (t) => {
    const plain = (
      await app.inject({
        method: 'POST',
        url: '/v1/auth/login',
        payload: { email: 'spa@example.com', password: STRONG_PASSWORD },
      })
    ).json()
    const headers = { authorization: `Bearer ${plain.access_token}` }
    const { secret } = (await app.inject({ method: 'POST', url: '/v1/me/mfa/totp', headers })).json()
    const totp = new TOTP({ secret: Secret.fromBase32(secret) })
    await app.inject({
      method: 'POST',
      url: '/v1/me/mfa/totp/activate',
      headers,
      payload: { code: totp.generate() },
    })
    const challenged = await cookieLogin()
    t.equal(challenged.statusCode, 403)
    const verified = await app.inject({
      method: 'POST',
      url: '/v1/auth/mfa/verify',
      payload: {
        mfa_token: challenged.json().mfa_token,
        code: totp.generate({ timestamp: Date.now() + 30_000 }),
      },
    })
    t.equal(verified.statusCode, 200)
    t.notOk('refresh_token' in verified.json())
    t.ok(refreshCookie(verified.headers['set-cookie']), 'the refresh token is set as the cookie')
  })
})

t.test('CORS allows only the listed origins, with credentials', async (t) => {
  const { app } = await build(t, { CORS_ORIGINS: SPA })
  const preflight = (origin: string) =>
    app.inject({
      method: 'OPTIONS',
      url: '/v1/auth/token',
      headers: {
        origin,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type,x-requested-with',
      },
    })
  const allowed = await preflight(SPA)
  t.equal(allowed.statusCode, 204)
  t.equal(allowed.headers['access-control-allow-origin'], SPA)
  t.equal(allowed.headers['access-control-allow-credentials'], 'true')
  t.match(allowed.headers['access-control-allow-headers'], /X-Requested-With/)
  t.match(allowed.headers['access-control-allow-headers'], /Authorization/)
  t.equal(allowed.headers['access-control-max-age'], '600')
  t.match(allowed.headers.vary, /Origin/)
  for (const origin of [
    'https://evil.example.net',
    'null',
    'https://app.example.com.evil.net',
    'http://app.example.com',
    'https://app.example.com:444',
  ]) {
    const refused = await preflight(origin)
    t.notOk(refused.headers['access-control-allow-origin'], `${origin} gets no Access-Control-Allow-Origin`)
    t.notOk(
      refused.headers['access-control-allow-credentials'] === 'true' &&
        refused.headers['access-control-allow-origin'] === '*',
    )
  }
})

t.test('security headers on every answer, errors included', async (t) => {
  const { app } = await build(t, { RATE_LIMIT_DEFAULT: '3/minute', BODY_LIMIT: '2048' })
  app.get('/boom', async () => {
    throw new Error('boom')
  })
  const answers = {
    ok: await app.inject({ method: 'GET', url: '/.well-known/jwks.json' }),
    unauthenticated: await app.inject({ method: 'GET', url: '/v1/me' }),
    notFound: await app.inject({ method: 'GET', url: '/nowhere' }),
    tooLarge: await app.inject({
      method: 'POST',
      url: '/v1/auth/login',
      payload: { email: 'a@b.c', password: 'x'.repeat(4000) },
    }),
    internal: await app.inject({ method: 'GET', url: '/boom' }),
  }
  let limited = answers.ok
  for (let index = 0; index < 3; index++)
    limited = await app.inject({ method: 'GET', url: '/.well-known/oauth-authorization-server' })
  const all = { ...answers, limited }
  t.equal(all.tooLarge.statusCode, 413)
  t.equal(all.internal.statusCode, 500)
  t.equal(all.limited.statusCode, 429)
  for (const [name, answer] of Object.entries(all)) {
    t.equal(
      answer.headers['strict-transport-security'],
      'max-age=31536000; includeSubDomains',
      `${name}: HSTS`,
    )
    t.equal(answer.headers['x-content-type-options'], 'nosniff', `${name}: nosniff`)
    t.equal(answer.headers['x-frame-options'], 'DENY', `${name}: X-Frame-Options`)
    t.equal(answer.headers['referrer-policy'], 'no-referrer', `${name}: Referrer-Policy`)
    t.equal(
      answer.headers['content-security-policy'],
      "default-src 'none';frame-ancestors 'none';base-uri 'none'",
      `${name}: CSP`,
    )
    t.notOk(answer.headers['x-powered-by'], `${name}: no X-Powered-By`)
  }
  // The headers are helmet's, computed once: every one of them, as helmet's own middleware sets
  // them on a real response.
  const request = new IncomingMessage(new Socket())
  const response = new ServerResponse(request)
  response.setHeader('x-powered-by', 'something')
  helmet(HELMET_OPTIONS)(request, response, () => {})
  const fromHelmet = response.getHeaders()
  t.ok(Object.keys(fromHelmet).length >= 10, 'helmet sets its headers')
  for (const [name, answer] of Object.entries(all)) {
    for (const [header, value] of Object.entries(fromHelmet)) {
      t.equal(answer.headers[header], value, `${name}: ${header} as helmet sets it`)
    }
  }
  const docs = await app.inject({ method: 'GET', url: '/docs/' })
  const csp = String(docs.headers['content-security-policy'])
  t.match(csp, /default-src 'none'/)
  t.match(csp, /frame-ancestors 'none'/)
  t.match(csp, /script-src 'self'/)
  t.notMatch(csp, /https:|unsafe-eval/, 'nothing more than the docs need')
})
