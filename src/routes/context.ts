import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify'
import type { RequestContext } from '../domain/audit.js'
import type { Actor } from '../domain/policy.js'
import type { IssuedTokens, TokenResponse } from '../domain/sessions.js'

/**
 * onRequest, first on the routes that always hash a password: when the hashing queue is full,
 * answer 503 with Retry-After before the body is read, the rate limits counted or the database
 * asked. A login flood then costs the routes that do not hash (token checks, refreshes) as
 * little as it can. The services check again (the queue may fill in between).
 */
export function shedWhenHashingIsFull(hasher: { assertCapacity(): void }): onRequestAsyncHookHandler {
  return async function shedWhenHashingIsFull() {
    hasher.assertCapacity()
  }
}

/** Who is asking, for audit events and session list entries. */
export function requestContext(request: FastifyRequest): RequestContext {
  const userAgent = request.headers['user-agent']
  return {
    ip: request.ip,
    userAgent: typeof userAgent === 'string' ? userAgent : undefined,
    requestId: request.id,
  }
}

/** Token answers and personal data must not be kept by any cache (RFC 6749 §5.1). */
export function noStore(reply: FastifyReply): void {
  reply.header('cache-control', 'no-store')
  reply.header('pragma', 'no-cache')
}

/**
 * The answer of an endpoint that issues tokens. In browser mode the refresh token goes into the
 * HttpOnly cookie (with Max-Age only for remember-me, matching the session's absolute lifetime)
 * and is left out of the body, so page scripts never see it.
 */
export function answerTokens(
  app: FastifyInstance,
  reply: FastifyReply,
  issued: IssuedTokens,
  useCookie: boolean,
): TokenResponse | Omit<TokenResponse, 'refresh_token'> {
  noStore(reply)
  if (!useCookie) return issued.response
  const { refresh_token: refreshToken, ...response } = issued.response
  const maxAge = issued.session.remember
    ? Math.max(0, Math.floor((issued.session.expiresAt - app.services.clock.now()) / 1000))
    : undefined
  app.refreshCookie.set(reply, refreshToken, maxAge)
  return response
}

/** The caller as the policy module sees it: the access token's subject, roles and scope. */
export function actorOf(request: FastifyRequest): Actor {
  return { userId: request.user.sub, roles: request.user.roles, scope: request.user.scope }
}

/** An onRequest hook that makes the route's answers count as sign-ins of `method` in the metrics. */
export function countsAsLogin(
  method: 'password' | 'mfa' | 'oidc' | 'oidc_native',
): onRequestAsyncHookHandler {
  return async function countLogin(request) {
    request.loginMethod = method
  }
}
