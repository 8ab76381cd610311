import type { IncomingMessage, ServerResponse } from 'node:http'
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
export const HELMET_OPTIONS = {
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

/**
 * The headers a helmet middleware sets, recorded once against a stand-in response. Only for
 * options whose values are fixed strings (no CSP nonce functions): it throws if the middleware
 * does anything else.
 */
function headersSetBy(middleware: ReturnType<typeof helmet>): Readonly<Record<string, string>> {
  const headers: Record<string, string> = {}
  const response = {
    setHeader(name: string, value: unknown) {
      if (typeof value !== 'string') throw new Error(`helmet set ${name} to a non-string`)
      headers[name.toLowerCase()] = value
    },
    removeHeader(name: string) {
      delete headers[name.toLowerCase()]
    },
  }
  let finished = false
  middleware({} as IncomingMessage, response as unknown as ServerResponse, (error?: unknown) => {
    if (error) throw error
    finished = true
  })
  if (!finished) throw new Error('helmet did not finish synchronously')
  return Object.freeze(headers)
}

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

    // The contract's headers on every answer, errors included (set onRequest). With these
    // options helmet's headers depend on nothing in the request, so helmet computes them once
    // and each answer gets a copy: @fastify/helmet (registered for reply.helmet) builds helmet's
    // middleware anew on every request when global, and running even a prebuilt one (twelve
    // setHeader calls) cost a tenth of a GET /v1/me.
    const securityHeaders = headersSetBy(helmet(HELMET_OPTIONS))
    await app.register(fastifyHelmet, { ...HELMET_OPTIONS, global: false })
    app.addHook('onRequest', (_request, reply, next) => {
      reply.headers(securityHeaders)
      next()
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
