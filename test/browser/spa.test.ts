import type { AddressInfo } from 'node:net'
import { Secret, TOTP } from 'otpauth'
import type { BrowserContext, Page, Response } from 'playwright-core'
import t, { type Test } from 'tap'
import { build } from '../helpers/app.js'
import {
  chromiumAvailable,
  launchBrowser,
  type PageProblems,
  SPA_ROOT,
  startStaticServer,
  watchPage,
} from '../helpers/browser.js'
import { readableMail, STRONG_PASSWORD, signUpAndLogin } from '../helpers/flows.js'
import { type ReceivedMessage, startSmtpServer } from '../helpers/smtp.js'

// The example SPA (examples/spa) against a real API in headless chromium. Both are served on
// `localhost` (different ports): chromium treats http://localhost as a secure context, so the
// API's `Secure` `__Host-` cookie works there, and the two origins are same-site, as an app and
// its API on one domain would be.

const COOKIE = '__Host-refresh_token'
const NEW_PASSWORD = 'lantern orchard velvet 73 quietly'

if (chromiumAvailable(t)) {
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())

  let apiOrigin = ''
  // The SPA under a strict CSP of its own: nothing inline, and it talks to the API alone.
  const spa = await startStaticServer(t, {
    root: SPA_ROOT,
    headers: () => ({
      'content-security-policy': `default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src ${apiOrigin}; form-action 'none'; base-uri 'none'; frame-ancestors 'none'`,
      'referrer-policy': 'no-referrer',
    }),
  })
  const { app } = await build(t, { SMTP_URL: smtp.url, CORS_ORIGINS: spa.origin })
  await app.listen({ port: 0, host: 'localhost' })
  apiOrigin = `http://localhost:${(app.server.address() as AddressInfo).port}`
  const browser = await launchBrowser(t)

  const spaUrl = `${spa.origin}/?api=${encodeURIComponent(apiOrigin)}`
  const apiCall =
    (path: string, method = 'POST') =>
    (response: Response) =>
      response.url() === `${apiOrigin}${path}` && response.request().method() === method

  async function newContext(t: Test): Promise<BrowserContext> {
    const context = await browser.newContext()
    context.setDefaultTimeout(15_000)
    t.teardown(() => context.close())
    return context
  }

  async function openSpa(context: BrowserContext): Promise<{ page: Page; problems: PageProblems }> {
    const page = await context.newPage()
    const problems = watchPage(page)
    await page.goto(spaUrl)
    return { page, problems }
  }

  /** Fills in and sends the SPA's sign-in form; resolves to the login answer. */
  async function submitSignIn(page: Page, email: string, password: string, remember = false) {
    await page.getByRole('heading', { name: 'Sign in', exact: true }).waitFor()
    await page.getByLabel('Email address').fill(email)
    await page.getByLabel('Password', { exact: true }).fill(password)
    if (remember) await page.getByLabel('Remember me on this device').check()
    const login = page.waitForResponse(apiCall('/v1/auth/login'))
    await page.getByRole('button', { name: 'Sign in', exact: true }).click()
    return login
  }

  const signedInHeading = (page: Page) => page.getByRole('heading', { name: 'You are signed in' })
  const refreshCookie = async (context: BrowserContext) =>
    (await context.cookies(apiOrigin)).find((cookie) => cookie.name === COOKIE)
  const XHR_JSON = { 'Content-Type': 'application/json', 'X-Requested-With': 'XMLHttpRequest' }
  /**
   * fetch() in the page: whether its promise resolved (and with what status) or rejected.
   * (Only anonymous functions go to the page: tsx would wrap a named one in a helper it lacks.)
   */
  const fetchInPage = (page: Page, url: string, init: RequestInit) =>
    page.evaluate(
      ([url, init]) =>
        fetch(url, init).then(
          (response) => `resolved ${response.status}`,
          (error: Error) => `rejected ${error.name}`,
        ),
      [url, init] as const,
    )
  /** Calls the SPA module's own refresh() (the same module instance the page runs). */
  const refreshInPage = (page: Page, times = 1) =>
    page.evaluate<string[]>(
      `import('/app.js').then((spa) => Promise.all(Array.from({ length: ${times} }, () => spa.refresh())))`,
    )
  const waitForMail = (email: string, pattern: RegExp) =>
    smtp.waitFor((message: ReceivedMessage) => message.to.includes(email) && pattern.test(message.raw))
  /** The path and query of the first `/path?token=` link in a message (the link names APP_URL). */
  const linkPath = (message: ReceivedMessage, path: string) => {
    const match = readableMail(message.raw).match(new RegExp(`${path}\\?token=[A-Za-z0-9_%-]+`))
    if (!match) throw new Error(`no ${path} link in the message`)
    return match[0]
  }

  t.test('signs in, survives a reload through the cookie alone, refreshes, signs out', async (t) => {
    const email = 'ada@example.com'
    await signUpAndLogin(app, smtp, email)
    const context = await newContext(t)
    // Fake timers, so the scheduled refresh can be reached without waiting 14 minutes.
    await context.clock.install()
    const { page, problems } = await openSpa(context)

    const login = await submitSignIn(page, email, STRONG_PASSWORD)
    t.equal(login.status(), 200)
    const body = await login.json()
    t.type(body.access_token, 'string')
    t.notOk('refresh_token' in body, 'no refresh token in the body')
    t.match(await login.headerValue('set-cookie'), /^__Host-refresh_token=/)
    await signedInHeading(page).waitFor()
    t.equal(await page.locator('[data-field="email"]').textContent(), email, '/v1/me is shown')
    t.equal(await page.locator('[data-field="email_verified"]').textContent(), 'Yes')

    const cookie = await refreshCookie(context)
    t.ok(cookie, 'the browser keeps the refresh cookie')
    t.match(cookie, { httpOnly: true, secure: true, sameSite: 'Strict', path: '/', expires: -1 })
    t.equal(cookie?.domain, 'localhost', 'host-only: no Domain attribute')

    t.notMatch(await page.evaluate<string>('document.cookie'), COOKIE, 'script cannot read the cookie')
    const storage = await page.evaluate<{ local: number; session: number; all: string }>(
      `({ local: localStorage.length, session: sessionStorage.length,
          all: JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) })`,
    )
    t.same(
      { local: storage.local, session: storage.session },
      { local: 0, session: 0 },
      'Web Storage is empty',
    )
    t.notMatch(storage.all, body.access_token)
    const tokenGlobals = await page.evaluate<string[]>(
      `Object.getOwnPropertyNames(window).filter((name) => {
        try { const value = window[name]; return typeof value === 'string' && value.includes('eyJ') } catch { return false }
      })`,
    )
    t.same(tokenGlobals, [], 'no global holds the access token')

    // A reload forgets the access token; the silent refresh gets a new one through the cookie.
    const onLoad = page.waitForResponse(apiCall('/v1/auth/token'))
    await page.reload()
    const reloaded = await onLoad
    t.equal(reloaded.status(), 200, 'POST /v1/auth/token with the cookie')
    const reloadedBody = await reloaded.json()
    t.type(reloadedBody.access_token, 'string')
    t.not(reloadedBody.access_token, body.access_token, 'a new access token')
    t.notOk('refresh_token' in reloadedBody)
    t.equal(
      (await reloaded.request().allHeaders())['x-requested-with'],
      'XMLHttpRequest',
      'the refresh carries X-Requested-With',
    )
    await signedInHeading(page).waitFor()
    const rotated = await refreshCookie(context)
    t.not(rotated?.value, cookie?.value, 'the cookie was rotated')

    // Concurrent refreshes share one request: one cookie is never spent twice by the page.
    const tokenPosts: string[] = []
    page.on('request', (request) => {
      if (request.method() === 'POST' && request.url() === `${apiOrigin}/v1/auth/token`)
        tokenPosts.push('post')
    })
    t.same(await refreshInPage(page, 3), ['ok', 'ok', 'ok'])
    t.equal(tokenPosts.length, 1, 'three refresh() calls, one request')

    // The next refresh is scheduled shortly before expires_in (900 s) runs out: not at 13½
    // minutes, by 14 minutes 5 seconds.
    await page.clock.fastForward('13:30')
    await page.waitForTimeout(200)
    t.equal(tokenPosts.length, 1, 'no refresh long before expiry')
    const scheduled = page.waitForResponse(apiCall('/v1/auth/token'))
    await page.clock.fastForward('00:35')
    const scheduledAnswer = await scheduled
    t.equal(scheduledAnswer.status(), 200, 'the scheduled refresh ran')
    const lastAccessToken = (await scheduledAnswer.json()).access_token as string
    t.equal(tokenPosts.length, 2)

    // Sign-out ends the session on the server and clears the cookie.
    const logout = page.waitForResponse(apiCall('/v1/auth/logout'))
    await page.getByRole('button', { name: 'Sign out' }).click()
    t.equal((await logout).status(), 204)
    await page.getByRole('heading', { name: 'Sign in', exact: true }).waitFor()
    t.equal(await refreshCookie(context), undefined, 'the cookie is gone')
    const me = await app.inject({
      method: 'GET',
      url: '/v1/me',
      headers: { authorization: `Bearer ${lastAccessToken}` },
    })
    t.equal(me.statusCode, 401, 'the access token of the ended session is refused')

    const afterSignOut = page.waitForResponse(apiCall('/v1/auth/token'))
    await page.reload()
    t.equal((await afterSignOut).status(), 400, 'no cookie, no token')
    await page.getByRole('heading', { name: 'Sign in', exact: true }).waitFor()
    t.equal(await signedInHeading(page).count(), 0)

    t.same(problems.csp, [], 'no CSP violation in the SPA')
    t.same(problems.scriptErrors, [])
  })

  t.test('a page on an origin CORS does not list can neither read nor rotate the session', async (t) => {
    const email = 'grace@example.com'
    await signUpAndLogin(app, smtp, email)
    const context = await newContext(t)
    const { page: spaPage } = await openSpa(context)
    t.equal((await submitSignIn(spaPage, email, STRONG_PASSWORD)).status(), 200)
    await signedInHeading(spaPage).waitFor()
    const cookie = (await refreshCookie(context))!.value

    const form = (enctype: string, fields: string) => `<!doctype html>
<html><head><title>elsewhere</title></head><body>
<form id="f" method="post" action="${apiOrigin}/v1/auth/token" enctype="${enctype}">${fields}</form>
<script>document.getElementById('f').submit()</script>
</body></html>`
    const pages = {
      '/blank.html': '<!doctype html><title>elsewhere</title><p>elsewhere</p>',
      '/form-urlencoded.html': form(
        'application/x-www-form-urlencoded',
        '<input name="grant_type" value="refresh_token">',
      ),
      '/form-text.html': form('text/plain', `<input name='{"grant_type":"refresh_token","x":"' value='"}'>`),
    }
    // Cross-site (another host), and same-site but another origin: there SameSite=Strict lets
    // the cookie through, so only the API's Origin and X-Requested-With checks stand.
    const crossSite = await startStaticServer(t, { host: '127.0.0.1', pages })
    const sameSite = await startStaticServer(t, { host: 'localhost', pages })

    for (const [name, elsewhere] of [
      ['cross-site', crossSite],
      ['same-site', sameSite],
    ] as const) {
      await t.test(`${name}: ${elsewhere.origin}`, async (t) => {
        const page = await context.newPage()
        t.teardown(() => page.close())
        await page.goto(elsewhere.url('/blank.html'))
        const cookieCall = { credentials: 'include', headers: XHR_JSON } as const
        const outcomes = {
          refresh: await fetchInPage(page, `${apiOrigin}/v1/auth/token`, {
            ...cookieCall,
            method: 'POST',
            body: '{"grant_type":"refresh_token"}',
          }),
          me: await fetchInPage(page, `${apiOrigin}/v1/me`, { credentials: 'include' }),
          logout: await fetchInPage(page, `${apiOrigin}/v1/auth/logout`, {
            ...cookieCall,
            method: 'POST',
            body: '{}',
          }),
        }
        t.same(
          outcomes,
          { refresh: 'rejected TypeError', me: 'rejected TypeError', logout: 'rejected TypeError' },
          'credentialed fetches are blocked by CORS',
        )

        // A request that needs no preflight still reaches the API; it must not rotate anything.
        const simple = page.waitForResponse(apiCall('/v1/auth/token'))
        t.equal(
          await fetchInPage(page, `${apiOrigin}/v1/auth/token`, {
            method: 'POST',
            mode: 'no-cors',
            credentials: 'include',
            headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
            body: 'grant_type=refresh_token',
          }),
          'resolved 0',
          'an opaque answer',
        )
        const simpleAnswer = await simple
        t.ok(simpleAnswer.status() >= 400, `a no-cors POST is refused (${simpleAnswer.status()})`)
        t.equal(await simpleAnswer.headerValue('set-cookie'), null)

        for (const formPage of ['/form-urlencoded.html', '/form-text.html']) {
          const answer = page.waitForResponse(apiCall('/v1/auth/token'))
          await page.goto(elsewhere.url(formPage), { waitUntil: 'commit' })
          const response = await answer
          const text = await response.text()
          t.ok(response.status() >= 400, `${formPage}: an error (${response.status()}): ${text}`)
          t.notMatch(text, /access_token/, `${formPage}: no token`)
          t.equal(await response.headerValue('set-cookie'), null, `${formPage}: no cookie set`)
          const sentCookie = (await response.request().allHeaders()).cookie ?? ''
          if (name === 'cross-site') {
            t.notMatch(sentCookie, COOKIE, `${formPage}: SameSite=Strict kept the cookie home`)
          } else {
            t.match(sentCookie, COOKIE, `${formPage}: same-site, so the cookie went along`)
            if (formPage === '/form-urlencoded.html') {
              t.equal(response.status(), 403)
              t.equal(JSON.parse(text).error, 'csrf_check_failed', 'refused by the CSRF check')
            }
          }
        }
        t.equal((await refreshCookie(context))?.value, cookie, 'the cookie was not rotated')
      })
    }

    // The SPA's own tab still refreshes with its cookie: nothing was spent or revoked.
    const answer = spaPage.waitForResponse(apiCall('/v1/auth/token'))
    t.same(await refreshInPage(spaPage), ['ok'])
    t.equal((await answer).status(), 200)
    t.not((await refreshCookie(context))?.value, cookie, 'rotated by the SPA itself')
  })

  t.test('/docs renders without a CSP violation', async (t) => {
    const context = await newContext(t)
    const page = await context.newPage()
    const problems = watchPage(page)
    const response = await page.goto(`${apiOrigin}/docs`)
    t.equal(response?.status(), 200)
    await page.locator('.swagger-ui .info .title').filter({ hasText: 'Latchkey' }).waitFor()
    await page.locator('.opblock').first().waitFor()
    t.ok((await page.locator('.opblock').count()) > 10, 'the operations are listed')
    t.same(problems.csp, [], 'no Content Security Policy errors on the console')
    t.same(problems.scriptErrors, [])
  })

  t.test('hosted pages: verify the email, reset the password, sign in with it', async (t) => {
    const email = 'hopper@example.com'
    const signup = await app.inject({
      method: 'POST',
      url: '/v1/auth/signup',
      payload: { email, password: STRONG_PASSWORD },
    })
    t.equal(signup.statusCode, 202)
    const verifyLink = `${apiOrigin}${linkPath(await waitForMail(email, /verify-email/), '/verify-email')}`

    const context = await newContext(t)
    const page = await context.newPage()
    const problems = watchPage(page)
    await page.goto(verifyLink)
    await page.getByRole('heading', { name: 'Confirm your email address' }).waitFor()
    await page.getByRole('button', { name: 'Confirm my email address' }).click()
    await page.getByRole('heading', { name: 'Email address confirmed' }).waitFor()
    t.ok((await app.services.users.findByEmail(email))?.emailVerifiedAt, 'the address is verified')

    const forgot = await app.inject({ method: 'POST', url: '/v1/auth/password/forgot', payload: { email } })
    t.equal(forgot.statusCode, 202)
    const resetLink = `${apiOrigin}${linkPath(await waitForMail(email, /reset-password/), '/reset-password')}`

    // A mail scanner follows the link first: that must not spend it.
    for (const method of ['GET', 'HEAD']) {
      const scanned = await fetch(resetLink, { method, redirect: 'manual' })
      t.equal(scanned.status, 200, `the scanner's ${method}`)
      await scanned.text()
    }

    await page.goto(resetLink)
    await page.getByRole('heading', { name: 'Choose a new password' }).waitFor()
    const weak = page.waitForResponse(apiCall('/reset-password'))
    await page.getByLabel('New password').fill('password1234')
    await page.getByRole('button', { name: 'Set my new password' }).click()
    t.equal((await weak).status(), 422)
    const alert = page.getByRole('alert')
    await alert.waitFor()
    t.match(await alert.textContent(), /cannot be used/)
    t.ok((await alert.getByRole('listitem').count()) > 0, 'the reasons are listed')
    t.equal(await page.getByLabel('New password').getAttribute('aria-invalid'), 'true')

    const strong = page.waitForResponse(apiCall('/reset-password'))
    await page.getByLabel('New password').fill(NEW_PASSWORD)
    await page.getByRole('button', { name: 'Set my new password' }).click()
    t.equal((await strong).status(), 200)
    await page.getByRole('heading', { name: 'Password changed' }).waitFor()
    t.same(problems.csp, [], 'no CSP violation on the hosted pages')

    const { page: spaPage, problems: spaProblems } = await openSpa(context)
    t.equal((await submitSignIn(spaPage, email, STRONG_PASSWORD)).status(), 401, 'the old password is gone')
    await spaPage
      .getByRole('alert')
      .filter({ hasText: 'The email address or password is not right.' })
      .waitFor()
    t.equal((await submitSignIn(spaPage, email, NEW_PASSWORD, true)).status(), 200)
    await signedInHeading(spaPage).waitFor()
    t.equal(await spaPage.locator('[data-field="email"]').textContent(), email)
    const remembered = await refreshCookie(context)
    t.ok(remembered && remembered.expires > Date.now() / 1000 + 86_400, 'remember me: a lasting cookie')
    t.same(spaProblems.csp, [])
    t.same(spaProblems.scriptErrors, [])
  })

  t.test('two-step sign-in: the cookie is set after the code', async (t) => {
    const email = 'mfa-spa@example.com'
    const first = await signUpAndLogin(app, smtp, email)
    const headers = { authorization: `Bearer ${first.access_token}` }
    const { secret } = (await app.inject({ method: 'POST', url: '/v1/me/mfa/totp', headers })).json()
    const totp = new TOTP({ secret: Secret.fromBase32(secret) })
    const activated = await app.inject({
      method: 'POST',
      url: '/v1/me/mfa/totp/activate',
      headers,
      payload: { code: totp.generate() },
    })
    t.equal(activated.statusCode, 200)

    const context = await newContext(t)
    const { page, problems } = await openSpa(context)
    t.equal((await submitSignIn(page, email, STRONG_PASSWORD)).status(), 403)
    await page.getByRole('heading', { name: 'Two-step verification' }).waitFor()
    t.equal(await refreshCookie(context), undefined, 'no cookie before the second factor')
    const verify = page.waitForResponse(apiCall('/v1/auth/mfa/verify'))
    // The code of the next step: the one used for activation is spent for its window.
    await page
      .getByLabel(/Code from your authenticator app/)
      .fill(totp.generate({ timestamp: Date.now() + 30_000 }))
    await page.getByRole('button', { name: 'Verify' }).click()
    t.equal((await verify).status(), 200)
    await signedInHeading(page).waitFor()
    t.match(await page.locator('[data-field="mfa"]').textContent(), /^On/)
    t.ok(await refreshCookie(context), 'the cookie is set')
    t.same(problems.csp, [])
    t.same(problems.scriptErrors, [])
  })
}
