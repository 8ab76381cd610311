import formbody from '@fastify/formbody'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { OAuthError } from '../../errors.js'
import { TokenResponse } from '../../schemas/common.js'
import { answerTokens, noStore, requestContext } from '../context.js'

const OAuthErrorRef = Type.Ref('OAuthError')
const oauthErrors = { 400: OAuthErrorRef, 401: OAuthErrorRef, 403: OAuthErrorRef, 503: OAuthErrorRef }

const TokenRequest = Type.Object(
  {
    grant_type: Type.String({
      description: '`refresh_token` (or `authorization_code` for the social-login hand-off)',
    }),
    refresh_token: Type.Optional(Type.String({ maxLength: 512 })),
    client_id: Type.Optional(Type.String({ maxLength: 256 })),
  },
  { additionalProperties: false },
)

const RevokeRequest = Type.Object(
  {
    token: Type.String({ maxLength: 4096 }),
    token_type_hint: Type.Optional(Type.String({ maxLength: 64 })),
    client_id: Type.Optional(Type.String({ maxLength: 256 })),
  },
  { additionalProperties: false },
)

/**
 * The OAuth endpoints: the token endpoint (refresh grant) and RFC 7009 revocation. They take
 * form bodies as well as JSON and answer errors in the RFC 6749 §5.2 shape.
 */
const tokenRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { sessions } = app.services
  const { CLIENT_ID } = app.config
  // Form bodies only here: every other endpoint accepts JSON alone.
  await app.register(formbody, { bodyLimit: app.config.BODY_LIMIT })

  const checkClient = (clientId: string | undefined) => {
    if (clientId !== undefined && clientId !== CLIENT_ID) {
      throw new OAuthError('invalid_client', 'Unknown client_id')
    }
  }

  app.post(
    '/token',
    {
      config: { errorShape: 'oauth' },
      schema: {
        tags: ['tokens'],
        summary: 'Token endpoint (RFC 6749): rotate a refresh token',
        description:
          'grant_type=refresh_token rotates the refresh token: the answer carries a new one and the old one is spent. The same spent token presented again within REFRESH_REUSE_GRACE seconds gets the same successor; after that it is reuse and ends the session.',
        consumes: ['application/x-www-form-urlencoded', 'application/json'],
        body: TokenRequest,
        response: { 200: TokenResponse, ...oauthErrors },
      },
    },
    async (request, reply) => {
      noStore(reply)
      const { grant_type: grantType, refresh_token: refreshToken, client_id: clientId } = request.body
      checkClient(clientId)
      if (grantType !== 'refresh_token') {
        throw new OAuthError('unsupported_grant_type', `grant_type ${grantType} is not supported`)
      }
      if (refreshToken)
        return answerTokens(app, reply, await sessions.refresh(refreshToken, requestContext(request)), false)
      // Browser mode: no refresh_token parameter, the HttpOnly cookie carries it.
      const fromCookie = app.refreshCookie.read(request)
      if (!fromCookie) throw new OAuthError('invalid_request', 'refresh_token is required')
      app.refreshCookie.assertSameOriginRequest(request)
      return answerTokens(app, reply, await sessions.refresh(fromCookie, requestContext(request)), true)
    },
  )

  app.post(
    '/revoke',
    {
      config: { errorShape: 'oauth' },
      schema: {
        tags: ['tokens'],
        summary: 'Revoke a refresh token (RFC 7009)',
        description:
          'Always 200: an unknown, spent or malformed token is not an error. Revoking ends the session.',
        consumes: ['application/x-www-form-urlencoded', 'application/json'],
        body: RevokeRequest,
        response: { 200: Type.Object({}), ...oauthErrors },
      },
    },
    async (request, reply) => {
      noStore(reply)
      checkClient(request.body.client_id)
      await sessions.revokeByRefreshToken(request.body.token, requestContext(request), 'revoked_by_client')
      return {}
    },
  )
}

export default tokenRoutes
