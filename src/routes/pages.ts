import formbody from '@fastify/formbody'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import type { FastifyReply } from 'fastify'
import { ProblemError } from '../errors.js'
import { escapeHtml } from '../mail/templates.js'
import { requestContext } from './context.js'
import { STYLESHEET, STYLESHEET_PATH } from './pages/style.js'

/**
 * No script, no framing, forms post back here only; the one thing added to the API-wide
 * `default-src 'none'` is the stylesheet this plugin serves from the same origin.
 */
const PAGE_CSP =
  "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

interface Page {
  status: number
  /** The one `h1`, and the start of the document title. */
  title: string
  body: string
  /** The page reports a problem with what was submitted: the title starts with "Error:". */
  error?: boolean
}

function sendPage(reply: FastifyReply, { status, title, body, error = false }: Page): FastifyReply {
  // Set here, not left to the API-wide security headers: the pages need the stylesheet.
  return reply
    .code(status)
    .header('content-security-policy', PAGE_CSP)
    .header('cache-control', 'no-store')
    .header('referrer-policy', 'no-referrer')
    .type('text/html; charset=utf-8')
    .send(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<meta name="color-scheme" content="light dark">
<title>${error ? 'Error: ' : ''}${escapeHtml(title)} – Latchkey</title>
<link rel="stylesheet" href="${STYLESHEET_PATH}">
</head>
<body>
<main>
<p class="brand">Latchkey</p>
<h1>${escapeHtml(title)}</h1>
${body}
</main>
</body>
</html>
`)
}

/** An email-address form; `autofocus` only where the form is the point of the page. */
function emailForm(action: string, button: string, autofocus: boolean): string {
  return `<form method="post" action="${action}">
<div class="field">
<label for="email">Your email address</label>
<input id="email" name="email" type="email" autocomplete="email" spellcheck="false" autocapitalize="none" maxlength="254" required${autofocus ? ' autofocus' : ''}>
</div>
<button type="submit">${button}</button>
</form>`
}

const resendForm = (autofocus = false) => emailForm('/verify-email/resend', 'Send a new link', autofocus)
const forgotForm = (autofocus = false) =>
  emailForm('/reset-password/request', 'Email me a reset link', autofocus)

const brokenVerifyLink = `<p>The link is invalid, has already been used, or has expired. Ask for a new one:</p>
${resendForm()}`
const brokenResetLink = `<p>The link is invalid, has already been used, has expired, or a newer one was sent. Ask for a new one:</p>
${forgotForm()}`

/** A policy reason ("must be at least 12 characters") as a sentence about the password. */
function reasonSentence(reason: string): string {
  const sentence = /^[a-z]/.test(reason) ? `The password ${reason}` : reason
  return /[.!?]$/.test(sentence) ? sentence : `${sentence}.`
}

/**
 * The new-password form. Refusal reasons come first, in a `role="alert"` region before the form
 * (reading and tab order without script); the field then points at them with `aria-describedby`.
 */
function newPasswordForm(token: string, reasons: string[] = []): string {
  const invalid = reasons.length > 0
  const problems = invalid
    ? `<div class="alert" role="alert" id="password-error">
<p class="alert-title">That password cannot be used:</p>
<ul>
${reasons.map((reason) => `<li>${escapeHtml(reasonSentence(reason))}</li>`).join('\n')}
</ul>
</div>
`
    : ''
  const describedBy = invalid ? 'password-error password-help' : 'password-help'
  return `${problems}<form method="post" action="/reset-password">
<input type="hidden" name="token" value="${escapeHtml(token)}">
<div class="field">
<label for="password">New password</label>
<p class="hint" id="password-help">At least 12 characters. A few unrelated words make a strong password.</p>
<input id="password" name="password" type="password" autocomplete="new-password" minlength="12" maxlength="256" required autofocus aria-describedby="${describedBy}"${invalid ? ' aria-invalid="true"' : ''}>
</div>
<button type="submit">Set my new password</button>
</form>`
}

const TokenQuery = Type.Object({ token: Type.Optional(Type.String({ maxLength: 512 })) })
const TokenForm = Type.Object({ token: Type.String({ maxLength: 512 }) }, { additionalProperties: false })
const ResetForm = Type.Object(
  { token: Type.String({ maxLength: 512 }), password: Type.String({ maxLength: 1024 }) },
  { additionalProperties: false },
)
const EmailForm = Type.Object({ email: Type.String({ maxLength: 254 }) }, { additionalProperties: false })

/**
 * Small hosted pages so email links work before an app exists (APP_URL defaults to ISSUER).
 * Opening a link never spends its token (mail scanners follow links): a button posts it.
 * Plain server-rendered HTML, usable without JavaScript, outside the OpenAPI document.
 */
const pageRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { accounts } = app.services
  await app.register(formbody, { bodyLimit: 4096 })

  // The pages' stylesheet. The hash in the path changes with the content, so it can be cached
  // for a year; the pages themselves are `no-store` and always name the current one.
  app.get(STYLESHEET_PATH, { schema: { hide: true } }, async (_request, reply) =>
    reply
      .header('cache-control', 'public, max-age=31536000, immutable')
      .type('text/css; charset=utf-8')
      .send(STYLESHEET),
  )

  const linkDoesNotWork = (reply: FastifyReply, body: string) =>
    sendPage(reply, { status: 400, title: 'This link does not work', body })

  app.get('/verify-email', { schema: { hide: true, querystring: TokenQuery } }, async (request, reply) => {
    const token = request.query.token ?? ''
    if (!token || !(await accounts.isEmailTokenUsable('verify_email', token))) {
      return linkDoesNotWork(reply, brokenVerifyLink)
    }
    return sendPage(reply, {
      status: 200,
      title: 'Confirm your email address',
      body: `<p>Press the button to confirm that this address is yours.</p>
<form method="post" action="/verify-email">
<input type="hidden" name="token" value="${escapeHtml(token)}">
<button type="submit">Confirm my email address</button>
</form>`,
    })
  })

  app.post('/verify-email', { schema: { hide: true, body: TokenForm } }, async (request, reply) => {
    try {
      await accounts.verifyEmail(request.body.token, requestContext(request))
    } catch (error) {
      if (error instanceof ProblemError && error.code === 'invalid_token') {
        return linkDoesNotWork(reply, brokenVerifyLink)
      }
      throw error
    }
    return sendPage(reply, {
      status: 200,
      title: 'Email address confirmed',
      body: '<p>Thank you. You can now sign in.</p>',
    })
  })

  app.get('/reset-password', { schema: { hide: true, querystring: TokenQuery } }, async (request, reply) => {
    const token = request.query.token ?? ''
    if (!token) {
      return sendPage(reply, {
        status: 200,
        title: 'Reset your password',
        body: `<p>Enter the address you signed up with and we will email you a link to choose a new password.</p>
${forgotForm(true)}`,
      })
    }
    if (!(await accounts.isEmailTokenUsable('reset_password', token))) {
      return linkDoesNotWork(reply, brokenResetLink)
    }
    return sendPage(reply, { status: 200, title: 'Choose a new password', body: newPasswordForm(token) })
  })

  app.post('/reset-password', { schema: { hide: true, body: ResetForm } }, async (request, reply) => {
    const { token, password } = request.body
    try {
      await accounts.resetPassword(token, password, requestContext(request))
    } catch (error) {
      if (error instanceof ProblemError && error.code === 'weak_password') {
        const reasons = (error.errors ?? []).map((item) => item.message)
        return sendPage(reply, {
          status: 422,
          title: 'Choose a new password',
          body: newPasswordForm(token, reasons),
          error: true,
        })
      }
      if (error instanceof ProblemError && error.code === 'invalid_token') {
        return linkDoesNotWork(reply, brokenResetLink)
      }
      throw error
    }
    return sendPage(reply, {
      status: 200,
      title: 'Password changed',
      body: '<p>Your password was changed and every session was signed out. Sign in with the new password.</p>',
    })
  })

  const emailLimits = { onRequest: app.rateLimits.emailIp, preHandler: app.rateLimits.emailAccount }

  app.post(
    '/reset-password/request',
    { ...emailLimits, schema: { hide: true, body: EmailForm } },
    async (request, reply) => {
      await accounts.requestPasswordReset(request.body.email, requestContext(request))
      return sendPage(reply, {
        status: 202,
        title: 'Check your email',
        body: '<p>If this address has an account, a link to choose a new password is on its way.</p>',
      })
    },
  )

  app.post(
    '/verify-email/resend',
    { ...emailLimits, schema: { hide: true, body: EmailForm } },
    async (request, reply) => {
      await accounts.resendVerification(request.body.email)
      return sendPage(reply, {
        status: 202,
        title: 'Check your email',
        body: '<p>If this address has an account that is not confirmed yet, a new link is on its way.</p>',
      })
    },
  )
}

export default pageRoutes
