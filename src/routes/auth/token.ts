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
    code: Type.Optional(
      Type.String({
        maxLength: 256,
        description: 'authorization_code: the one-time code from the social-login redirect',
      }),
    ),
    code_verifier: Type.Optional(
      Type.String({
        maxLength: 128,
        description:
          'authorization_code: the PKCE verifier, required when the flow was started with a code_challenge',
      }),
    ),
    redirect_uri: Type.Optional(
      Type.String({
        maxLength: 2048,
        description:
          'authorization_code: accepted and ignored (the code is bound to the redirect target already)',
      }),
    ),
    use_cookie: Type.Optional(
      Type.Boolean({
        description:
          'authorization_code: browser mode, the refresh token is set as the __Host-refresh_token cookie',
      }),
    ),
    client_id: Type.Optional(Type.String({ maxLength: 256 })),
  },
  {
    additionalProperties: false,
    examples: [
      {
        grant_type: 'refresh_token',
        refresh_token: '4f1c2a8e-6b7d-4e0a-9c3f-2d5e8a1b7c90.Qm9vbGVhbiBzZWNyZXQgb2YgMzIgYnl0ZXMgaGVyZQ',
      },
      {
        grant_type: 'authorization_code',
        code: 'tY7zvK1lX0qJ9mN3bP5rS8uW2yA4cE6gH1iK3mO5qS7',
        code_verifier: 'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk',
      },
    ],
  },
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
  const { sessions, socialLogin } = app.services
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
        summary: 'Token endpoint (RFC 6749): rotate a refresh token, or exchange a social-login code',
        description:
          'grant_type=refresh_token rotates the refresh token: the answer carries a new one and the old one is spent. The same spent token presented again within REFRESH_REUSE_GRACE seconds gets the same successor; after that it is reuse and ends the session (a session remembers its last 100 spent tokens; an older one is refused with invalid_grant and ends nothing). Without refresh_token, the __Host-refresh_token cookie is used and the answer is in browser mode.\n\ngrant_type=authorization_code exchanges the one-time code of the social-login redirect (60 s, single use) for a token response whose amr is ["fed"]; code_verifier is required when the flow was started with a code_challenge, and refused when it was not. A user with MFA gets 403 {"error":"mfa_required","mfa_token","methods"} and nothing is issued; POST /v1/auth/mfa/verify finishes the sign-in.',
        consumes: ['application/x-www-form-urlencoded', 'application/json'],
        body: TokenRequest,
        response: { 200: TokenResponse, ...oauthErrors },
      },
    },
    async (request, reply) => {
      noStore(reply)
      const { grant_type: grantType, refresh_token: refreshToken, client_id: clientId } = request.body
      checkClient(clientId)
      if (grantType === 'authorization_code') {
        request.loginMethod = 'oidc'
        const { code, code_verifier: codeVerifier, use_cookie: useCookie = false } = request.body
        if (!code) throw new OAuthError('invalid_request', 'code is required')
        const issued = await socialLogin.exchange(code, codeVerifier, {
          useCookie,
          context: requestContext(request),
        })
        return answerTokens(app, reply, issued, useCookie)
      }
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
