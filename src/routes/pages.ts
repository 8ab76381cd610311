import formbody from '@fastify/formbody'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import type { FastifyReply } from 'fastify'
import { ProblemError } from '../errors.js'
import { escapeHtml } from '../mail/templates.js'
import { requestContext } from './context.js'

/** No script, no style, no framing; forms post back here only. */
const PAGE_CSP = "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

function sendPage(reply: FastifyReply, status: number, title: string, body: string): FastifyReply {
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
<title>${escapeHtml(title)} – Latchkey</title>
</head>
<body>
<main>
<h1>${escapeHtml(title)}</h1>
${body}
</main>
</body>
</html>
`)
}

const resendForm = `<form method="post" action="/verify-email/resend">
<p><label for="email">Your email address</label><br>
<input id="email" name="email" type="email" autocomplete="email" required></p>
<p><button type="submit">Send a new link</button></p>
</form>`

const forgotForm = `<form method="post" action="/reset-password/request">
<p><label for="email">Your email address</label><br>
<input id="email" name="email" type="email" autocomplete="email" required></p>
<p><button type="submit">Email me a reset link</button></p>
</form>`

function newPasswordForm(token: string, reasons: string[] = []): string {
  const problems =
    reasons.length > 0
      ? `<div role="alert"><p>That password cannot be used:</p><ul>${reasons.map((reason) => `<li>${escapeHtml(reason)}</li>`).join('')}</ul></div>\n`
      : ''
  return `${problems}<form method="post" action="/reset-password">
<input type="hidden" name="token" value="${escapeHtml(token)}">
<p><label for="password">New password</label><br>
<input id="password" name="password" type="password" autocomplete="new-password" minlength="12" maxlength="256" required aria-describedby="password-help"><br>
<small id="password-help">At least 12 characters. A few unrelated words make a strong password.</small></p>
<p><button type="submit">Set my new password</button></p>
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

  app.get('/verify-email', { schema: { hide: true, querystring: TokenQuery } }, async (request, reply) => {
    const token = request.query.token ?? ''
    if (!token || !(await accounts.isEmailTokenUsable('verify_email', token))) {
      return sendPage(
        reply,
        400,
        'This link does not work',
        `<p>The link is invalid, has already been used, or has expired. Ask for a new one:</p>${resendForm}`,
      )
    }
    return sendPage(
      reply,
      200,
      'Confirm your email address',
      `<form method="post" action="/verify-email">
<input type="hidden" name="token" value="${escapeHtml(token)}">
<p><button type="submit">Confirm my email address</button></p>
</form>`,
    )
  })

  app.post('/verify-email', { schema: { hide: true, body: TokenForm } }, async (request, reply) => {
    try {
      await accounts.verifyEmail(request.body.token, requestContext(request))
    } catch (error) {
      if (error instanceof ProblemError && error.code === 'invalid_token') {
        return sendPage(
          reply,
          400,
          'This link does not work',
          `<p>The link is invalid, has already been used, or has expired. Ask for a new one:</p>${resendForm}`,
        )
      }
      throw error
    }
    return sendPage(reply, 200, 'Email address confirmed', '<p>Thank you. You can now sign in.</p>')
  })

  app.get('/reset-password', { schema: { hide: true, querystring: TokenQuery } }, async (request, reply) => {
    const token = request.query.token ?? ''
    if (!token) return sendPage(reply, 200, 'Reset your password', forgotForm)
    if (!(await accounts.isEmailTokenUsable('reset_password', token))) {
      return sendPage(
        reply,
        400,
        'This link does not work',
        `<p>The link is invalid, has already been used, has expired, or a newer one was sent. Ask for a new one:</p>${forgotForm}`,
      )
    }
    return sendPage(reply, 200, 'Choose a new password', newPasswordForm(token))
  })

  app.post('/reset-password', { schema: { hide: true, body: ResetForm } }, async (request, reply) => {
    const { token, password } = request.body
    try {
      await accounts.resetPassword(token, password, requestContext(request))
    } catch (error) {
      if (error instanceof ProblemError && error.code === 'weak_password') {
        const reasons = (error.errors ?? []).map((item) => item.message)
        return sendPage(reply, 422, 'Choose a new password', newPasswordForm(token, reasons))
      }
      if (error instanceof ProblemError && error.code === 'invalid_token') {
        return sendPage(
          reply,
          400,
          'This link does not work',
          `<p>The link is invalid, has already been used, has expired, or a newer one was sent. Ask for a new one:</p>${forgotForm}`,
        )
      }
      throw error
    }
    return sendPage(
      reply,
      200,
      'Password changed',
      '<p>Your password was changed and every session was signed out. Sign in with the new password.</p>',
    )
  })

  const emailLimits = { onRequest: app.rateLimits.emailIp, preHandler: app.rateLimits.emailAccount }

  app.post(
    '/reset-password/request',
    { ...emailLimits, schema: { hide: true, body: EmailForm } },
    async (request, reply) => {
      await accounts.requestPasswordReset(request.body.email, requestContext(request))
      return sendPage(
        reply,
        202,
        'Check your email',
        '<p>If this address has an account, a link to choose a new password is on its way.</p>',
      )
    },
  )

  app.post(
    '/verify-email/resend',
    { ...emailLimits, schema: { hide: true, body: EmailForm } },
    async (request, reply) => {
      await accounts.resendVerification(request.body.email)
      return sendPage(
        reply,
        202,
        'Check your email',
        '<p>If this address has an account that is not confirmed yet, a new link is on its way.</p>',
      )
    },
  )
}

export default pageRoutes
