import { randomUUID } from 'node:crypto'
import fastifySwagger from '@fastify/swagger'
import fastifySwaggerUi from '@fastify/swagger-ui'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { DrizzleQueryError } from 'drizzle-orm'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { stdSerializers } from 'pino'
import type { Config } from './config.js'
import authenticate from './plugins/app/authenticate.js'
import browser from './plugins/app/browser.js'
import deadline from './plugins/app/deadline.js'
import errorHandler from './plugins/app/error-handler.js'
import metricsPlugin from './plugins/app/metrics.js'
import rateLimit from './plugins/app/rate-limit.js'
import { requestLogger } from './request-logger.js'
import routes from './routes/index.js'
import { OAuthErrorBody, Problem } from './schemas/common.js'
import { documentResponseHeaders, OPENAPI_TAGS, operationId } from './schemas/openapi.js'
import { createServices, type ServiceOverrides, type Services } from './services.js'

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
    services: Services
  }
}

export interface BuildOptions extends ServiceOverrides {
  /** A pino logger (tests capture output); otherwise one is made from LOG_LEVEL. */
  logger?: FastifyBaseLogger
  /** Services already built (the CLI and some tests share them). */
  services?: Services
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/
const SECRET_QUERY_PARAMETERS = /([?&](?:token|code|state|access_token|refresh_token|code_verifier)=)[^&#]*/gi

/** A request URL fit for a log line: the values of secret-bearing parameters are replaced. */
export function redactUrl(url: string): string {
  return url.replace(SECRET_QUERY_PARAMETERS, '$1[REDACTED]')
}

/** Paths that pino blanks out wherever they appear in a log line. */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers.cookie',
  '*.password',
  '*.current_password',
  '*.new_password',
  '*.refresh_token',
  '*.access_token',
  '*.id_token',
  '*.token',
  '*.code',
  '*.recovery_code',
  '*.mfa_token',
  '*.code_verifier',
  '*.secret',
  '*.client_secret',
]

/** Logger options shared by the server and the CLI: JSON lines, secrets redacted. */
export function loggerOptions(config: Config) {
  return {
    level: config.LOG_LEVEL,
    redact: { paths: REDACTED_PATHS, censor: '[REDACTED]' },
  }
}

/** The request serializer: never the query values that carry secrets, never headers. */
export const serializers = {
  err(error: Error) {
    return stdSerializers.err(withoutQueryParameters(error) as Error)
  },
  req(request: { method: string; url: string; ip: string; headers: Record<string, unknown> }) {
    return {
      method: request.method,
      url: redactUrl(request.url),
      remoteAddress: request.ip,
      userAgent: request.headers['user-agent'],
    }
  },
}

/**
 * Drizzle's query errors carry the query's parameters in their message (emails, password
 * hashes, token hashes): logs keep the query text and the cause, never the parameters.
 */
export function withoutQueryParameters(error: unknown): unknown {
  if (!(error instanceof DrizzleQueryError)) return error
  const safe = new Error(`Failed query: ${error.query}`, { cause: withoutQueryParameters(error.cause) })
  safe.name = 'DrizzleQueryError'
  const frames = (error.stack ?? '').split('\n').filter((line) => /^\s+at /.test(line))
  safe.stack = [`${safe.name}: ${safe.message}`, ...frames].join('\n')
  return safe
}

/**
 * Builds the API as a Fastify instance: configuration and services in, routes out. Listening
 * and process signals belong to server.ts.
 */
export async function buildApp(config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    ...(options.logger
      ? { loggerInstance: options.logger }
      : { logger: { ...loggerOptions(config), serializers } }),
    childLoggerFactory: requestLogger,
    genReqId: (request) => {
      const incoming = request.headers['x-request-id']
      return typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID()
    },
    bodyLimit: config.BODY_LIMIT,
    trustProxy: config.TRUST_PROXY.length > 0 ? [...config.TRUST_PROXY] : false,
    forceCloseConnections: 'idle',
    return503OnClosing: true,
    ajv: {
      customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: false },
    },
    routerOptions: { maxParamLength: 200 },
  }).withTypeProvider<TypeBoxTypeProvider>()

  const services = options.services ?? (await createServices(config, app.log, options))
  app.decorate('config', config)
  app.decorate('services', services)
  app.addHook('onClose', async () => {
    // A client that went away leaves no connection for server.close() to wait on, but its
    // handler still runs and still needs the pools: wait for it (within SHUTDOWN_TIMEOUT,
    // after which the process exits anyway).
    const limit = Math.max(0, Math.min(config.REQUEST_TIMEOUT, config.SHUTDOWN_TIMEOUT - 1)) * 1000
    const waiting = app.drainRequests ? await app.drainRequests(limit) : 0
    if (waiting > 0) app.log.warn({ requests: waiting }, 'closing with requests still running')
    if (!options.services) await services.close()
  })

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id)
  })

  // While shutting down, answers to requests already in flight close their connection, so
  // keep-alive clients do not hold the server open after their last answer.
  let closing = false
  app.addHook('preClose', async () => {
    closing = true
  })
  app.addHook('onSend', async (_request, reply) => {
    if (closing) reply.header('connection', 'close')
  })

  // JSON only (and forms on the OAuth endpoints): a text/plain body is a 415, not a string
  // that a cross-site form could post.
  app.removeContentTypeParser('text/plain')

  app.addSchema(Problem)
  app.addSchema(OAuthErrorBody)

  await app.register(errorHandler)
  await app.register(deadline)
  // First, so that every answer (rate-limited and failed ones too) has the security headers.
  await app.register(browser)
  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Latchkey',
        version: '1',
        description:
          'Authentication API that issues JWTs (RFC 9068 access tokens, rotating refresh tokens). Errors are RFC 9457 problem details with a stable `code`; the OAuth endpoints (/v1/auth/token, /v1/auth/revoke) answer in the RFC 6749 shape. Bearer endpoints name the scope they need in their description and answer 403 insufficient_scope with a WWW-Authenticate challenge without it. Rate-limited answers are 429 with Retry-After and RateLimit-* headers.',
        contact: { name: 'Latchkey maintainers' },
        license: { name: 'Proprietary' },
      },
      servers: [{ url: config.ISSUER }],
      tags: OPENAPI_TAGS,
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
          metricsToken: { type: 'http', scheme: 'bearer', description: 'METRICS_TOKEN, when it is set' },
        },
      },
    },
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, index) => (json.$id as string) || `def-${index}`,
    },
    transformObject: (document) =>
      documentResponseHeaders((document as { openapiObject: Record<string, unknown> }).openapiObject),
    // Every operation gets a stable operationId from its method and path.
    transform: ({ schema, url, route }) => ({
      schema: { ...schema, operationId: schema?.operationId ?? operationId(String(route.method), url) },
      url,
    }),
  })
  await app.register(fastifySwaggerUi, {
    routePrefix: '/docs',
    // BaseLayout: no top bar, whose logo is an SVG with an inline style the CSP would block.
    uiConfig: { validatorUrl: null, layout: 'BaseLayout' },
    staticCSP: true,
    // The docs page gets the CSP it needs (its own scripts and styles, hashed) and nothing more:
    // no framing, no base, no remote fonts or images, no validator badge.
    transformStaticCSP: (header) =>
      header
        .replace("default-src 'self'", "default-src 'none'; connect-src 'self'; form-action 'none'")
        .replace("base-uri 'self'", "base-uri 'none'")
        .replace("frame-ancestors 'self'", "frame-ancestors 'none'")
        .replace("font-src 'self' https: data:", "font-src 'self' data:")
        .replace(' validator.swagger.io', '')
        .replace("style-src 'self' https:", "style-src 'self'")
        .replace(/\s*upgrade-insecure-requests;?/, ''),
  })
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())

  await app.register(metricsPlugin)
  await app.register(rateLimit, { services })
  await app.register(authenticate, { services })
  await app.register(routes)
  return app as unknown as FastifyInstance
}
