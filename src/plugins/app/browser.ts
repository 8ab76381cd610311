import fastifyCookie from '@fastify/cookie'
import fastifyCors from '@fastify/cors'
import fastifyHelmet from '@fastify/helmet'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import helmet, { type HelmetOptions } from 'helmet'
import { ProblemError } from '../../errors.js'

/** The refresh cookie of browser mode: `__Host-` means Secure, Path=/ and no Domain. */
export const REFRESH_COOKIE = '__Host-refresh_token'

declare module 'fastify' {
  interface FastifyInstance {
    /** Browser (SPA) mode: the refresh token in an HttpOnly cookie, and its CSRF checks. */
    refreshCookie: {
      /** The refresh token of the cookie, if the request carries one. */
      read(request: FastifyRequest): string | undefined
      /**
       * Refuses (403 csrf_check_failed) a request that authenticates with the cookie unless it
       * comes from an allowed Origin, carries X-Requested-With, is not Sec-Fetch-Site:
       * cross-site and sends JSON. SameSite=Strict alone is not a CSRF defence (same-site
       * subdomains, old browsers), so every one of these must hold.
       */
      assertSameOriginRequest(request: FastifyRequest): void
      /** Sets the cookie; `maxAgeSeconds` only for remember-me sessions, else a session cookie. */
      set(reply: FastifyReply, refreshToken: string, maxAgeSeconds?: number): void
      /** Clears the cookie with the same attributes it was set with. */
      clear(reply: FastifyReply): void
    }
  }
}

/** The contract's security headers (API.md), set explicitly: helmet's defaults allow framing by the same origin. */
const HELMET_OPTIONS = {
  contentSecurityPolicy: {
    useDefaults: false,
    directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"], baseUri: ["'none'"] },
  },
  strictTransportSecurity: { maxAge: 31_536_000, includeSubDomains: true, preload: false },
  xFrameOptions: { action: 'deny' },
  referrerPolicy: { policy: 'no-referrer' },
  xContentTypeOptions: true,
  // Cross-origin readers are governed by CORS; CORP would only get in the way of them.
  crossOriginResourcePolicy: false,
  crossOriginEmbedderPolicy: false,
  xPoweredBy: true,
} satisfies HelmetOptions

const csrfRefused = (detail: string) => new ProblemError('csrf_check_failed', { detail })

const cookieAttributes = { httpOnly: true, secure: true, sameSite: 'strict', path: '/' } as const

/**
 * Everything a browser needs and nothing more: security headers on every answer (helmet,
 * configured explicitly: its defaults allow framing by the same origin), CORS for the listed
 * origins only (never `*` with credentials), and the refresh cookie with its CSRF checks.
 */
export default fp(
  async function browser(app: FastifyInstance) {
    const origins = app.config.CORS_ORIGINS
    const anyOrigin = origins.includes('*')

    // The contract's headers on every answer, errors included (set onRequest). helmet's
    // middleware is built once: @fastify/helmet (registered for reply.helmet) builds it anew on
    // every request when global, which cost more than the rest of a GET /healthz.
    const securityHeaders = helmet(HELMET_OPTIONS)
    await app.register(fastifyHelmet, { ...HELMET_OPTIONS, global: false })
    app.addHook('onRequest', (request, reply, next) => {
      securityHeaders(request.raw, reply.raw, (error?: unknown) => next(error as Error | undefined))
    })

    await app.register(fastifyCors, {
      // Exact origins (scheme, host and port). "*" is development only (production refuses it)
      // and then never with credentials.
      origin: anyOrigin ? '*' : [...origins],
      credentials: !anyOrigin,
      methods: ['GET', 'POST', 'PATCH', 'DELETE'],
      allowedHeaders: ['Authorization', 'Content-Type', 'X-Requested-With', 'X-Request-Id'],
      exposedHeaders: [
        'X-Request-Id',
        'Retry-After',
        'RateLimit-Limit',
        'RateLimit-Remaining',
        'RateLimit-Reset',
      ],
      maxAge: 600,
      strictPreflight: true,
    })

    await app.register(fastifyCookie)

    app.decorate('refreshCookie', {
      read(request: FastifyRequest) {
        const value = request.cookies[REFRESH_COOKIE]
        return value && value.length > 0 ? value : undefined
      },
      assertSameOriginRequest(request: FastifyRequest) {
        const origin = request.headers.origin
        if (!origin || anyOrigin || !origins.includes(origin)) throw csrfRefused('Origin is not allowed')
        if (!request.headers['x-requested-with']) throw csrfRefused('X-Requested-With is missing')
        if (request.headers['sec-fetch-site'] === 'cross-site') throw csrfRefused('cross-site request')
        const type = (request.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase()
        if (type !== 'application/json')
          throw csrfRefused('only application/json is accepted with the cookie')
      },
      set(reply: FastifyReply, refreshToken: string, maxAgeSeconds?: number) {
        reply.setCookie(REFRESH_COOKIE, refreshToken, {
          ...cookieAttributes,
          ...(maxAgeSeconds === undefined ? {} : { maxAge: maxAgeSeconds }),
        })
      },
      clear(reply: FastifyReply) {
        reply.clearCookie(REFRESH_COOKIE, cookieAttributes)
      },
    })
  },
  { name: 'browser' },
)
