import t from 'tap'
import { build } from '../helpers/app.js'
import { readableMail, STRONG_PASSWORD, signUpAndLogin, tokenFromMail } from '../helpers/flows.js'
import { startSmtpServer } from '../helpers/smtp.js'

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
  t.not((await app.services.users.findByEmail('page@example.com'))?.emailVerifiedAt, null)

  const spent = await app.inject({ method: 'GET', url: `/verify-email?token=${token}` })
  t.equal(spent.statusCode, 400)
  t.match(spent.body, /has already been used/)
  t.match(spent.body, /Send a new link/, 'says how to get a new email')

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

  t.notOk(logs.text.includes(token), 'the token never reaches the log')
  t.match(logs.text, /verify-email\?token=\[REDACTED\]/, 'the URL is logged with the token redacted')

  const document = await app.inject({ method: 'GET', url: '/openapi.json' })
  t.equal(document.statusCode, 200)
  t.notOk(document.json().paths['/verify-email'], 'hosted pages are outside the API document')
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
  const requested = await form('/reset-password/request', 'email=reset-page%40example.com')
  t.equal(requested.statusCode, 202)
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

  const weak = await form('/reset-password', `token=${token}&password=password1234`)
  t.equal(weak.statusCode, 422)
  t.match(weak.body, /role="alert"/)
  t.match(weak.body, /That password cannot be used/)

  const done = await form(
    '/reset-password',
    `token=${token}&password=${encodeURIComponent('a lantern by the quiet harbour 9')}`,
  )
  t.equal(done.statusCode, 200)
  t.match(done.body, /Password changed/)
  const spent = await app.inject({ method: 'GET', url: `/reset-password?token=${token}` })
  t.equal(spent.statusCode, 400)
  t.match(spent.body, /Email me a reset link/)
  const login = await app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    payload: { email: 'reset-page@example.com', password: 'a lantern by the quiet harbour 9' },
  })
  t.equal(login.statusCode, 200)
  t.notOk(logs.text.includes(token), 'the token never reaches the log')
})
