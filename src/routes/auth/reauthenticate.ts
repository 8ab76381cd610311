import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Password, problems } from '../../schemas/common.js'
import { noStore, requestContext } from '../context.js'

const AccessTokenResponse = Type.Object({
  access_token: Type.String(),
  token_type: Type.Literal('Bearer'),
  expires_in: Type.Integer(),
  scope: Type.String(),
})

/** Step-up: prove the password again to make this session fresh for sensitive actions. */
const reauthenticateRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { accounts } = app.services

  app.post(
    '/reauthenticate',
    {
      preHandler: [app.authenticate],
      schema: {
        tags: ['sign-in'],
        summary: 'Re-authenticate the current session (step-up)',
        description:
          'Answers a new access token for the same session with a new auth_time; the refresh token is unchanged and later refreshes keep the new auth_time. `{ password }` gives amr ["pwd"]; `{ code }` (TOTP, for users with MFA) gives amr with "otp" and "mfa", which the sensitive actions of an MFA user need. A wrong password is 400 invalid_credentials, a wrong code 400 invalid_code; both count as failed sign-ins.',
        security: [{ bearer: [] }],
        body: Type.Union([
          Type.Object({ password: Password }, { additionalProperties: false }),
          Type.Object(
            { code: Type.String({ pattern: '^[0-9]{6}$', description: 'TOTP code' }) },
            { additionalProperties: false },
          ),
        ]),
        response: { 200: AccessTokenResponse, ...problems(400, 401, 415, 429, 503) },
      },
    },
    async (request, reply) => {
      noStore(reply)
      return accounts.reauthenticate(request.user, request.body, requestContext(request))
    },
  )
}

export default reauthenticateRoutes
