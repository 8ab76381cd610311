import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'

const Jwks = Type.Object(
  { keys: Type.Array(Type.Object({ kty: Type.String() }, { additionalProperties: true })) },
  { description: 'RFC 7517 JSON Web Key Set' },
)

const AuthorizationServerMetadata = Type.Object(
  {
    issuer: Type.String(),
    jwks_uri: Type.String(),
    token_endpoint: Type.String(),
    revocation_endpoint: Type.String(),
    grant_types_supported: Type.Array(Type.String()),
    response_types_supported: Type.Array(Type.String()),
    token_endpoint_auth_methods_supported: Type.Array(Type.String()),
    revocation_endpoint_auth_methods_supported: Type.Array(Type.String()),
    code_challenge_methods_supported: Type.Array(Type.String()),
    scopes_supported: Type.Array(Type.String()),
  },
  { additionalProperties: true, description: 'RFC 8414 authorization server metadata' },
)

/** Discovery: the key set every JWT library verifies against, and RFC 8414 metadata. */
const wellKnownRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { keyRing } = app.services
  const { ISSUER, JWKS_MAX_AGE } = app.config

  app.get(
    '/.well-known/jwks.json',
    {
      schema: {
        tags: ['discovery'],
        summary: 'Signing keys (JWKS)',
        description:
          'RFC 7517 key set: every key that signs now or whose tokens may still be live, and the next key before it signs. Cache it for at most the Cache-Control max-age (JWKS_MAX_AGE); refetch on an unknown kid.',
        response: { 200: Jwks },
      },
    },
    async (_request, reply) => {
      reply.header('cache-control', `public, max-age=${JWKS_MAX_AGE}`)
      return keyRing.jwks() as { keys: { kty: string }[] }
    },
  )

  app.get(
    '/.well-known/oauth-authorization-server',
    {
      schema: {
        tags: ['discovery'],
        summary: 'Authorization server metadata (RFC 8414)',
        description:
          'Issuer, JWKS URI, token and revocation endpoints, supported grants (authorization_code for the social-login hand-off, refresh_token) and PKCE methods.',
        response: { 200: AuthorizationServerMetadata },
      },
    },
    async (_request, reply) => {
      reply.header('cache-control', `public, max-age=${JWKS_MAX_AGE}`)
      return {
        issuer: ISSUER,
        jwks_uri: `${ISSUER}/.well-known/jwks.json`,
        token_endpoint: `${ISSUER}/v1/auth/token`,
        revocation_endpoint: `${ISSUER}/v1/auth/revoke`,
        // authorization_code is the social-login hand-off (PKCE S256).
        grant_types_supported: ['authorization_code', 'refresh_token'],
        response_types_supported: ['code'],
        token_endpoint_auth_methods_supported: ['none'],
        revocation_endpoint_auth_methods_supported: ['none'],
        code_challenge_methods_supported: ['S256'],
        scopes_supported: ['profile', 'sessions', 'admin:users', 'admin:audit', 'admin:keys'],
      }
    },
  )
}

export default wellKnownRoutes
