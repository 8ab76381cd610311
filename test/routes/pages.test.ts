import { createHash } from 'node:crypto'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import { checkPassword } from '../../src/domain/password-policy.js'
import { escapeHtml } from '../../src/mail/templates.js'
import { build } from '../helpers/app.js'
import { readableMail, STRONG_PASSWORD, signUpAndLogin, tokenFromMail } from '../helpers/flows.js'
import { startSmtpServer } from '../helpers/smtp.js'

/** The pages' policy: the API-wide `default-src 'none'` plus the stylesheet and the form posts. */
const PAGE_CSP_DIRECTIVES = {
  'default-src': "'none'",
  'style-src': "'self'",
  'form-action': "'self'",
  'frame-ancestors': "'none'",
  'base-uri': "'none'",
}

function cspDirectives(header: unknown): Record<string, string> {
  const directives: Record<string, string> = {}
  for (const part of String(header).split(';')) {
    const [name, ...values] = part.trim().split(/\s+/)
    if (name) directives[name] = values.join(' ')
  }
  return directives
}

function attribute(tag: string, name: string): string | undefined {
  return tag.match(new RegExp(`\\s${name}="([^"]*)"`))?.[1]
}

/**
 * What every hosted page must be: HTML, not stored, under exactly the pages' CSP, no script or
 * inline style, styled by the hashed stylesheet, one `main` and one `h1`, a real title, and
 * every visible input labelled, every `aria-describedby` pointing at something.
 */
function checkPage(t: Test, page: LightMyRequestResponse, what: string): void {
  t.match(page.headers['content-type'], /^text\/html; charset=utf-8/, `${what}: HTML`)
  t.equal(page.headers['cache-control'], 'no-store', `${what}: not stored`)
  t.same(cspDirectives(page.headers['content-security-policy']), PAGE_CSP_DIRECTIVES, `${what}: CSP`)
  const body = page.body
  t.notMatch(body, /<script/i, `${what}: no script`)
  t.notMatch(body, /<style|\sstyle=/i, `${what}: no inline style (the CSP would refuse it)`)
  t.match(body, /<html lang="en">/, `${what}: language`)
  t.match(body, /<link rel="stylesheet" href="\/pages\/style\.[0-9a-f]{16}\.css">/, `${what}: stylesheet`)
  t.equal(body.match(/<h1[\s>]/g)?.length, 1, `${what}: one h1`)
  t.equal(body.match(/<main[\s>]/g)?.length, 1, `${what}: one main landmark`)
  t.match(body, /<title>[^<]+ – Latchkey<\/title>/, `${what}: descriptive title`)
  t.ok(body.indexOf('<h1') > body.indexOf('<main'), `${what}: the h1 is in main`)

  const ids = [...body.matchAll(/\sid="([^"]+)"/g)].map((match) => match[1])
  t.equal(new Set(ids).size, ids.length, `${what}: ids are unique`)
  const labels = [...body.matchAll(/<label for="([^"]+)">[^<]+<\/label>/g)].map((match) => match[1])
  for (const input of body.match(/<input\s[^>]*>/g) ?? []) {
    if (attribute(input, 'type') === 'hidden') continue
    const id = attribute(input, 'id')
    t.ok(id && labels.includes(id), `${what}: ${attribute(input, 'name')} has a label`)
    t.ok(attribute(input, 'autocomplete'), `${what}: ${attribute(input, 'name')} has autocomplete`)
    for (const described of attribute(input, 'aria-describedby')?.split(' ') ?? []) {
      t.ok(ids.includes(described), `${what}: aria-describedby="${described}" exists`)
    }
  }
  t.ok((body.match(/\sautofocus[\s>]/g)?.length ?? 0) <= 1, `${what}: at most one autofocus`)
}

async function stylesheet(app: FastifyInstance, page: LightMyRequestResponse) {
  const href = page.body.match(/<link rel="stylesheet" href="([^"]+)">/)?.[1] ?? '/missing'
  return { href, response: await app.inject({ method: 'GET', url: href }) }
}

t.test('hosted verification page: opening never spends the token; the button does', async (t) => {
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  const { app, logs } = await build(t, { SMTP_URL: smtp.url })
  await app.inject({
    method: 'POST',
    url: '/v1/auth/signup',
    payload: { email: 'page@example.com', password: STRONG_PASSWORD },
  })
  const token = tokenFromMail(await smtp.waitFor((m) => m.to.includes('page@example.com')), '/verify-email')

  for (let visit = 0; visit < 2; visit++) {
    const page = await app.inject({ method: 'GET', url: `/verify-email?token=${token}` })
    t.equal(page.statusCode, 200, 'a scanner or a second visit sees the same page')
    t.match(page.headers['content-type'], /^text\/html/)
    t.equal(page.headers['cache-control'], 'no-store')
    t.match(page.headers['content-security-policy'], /default-src 'none'/)
    t.notMatch(page.body, /<script/i, 'no script')
    t.match(page.body, /<html lang="en">/)
    t.match(page.body, /<form method="post" action="\/verify-email">/)
    checkPage(t, page, 'confirm page')
  }
  const me = await app.services.users.findByEmail('page@example.com')
  t.equal(me?.emailVerifiedAt, null, 'still unverified after opening the link')

  const confirm = await app.inject({
    method: 'POST',
    url: '/verify-email',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: `token=${encodeURIComponent(token)}`,
  })
  t.equal(confirm.statusCode, 200)
  t.match(confirm.body, /Email address confirmed/)
  checkPage(t, confirm, 'confirmed page')
  t.not((await app.services.users.findByEmail('page@example.com'))?.emailVerifiedAt, null)

  const spent = await app.inject({ method: 'GET', url: `/verify-email?token=${token}` })
  t.equal(spent.statusCode, 400)
  t.match(spent.body, /has already been used/)
  t.match(spent.body, /Send a new link/, 'says how to get a new email')
  checkPage(t, spent, 'spent verification link')
  t.match(spent.body, /<form method="post" action="\/verify-email\/resend">/)
  t.notMatch(spent.body, /autofocus/, 'the explanation, not the field, comes first')

  const garbage = await app.inject({
    method: 'GET',
    url: '/verify-email?token=%3Cscript%3Ealert(1)%3C/script%3E',
  })
  t.equal(garbage.statusCode, 400)
  t.notMatch(garbage.body, /<script>alert/, 'nothing from the URL is echoed unescaped')

  const resend = await app.inject({
    method: 'POST',
    url: '/verify-email/resend',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: 'email=nobody%40example.com',
  })
  t.equal(resend.statusCode, 202)
  checkPage(t, resend, 'resend answer')

  t.notOk(logs.text.includes(token), 'the token never reaches the log')
  t.match(logs.text, /verify-email\?token=\[REDACTED\]/, 'the URL is logged with the token redacted')

  const document = await app.inject({ method: 'GET', url: '/openapi.json' })
  t.equal(document.statusCode, 200)
  t.notOk(document.json().paths['/verify-email'], 'hosted pages are outside the API document')
  t.notOk(
    Object.keys(document.json().paths).some((path) => path.startsWith('/pages')),
    'so is their stylesheet',
  )
  t.ok(document.json().paths['/v1/auth/login'])
})

t.test('hosted reset page: a form that posts the token and the new password', async (t) => {
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  const { app, logs } = await build(t, { SMTP_URL: smtp.url })
  await signUpAndLogin(app, smtp, 'reset-page@example.com')
  const form = (url: string, body: string) =>
    app.inject({
      method: 'POST',
      url,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: body,
    })

  const start = await app.inject({ method: 'GET', url: '/reset-password' })
  t.equal(start.statusCode, 200)
  t.match(start.body, /<form method="post" action="\/reset-password\/request">/)
  checkPage(t, start, 'forgot-password page')
  t.match(start.body, /<input id="email"[^>]* autocomplete="email"[^>]* autofocus>/, 'the field is focused')
  const requested = await form('/reset-password/request', 'email=reset-page%40example.com')
  t.equal(requested.statusCode, 202)
  checkPage(t, requested, 'reset requested')
  const mail = await smtp.waitFor(
    (m) => m.to.includes('reset-page@example.com') && /reset-password\?token/.test(readableMail(m.raw)),
  )
  const token = tokenFromMail(mail, '/reset-password')

  const page = await app.inject({ method: 'GET', url: `/reset-password?token=${token}` })
  t.equal(page.statusCode, 200)
  t.match(page.body, /autocomplete="new-password"/)
  t.match(page.body, /<label for="password">/, 'labelled for assistive technology')
  t.notMatch(page.body, /<script/i)
  t.equal(page.headers['cache-control'], 'no-store')
  checkPage(t, page, 'new-password page')
  t.match(
    page.body,
    /<input id="password"[^>]* aria-describedby="password-help"/,
    'the hint is tied to the field',
  )
  t.match(page.body, /<p class="hint" id="password-help">At least 12 characters/)
  t.match(page.body, /<input id="password"[^>]* autofocus/)
  t.notMatch(page.body, /role="alert"/, 'no alert before anything was submitted')

  const weak = await form('/reset-password', `token=${token}&password=password1234`)
  t.equal(weak.statusCode, 422)
  t.match(weak.body, /role="alert"/)
  t.match(weak.body, /That password cannot be used/)
  checkPage(t, weak, 'weak password')
  t.match(weak.body, /<title>Error: Choose a new password – Latchkey<\/title>/, 'the title says so')
  const alert =
    weak.body.match(/<div class="alert" role="alert" id="password-error">([\s\S]*?)<\/div>/)?.[1] ?? ''
  const reasons = checkPassword('password1234', 'reset-page@example.com').map((reason) => reason.message)
  t.ok(reasons.length > 0, 'the policy refuses the test password')
  t.equal(alert.match(/<li>/g)?.length, reasons.length, 'one list item per reason')
  for (const reason of reasons) t.ok(alert.includes(escapeHtml(reason)), `the alert lists "${reason}"`)
  t.ok(weak.body.indexOf('role="alert"') < weak.body.indexOf('<form'), 'the alert comes before the form')
  t.match(weak.body, /<input id="password"[^>]* aria-describedby="password-error password-help"/)
  t.match(weak.body, /<input id="password"[^>]* aria-invalid="true"/)
  t.notOk(weak.body.includes('password1234'), 'the refused password is not echoed')

  const done = await form(
    '/reset-password',
    `token=${token}&password=${encodeURIComponent('a lantern by the quiet harbour 9')}`,
  )
  t.equal(done.statusCode, 200)
  t.match(done.body, /Password changed/)
  checkPage(t, done, 'password changed')
  const spent = await app.inject({ method: 'GET', url: `/reset-password?token=${token}` })
  t.equal(spent.statusCode, 400)
  t.match(spent.body, /Email me a reset link/)
  checkPage(t, spent, 'spent reset link')
  const login = await app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    payload: { email: 'reset-page@example.com', password: 'a lantern by the quiet harbour 9' },
  })
  t.equal(login.statusCode, 200)
  t.notOk(logs.text.includes(token), 'the token never reaches the log')
})

t.test('the pages stylesheet: served by the API, hashed URL, cached for good, text/css', async (t) => {
  const { app } = await build(t)
  const page = await app.inject({ method: 'GET', url: '/reset-password' })
  const { href, response } = await stylesheet(app, page)
  t.match(href, /^\/pages\/style\.[0-9a-f]{16}\.css$/)
  t.equal(response.statusCode, 200)
  t.equal(response.headers['content-type'], 'text/css; charset=utf-8')
  t.equal(response.headers['cache-control'], 'public, max-age=31536000, immutable')
  const hash = createHash('sha256').update(response.body).digest('hex').slice(0, 16)
  t.equal(href, `/pages/style.${hash}.css`, 'the URL names the content')
  t.match(response.body, /prefers-color-scheme: dark/, 'dark mode')
  t.match(response.body, /:focus-visible \{ outline: 3px solid/, 'visible focus outlines')
  t.match(response.body, /font-family: system-ui/, 'system font stack')
  t.match(response.body, /min-height: 2\.75rem/, 'controls large enough to tap')
  t.notMatch(response.body, /url\(|@import|@font-face/, 'nothing the CSP would have to allow besides itself')

  const head = await app.inject({ method: 'HEAD', url: href })
  t.equal(head.statusCode, 200)
  t.equal(head.headers['content-type'], 'text/css; charset=utf-8')

  for (const url of ['/pages/style.css', '/pages/style.0000000000000000.css']) {
    t.equal((await app.inject({ method: 'GET', url })).statusCode, 404, `${url} is not served`)
  }
})

t.test("the pages' own CSP wins over an API-wide default set before the handler", async (t) => {
  const { app } = await build(t)
  // What the API-wide security headers (helmet) do: every answer gets the strict default first.
  app.addHook('onRequest', async (_request, reply) => {
    reply.header('content-security-policy', "default-src 'none'; frame-ancestors 'none'; base-uri 'none'")
  })
  const page = await app.inject({ method: 'GET', url: '/reset-password' })
  t.equal(page.statusCode, 200)
  checkPage(t, page, 'forgot-password page')
  const { response } = await stylesheet(app, page)
  t.equal(response.statusCode, 200)
  t.same(
    cspDirectives(response.headers['content-security-policy']),
    { 'default-src': "'none'", 'frame-ancestors': "'none'", 'base-uri': "'none'" },
    'the stylesheet itself keeps the API-wide policy',
  )
})
