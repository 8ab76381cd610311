import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { problems } from '../../schemas/common.js'
import { requestContext } from '../context.js'

/** Signing out: ends the session the refresh token belongs to. */
const logoutRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { sessions } = app.services

  app.post(
    '/logout',
    {
      schema: {
        tags: ['sign-in'],
        summary: 'End the session of a refresh token',
        description: 'Always 204: an unknown or spent token is not an error.',
        body: Type.Object(
          { refresh_token: Type.String({ maxLength: 512 }) },
          { additionalProperties: false },
        ),
        response: { 204: Type.Null(), ...problems(400, 415, 429, 503) },
      },
    },
    async (request, reply) => {
      await sessions.revokeByRefreshToken(request.body.refresh_token, requestContext(request), 'logout')
      return reply.code(204).send(null)
    },
  )
}

export default logoutRoutes
