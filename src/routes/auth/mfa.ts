import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { problems, TokenResponse } from '../../schemas/common.js'
import { answerTokens, countsAsLogin, requestContext } from '../context.js'

const MfaToken = Type.String({
  minLength: 1,
  maxLength: 128,
  description: 'From the 403 mfa_required answer of login',
})

/** The second step of a sign-in for users with MFA. */
const mfaVerifyRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { mfa } = app.services

  app.post(
    '/mfa/verify',
    {
      onRequest: [countsAsLogin('mfa'), app.rateLimits.loginIp],
      schema: {
        tags: ['sign-in'],
        summary: 'Finish a sign-in with a TOTP code or a recovery code',
        description:
          'Answers a token response whose amr holds the first factor, "otp" and "mfa"; remember and scope from the login carry through. A wrong code is 401 invalid_code; after five the mfa_token is void. An unknown, used or expired mfa_token is 401 invalid_token. A TOTP code is accepted once in its window.',
        body: Type.Union([
          Type.Object(
            { mfa_token: MfaToken, code: Type.String({ maxLength: 16 }) },
            { additionalProperties: false },
          ),
          Type.Object(
            { mfa_token: MfaToken, recovery_code: Type.String({ maxLength: 64 }) },
            { additionalProperties: false },
          ),
        ]),
        response: { 200: TokenResponse, ...problems(400, 401, 415, 429, 503) },
      },
    },
    async (request, reply) => {
      const body = request.body
      const proof = 'code' in body ? { code: body.code } : { recoveryCode: body.recovery_code }
      const { tokens, pending } = await mfa.verify(body.mfa_token, proof, requestContext(request))
      // use_cookie given at login carries through the challenge.
      return answerTokens(app, reply, tokens, pending.useCookie)
    },
  )
}

export default mfaVerifyRoutes
