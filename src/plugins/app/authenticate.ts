import fastifyJwt from '@fastify/jwt'
import type { FastifyInstance, FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import type { AccessTokenClaims } from '../../domain/access-tokens.js'
import { hasMfa } from '../../domain/mfa.js'
import { hasRole, hasScopes } from '../../domain/policy.js'
import { kidOf, VerifiedTokenCache } from '../../domain/verified-tokens.js'
import { bearerError, ProblemError } from '../../errors.js'
import type { Services } from '../../services.js'
import type { CachedProfile } from '../../storage/session-store.js'

declare module '@fastify/jwt' {
  interface FastifyJWT {
    payload: AccessTokenClaims
    user: AccessTokenClaims
  }
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by `authenticate`: the session's cached GET /v1/me answer and its version. */
    cachedProfile: CachedProfile | null
  }
  interface FastifyInstance {
    /** preHandler: a valid access token of a live session, or 401. Sets `request.user`. */
    authenticate: preHandlerAsyncHookHandler
    /** preHandler factory: the token's `scope` claim must hold every one of `scopes`, else 403. */
    requireScope(...scopes: string[]): preHandlerAsyncHookHandler
    /** preHandler factory: the token's `roles` claim must hold one of `roles`, else 403. */
    requireRole(...roles: string[]): preHandlerAsyncHookHandler
    /**
     * preHandler: the token's `auth_time` must be within FRESH_AUTH_MAX_AGE, and for a user with
     * MFA its `amr` must hold `mfa`; else RFC 9470's 401 `insufficient_user_authentication`
     * (code fresh_login_required): re-authenticate first.
     */
    requireFreshAuth: preHandlerAsyncHookHandler
    /** preHandler: fresh as above, and `amr` must hold `mfa` (turning MFA off, new recovery codes). */
    requireFreshMfa: preHandlerAsyncHookHandler
  }
}

const ALGORITHMS = ['RS256', 'ES256', 'EdDSA'] as const
/** How many verified access tokens are remembered (about 1 KB each: a few MB at most). */
const VERIFIED_TOKENS_CACHED = 5000
const CLOCK_TOLERANCE_SECONDS = 5

/**
 * Bearer verification through @fastify/jwt (fast-jwt, synchronous: it does not queue behind
 * argon2 on libuv's pool), with the key chosen by `kid` from the same key ring that signs.
 * Each key verifies only its own algorithm, so no key is ever usable with another (no HS256
 * with an RSA public key, no `none`).
 */
export default fp(
  async function authenticate(app: FastifyInstance, options: { services: Services }) {
    const { keyRing, sessions, clock, users } = options.services
    const { config } = app

    await app.register(fastifyJwt, {
      secret: {
        public: async (_request: FastifyRequest, token: { header?: { kid?: unknown; alg?: unknown } }) => {
          const kid = token.header?.kid
          const key = typeof kid === 'string' ? keyRing.verificationKey(kid) : undefined
          if (!key || token.header?.alg !== key.alg) throw new Error('unknown key or algorithm')
          return key.publicPem
        },
      } as never,
      // The key callback needs the header (kid, alg).
      decode: { complete: true },
      verify: {
        algorithms: [...ALGORITHMS],
        allowedIss: config.ISSUER,
        allowedAud: config.ACCESS_TOKEN_AUDIENCE,
        checkTyp: 'at+jwt',
        requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat', 'nbf', 'jti', 'sid', 'scope'],
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
      } as never,
    })

    // A client presents one access token many times: a token that passed the check above is
    // remembered by its exact text until its exp, so the signature is checked once per token.
    // Refusals are not remembered; the session check below still runs on every request.
    const verified = new VerifiedTokenCache<AccessTokenClaims>({
      maxEntries: VERIFIED_TOKENS_CACHED,
      clockToleranceSeconds: CLOCK_TOLERANCE_SECONDS,
      keyUsable: (kid) => keyRing.verificationKey(kid) !== undefined,
    })

    app.decorateRequest('cachedProfile', null)
    app.decorate('authenticate', async function authenticateRequest(request: FastifyRequest) {
      const header = request.headers.authorization
      // No Bearer credentials at all (none, or another scheme such as Basic) is RFC 6750 §3.1's
      // "lacks any authentication information": no error attribute. The scheme is
      // case-insensitive (RFC 7235 §2.1).
      if (!header || !/^bearer(?:\s|$)/i.test(header)) throw bearerError('missing')
      // "Bearer" 1*SP token (RFC 6750 §2.1): the cache is asked for the text after one space.
      const token = header.slice(7)
      let claims = header.charCodeAt(6) === 32 ? verified.get(token) : undefined
      if (claims === undefined) {
        if (!/^bearer [A-Za-z0-9._~+/-]+=*$/i.test(header)) throw bearerError('invalid')
        try {
          await request.jwtVerify()
        } catch (error) {
          request.log.info({ reason: (error as Error).message }, 'bearer token refused')
          throw bearerError('invalid', expiredMessage(error))
        }
        if (!hasWellFormedClaims(request.user)) throw bearerError('invalid')
        // Verified, so its header has the kid the key was chosen by.
        claims = verified.set(token, kidOf(token) ?? '', request.user)
      }
      request.user = claims
      // A revoked session's tokens stop at once, before they expire.
      const live = await sessions.liveWithProfile(claims.sid)
      if (!live || live.session.userId !== claims.sub) throw bearerError('invalid', 'The session has ended')
      request.cachedProfile = live.profile
    })

    app.decorate('requireScope', (...required: string[]) => {
      return async function requireScope(request: FastifyRequest, reply: FastifyReply) {
        if (!hasScopes(request.user, required)) {
          reply.header('www-authenticate', `Bearer error="insufficient_scope", scope="${required.join(' ')}"`)
          throw new ProblemError('insufficient_scope', { detail: `Requires scope: ${required.join(' ')}` })
        }
      }
    })

    /** RFC 9470's challenge: re-authenticate (with a second factor when `needsMfa`). */
    const freshLoginRequired = (needsMfa: boolean) => {
      const maxAge = config.FRESH_AUTH_MAX_AGE
      return new ProblemError('fresh_login_required', {
        detail: needsMfa
          ? `This action needs a sign-in with your second factor within the last ${maxAge} seconds: re-authenticate with a code first`
          : `This action needs a sign-in within the last ${maxAge} seconds: re-authenticate first`,
        headers: {
          'www-authenticate': `Bearer error="insufficient_user_authentication", error_description="${
            needsMfa
              ? 'A recent authentication with a second factor is required'
              : 'A more recent authentication is required'
          }", max_age=${maxAge}`,
        },
      })
    }
    const isStale = (request: FastifyRequest) =>
      Math.floor(clock.now() / 1000) - request.user.auth_time > config.FRESH_AUTH_MAX_AGE

    app.decorate('requireFreshAuth', async function requireFreshAuth(request: FastifyRequest) {
      if (isStale(request)) throw freshLoginRequired(false)
      // For a user with MFA, "fresh" includes the second factor.
      if (!request.user.amr.includes('mfa')) {
        const user = await users.findById(request.user.sub)
        if (user && hasMfa(user)) throw freshLoginRequired(true)
      }
    })

    app.decorate('requireFreshMfa', async function requireFreshMfa(request: FastifyRequest) {
      if (isStale(request) || !request.user.amr.includes('mfa')) throw freshLoginRequired(true)
    })

    app.decorate('requireRole', (...allowed: string[]) => {
      return async function requireRole(request: FastifyRequest) {
        if (!hasRole(request.user, allowed)) {
          throw new ProblemError('forbidden', { detail: 'The account does not have the required role' })
        }
      }
    })
  },
  { name: 'authenticate', dependencies: ['error-handler'] },
)

function expiredMessage(error: unknown): string | undefined {
  const code = (error as { code?: string }).code ?? ''
  return code.includes('EXPIRED') ? 'The access token has expired' : undefined
}

/** exp, nbf, iat and auth_time must be finite integers; roles and amr arrays of strings. */
function hasWellFormedClaims(claims: AccessTokenClaims): boolean {
  return (
    [claims.exp, claims.nbf, claims.iat, claims.auth_time].every(Number.isSafeInteger) &&
    typeof claims.sub === 'string' &&
    typeof claims.sid === 'string' &&
    typeof claims.scope === 'string' &&
    Array.isArray(claims.roles) &&
    claims.roles.every((role) => typeof role === 'string') &&
    Array.isArray(claims.amr)
  )
}
