import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Email, Password, problems } from '../../schemas/common.js'
import { requestContext } from '../context.js'

const ResetEmailSent = Type.Object({ status: Type.Literal('reset_email_sent') })

/** Forgotten passwords (OWASP Forgot Password Cheat Sheet): a single-use emailed link. */
const passwordRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { accounts } = app.services

  app.post(
    '/password/forgot',
    {
      onRequest: app.rateLimits.emailIp,
      preHandler: app.rateLimits.emailAccount,
      schema: {
        tags: ['password'],
        summary: 'Email a password reset link',
        description:
          'Always 202 with the same body and headers, whether or not the address has an account. The link ({APP_URL}/reset-password?token=...) is single use, valid RESET_TOKEN_TTL seconds, and voids any older link.',
        body: Type.Object({ email: Email }, { additionalProperties: false }),
        response: { 202: ResetEmailSent, ...problems(400, 415, 429, 503) },
      },
    },
    async (request, reply) => {
      await accounts.requestPasswordReset(request.body.email, requestContext(request))
      return reply.code(202).send({ status: 'reset_email_sent' as const })
    },
  )

  app.post(
    '/password/reset',
    {
      schema: {
        tags: ['password'],
        summary: 'Set a new password with the emailed token',
        description:
          'Ends every session of the user and emails a notice; it does not sign in. A bad, spent, expired or superseded token is 400 invalid_token; a refused password (422) leaves the token usable.',
        body: Type.Object(
          { token: Type.String({ minLength: 1, maxLength: 512 }), password: Password },
          { additionalProperties: false },
        ),
        response: { 204: Type.Null(), ...problems(400, 415, 422, 429, 503) },
      },
    },
    async (request, reply) => {
      await accounts.resetPassword(request.body.token, request.body.password, requestContext(request))
      return reply.code(204).send(null)
    },
  )
}

export default passwordRoutes
