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
        description:
          'Always 204: an unknown or spent token is not an error. `{}` with the __Host-refresh_token cookie (browser mode: Origin in CORS_ORIGINS and X-Requested-With required) ends that session and clears the cookie.',
        body: Type.Object(
          { refresh_token: Type.Optional(Type.String({ maxLength: 512 })) },
          { additionalProperties: false },
        ),
        response: { 204: Type.Null(), ...problems(400, 403, 415, 429, 503) },
      },
    },
    async (request, reply) => {
      const given = request.body.refresh_token
      const fromCookie = given === undefined ? app.refreshCookie.read(request) : undefined
      if (fromCookie) app.refreshCookie.assertSameOriginRequest(request)
      const refreshToken = given ?? fromCookie
      if (refreshToken) await sessions.revokeByRefreshToken(refreshToken, requestContext(request), 'logout')
      if (fromCookie) app.refreshCookie.clear(reply)
      return reply.code(204).send(null)
    },
  )
}

export default logoutRoutes
