import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Email, Password, problems } from '../../schemas/common.js'
import { requestContext, shedWhenHashingIsFull } from '../context.js'

const Accepted = Type.Object({ status: Type.Literal('verification_email_sent') })

/** Sign-up and email verification. Answers never say whether an address has an account. */
const signupRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { accounts } = app.services

  app.post(
    '/signup',
    {
      onRequest: [shedWhenHashingIsFull(app.services.hasher), app.rateLimits.emailIp],
      preHandler: app.rateLimits.emailAccount,
      schema: {
        tags: ['sign-up'],
        summary: 'Create an account',
        description:
          'Always 202 with the same body, whether or not the address is taken; the owner of a taken address gets an "account exists" email instead of a verification link.',
        body: Type.Object(
          { email: Email, password: Password },
          {
            additionalProperties: false,
            examples: [{ email: 'ada@example.com', password: 'correct horse battery staple 42!' }],
          },
        ),
        response: { 202: Accepted, ...problems(400, 415, 422, 429) },
      },
    },
    async (request, reply) => {
      await accounts.signup(request.body.email, request.body.password, requestContext(request))
      return reply.code(202).send({ status: 'verification_email_sent' as const })
    },
  )

  app.post(
    '/verify-email',
    {
      schema: {
        tags: ['sign-up'],
        summary: 'Verify an email address with the token from the email',
        description:
          '204 once verified; a bad, spent or expired token is 400 invalid_token. Opening the emailed link does not verify: the page posts the token here.',
        body: Type.Object(
          { token: Type.String({ minLength: 1, maxLength: 512 }) },
          { additionalProperties: false },
        ),
        response: { 204: Type.Null(), ...problems(400, 415, 429) },
      },
    },
    async (request, reply) => {
      await accounts.verifyEmail(request.body.token, requestContext(request))
      return reply.code(204).send(null)
    },
  )

  app.post(
    '/verify-email/resend',
    {
      onRequest: app.rateLimits.emailIp,
      preHandler: app.rateLimits.emailAccount,
      schema: {
        tags: ['sign-up'],
        summary: 'Send the verification email again',
        description: 'Always 202; an email goes out only when the address has an unverified account.',
        body: Type.Object({ email: Email }, { additionalProperties: false }),
        response: { 202: Accepted, ...problems(400, 415, 429) },
      },
    },
    async (request, reply) => {
      await accounts.resendVerification(request.body.email)
      return reply.code(202).send({ status: 'verification_email_sent' as const })
    },
  )
}

export default signupRoutes
