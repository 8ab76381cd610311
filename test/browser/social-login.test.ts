import { createServer } from 'node:net'
import t from 'tap'
import { build } from '../helpers/app.js'
import { chromiumAvailable, launchBrowser, startStaticServer } from '../helpers/browser.js'
import { CLIENT_ID, CLIENT_SECRET, startOpenIdProvider } from '../helpers/oidc.js'

// Social login in headless chromium: the API on http://localhost (a secure context, so its
// `__Host-` cookie works), the OpenID Provider on http://127.0.0.1, another site. The binding
// cookie must come back on the provider's cross-site redirect (SameSite=Lax) and on its
// cross-site form post (SameSite=None), and must not exist in another browser.

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, 'localhost', resolve))
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (!address || typeof address === 'string') throw new Error('no port')
  return address.port
}

if (chromiumAvailable(t)) {
  const apiOrigin = `http://localhost:${await freePort()}`
  const spa = await startStaticServer(t, {
    pages: { '/callback': '<!doctype html><title>Back</title><h1>Back</h1>' },
  })
  const appCallback = `${spa.origin}/callback`
  const op = await startOpenIdProvider(t, ['op', 'posting'], { appBase: apiOrigin })
  const provider = { issuer: op.issuer, client_id: CLIENT_ID, client_secret: CLIENT_SECRET }
  const { app } = await build(t, {
    ISSUER: apiOrigin,
    REDIRECT_ALLOWLIST: appCallback,
    OIDC_PROVIDERS: JSON.stringify([
      { id: 'op', ...provider },
      { id: 'posting', ...provider, response_mode: 'form_post' },
    ]),
  })
  await app.listen({ port: Number(new URL(apiOrigin).port), host: 'localhost' })
  const browser = await launchBrowser(t)
  const authorizeUrl = (id: string) =>
    `${apiOrigin}/v1/auth/oidc/${id}/authorize?redirect_to=${encodeURIComponent(appCallback)}`
  const exchange = (code: string) =>
    app.inject({ method: 'POST', url: '/v1/auth/token', payload: { grant_type: 'authorization_code', code } })

  for (const [id, mode] of [
    ['op', 'query (a cross-site redirect back)'],
    ['posting', 'form_post (cross-site POST, SameSite=None)'],
  ] as const) {
    await t.test(`the browser comes back signed in: ${mode}`, async (t) => {
      op.signInAs(`browser-${id}`, { email: `browser-${id}@example.com`, email_verified: true })
      const context = await browser.newContext()
      context.setDefaultTimeout(15_000)
      t.teardown(() => context.close())
      const page = await context.newPage()
      await page.goto(authorizeUrl(id))
      await page.waitForURL((url) => url.href.startsWith(appCallback))
      const landed = new URL(page.url())
      t.equal(landed.searchParams.get('error'), null)
      const code = landed.searchParams.get('code')
      t.match(code, /^[A-Za-z0-9_-]{43}$/)
      const tokens = await exchange(code!)
      t.equal(tokens.statusCode, 200)
      const user = await app.services.users.findByEmail(`browser-${id}@example.com`)
      t.ok(user, 'the account exists')
      const binding = (await context.cookies(apiOrigin)).find(
        (cookie) => cookie.name === '__Host-oidc_binding',
      )
      t.notOk(binding, 'the binding cookie is gone after the callback')
    })
  }

  await t.test('a sign-in started elsewhere cannot be finished in this browser', async (t) => {
    op.signInAs('browser-victim', { email: 'browser-victim@example.com', email_verified: true })
    // The attacker starts a sign-in (and keeps its cookie); the victim's browser is sent on.
    const started = await app.inject({
      method: 'GET',
      url: `/v1/auth/oidc/op/authorize?redirect_to=${encodeURIComponent(appCallback)}`,
    })
    const context = await browser.newContext()
    t.teardown(() => context.close())
    const page = await context.newPage()
    const callbackAnswer = page.waitForResponse((response) =>
      response.url().startsWith(`${apiOrigin}/v1/auth/oidc/op/callback`),
    )
    await page.goto(String(started.headers.location))
    const answer = await callbackAnswer
    t.equal(answer.status(), 400)
    t.match(await answer.text(), /another browser/)
    t.notOk(page.url().startsWith(appCallback), 'the app never gets a code')
    t.notOk(await app.services.users.findByEmail('browser-victim@example.com'))
  })
}
