import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import {
  DependencyUnavailableError,
  ERROR_CODES,
  type ErrorCode,
  type FieldError,
  OAuthError,
  type OAuthErrorCode,
  ProblemError,
} from '../../errors.js'

/** The route's error shape: problem+json by default, RFC 6749 on the token and revocation endpoints. */
declare module 'fastify' {
  interface FastifyContextConfig {
    errorShape?: 'problem' | 'oauth'
  }
  interface FastifyRequest {
    /** The error code the answer carried, for the metrics (null on success). */
    errorCode: string | null
  }
}

const PROBLEM_TYPE_BASE = 'urn:latchkey:error:'

/** Connection-level failures of PostgreSQL (postgres.js and PGlite) that mean "try again". */
const DATABASE_OUTAGE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'CONNECT_TIMEOUT',
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  '57P01',
  '57P02',
  '57P03',
  '08000',
  '08001',
  '08003',
  '08004',
  '08006',
  '53300',
])

/**
 * Whether an error (or what caused it: drizzle wraps the driver's error) is PostgreSQL being
 * unreachable rather than a bug.
 */
function isDatabaseOutage(error: unknown): boolean {
  let current: unknown = error
  for (let depth = 0; depth < 4 && current && typeof current === 'object'; depth += 1) {
    const code = (current as { code?: unknown }).code
    if (code !== undefined && DATABASE_OUTAGE_CODES.has(String(code))) return true
    current = (current as { cause?: unknown }).cause
  }
  return false
}

/** A problem body (RFC 9457). */
export function problemBody(
  code: ErrorCode,
  status: number,
  requestId: string,
  extra: {
    detail?: string | undefined
    errors?: FieldError[] | undefined
    extensions?: Record<string, unknown>
  } = {},
) {
  return {
    type: `${PROBLEM_TYPE_BASE}${code}`,
    title: ERROR_CODES[code].title,
    status,
    code,
    ...(extra.detail ? { detail: extra.detail } : {}),
    ...(extra.errors ? { errors: extra.errors } : {}),
    ...extra.extensions,
    request_id: requestId,
  }
}

function sendProblem(reply: FastifyReply, error: ProblemError): FastifyReply {
  reply.headers(error.headers)
  return reply
    .code(error.status)
    .type('application/problem+json')
    .send(
      problemBody(error.code, error.status, reply.request.id, {
        detail: error.detail,
        errors: error.errors,
        ...(error.extensions ? { extensions: error.extensions } : {}),
      }),
    )
}

function sendOAuth(reply: FastifyReply, error: OAuthError): FastifyReply {
  reply.headers({ 'cache-control': 'no-store', pragma: 'no-cache', ...error.headers })
  return reply
    .code(error.status)
    .type('application/json')
    .send({ error: error.error, error_description: error.message, ...error.extensions })
}

function validationErrors(error: FastifyError): FieldError[] {
  return (error.validation ?? []).map((item) => {
    const params = item.params as Record<string, unknown>
    let path = item.instancePath || ''
    if (typeof params.missingProperty === 'string') path += `/${params.missingProperty}`
    if (typeof params.additionalProperty === 'string') path += `/${params.additionalProperty}`
    const where = error.validationContext && error.validationContext !== 'body' ? error.validationContext : ''
    const message =
      typeof params.additionalProperty === 'string'
        ? 'is not an allowed property'
        : (item.message ?? 'is not valid')
    return { path: `${where ? `/${where}` : ''}${path || '/'}`, message }
  })
}

/** Maps anything thrown to the ProblemError the client sees. */
function toProblem(error: FastifyError | Error, request: FastifyRequest): ProblemError {
  if (error instanceof ProblemError) return error
  if (error instanceof DependencyUnavailableError) {
    return new ProblemError('service_unavailable', { headers: { 'retry-after': '1' }, cause: error })
  }
  const fastifyError = error as FastifyError
  if (fastifyError.validation) {
    return new ProblemError('validation_failed', { errors: validationErrors(fastifyError) })
  }
  const code = fastifyError.code ?? (error as { code?: string }).code
  // Fastify marks the client's own failures (a body cut off by a hang-up is an ECONNRESET
  // "aborted" with statusCode 400): those are not a dependency's.
  const clientsFault = typeof fastifyError.statusCode === 'number' && fastifyError.statusCode < 500
  if (!clientsFault && isDatabaseOutage(error)) {
    request.server.services?.metrics.dependencyError('database')
    return new ProblemError('service_unavailable', { headers: { 'retry-after': '1' }, cause: error })
  }
  switch (code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ProblemError('payload_too_large')
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new ProblemError('unsupported_media_type', {
        detail: 'Send application/json',
        status: code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' ? 415 : 400,
      })
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new ProblemError('validation_failed', { detail: 'The request body is empty' })
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new ProblemError('validation_failed', { detail: 'The request body is not valid JSON' })
  }
  const status = fastifyError.statusCode ?? 500
  if (status === 429) return new ProblemError('rate_limited', { headers: {}, detail: 'Too many requests' })
  if (status === 404) return new ProblemError('not_found')
  if (status === 405) return new ProblemError('method_not_allowed')
  if (status === 413) return new ProblemError('payload_too_large')
  if (status === 415) return new ProblemError('unsupported_media_type')
  if (status >= 400 && status < 500) {
    if (error instanceof SyntaxError) {
      return new ProblemError('validation_failed', { detail: 'The request body is not valid JSON' })
    }
    request.log.info({ err: error }, 'client error without a code')
    return new ProblemError('validation_failed', { status, detail: 'The request is not valid' })
  }
  return new ProblemError('internal_error', { cause: error })
}

/** The OAuth form of a problem, for the token and revocation endpoints. */
function toOAuth(problem: ProblemError): OAuthError {
  const map: Partial<Record<ErrorCode, OAuthErrorCode>> = {
    validation_failed: 'invalid_request',
    payload_too_large: 'invalid_request',
    unsupported_media_type: 'invalid_request',
    service_unavailable: 'temporarily_unavailable',
    internal_error: 'server_error',
    csrf_check_failed: 'csrf_check_failed',
    mfa_required: 'mfa_required',
    invalid_scope: 'invalid_scope',
  }
  const error = map[problem.code] ?? 'invalid_request'
  const description =
    problem.code === 'validation_failed' && problem.errors?.length
      ? problem.errors.map((item) => `${item.path} ${item.message}`).join('; ')
      : (problem.detail ?? ERROR_CODES[problem.code].title)
  // The MFA challenge keeps its mfa_token and methods.
  const oauth = new OAuthError(error, description, {
    headers: problem.headers,
    ...(problem.extensions ? { extensions: problem.extensions } : {}),
  })
  // Keep the HTTP status of transport-level refusals (413, 415, 429).
  Object.defineProperty(oauth, 'status', {
    value: error === 'invalid_request' ? (problem.status < 500 ? problem.status : 400) : oauth.status,
  })
  return oauth
}

/**
 * One error handler for the whole API. Problems keep their public detail; anything else is a
 * 500 whose body says nothing internal while the log keeps the cause.
 */
export default fp(
  async function errorHandler(app: FastifyInstance) {
    app.decorateRequest('errorCode', null)
    app.setErrorHandler((error: FastifyError, request, reply) => {
      const oauthShape = request.routeOptions.config?.errorShape === 'oauth'
      if (error instanceof OAuthError) {
        request.errorCode = error.error
        if (error.status >= 500) request.log.error({ err: error.cause ?? error }, 'token endpoint failure')
        return sendOAuth(reply, error)
      }
      const problem = toProblem(error, request)
      request.errorCode = problem.code
      if (problem.code === 'internal_error')
        request.log.error({ err: problem.cause ?? error }, 'unhandled error')
      else if (problem.status >= 500 && problem.cause)
        request.log.error({ err: problem.cause }, 'dependency failure')
      // A 503 without a cause is deliberate load shedding: expected under a flood, where a log
      // line each would add to the load being shed; the request log keeps its status code.
      if (oauthShape) return sendOAuth(reply, toOAuth(problem))
      return sendProblem(reply, problem)
    })

    app.setNotFoundHandler((request, reply) =>
      sendProblem(
        reply,
        new ProblemError('not_found', {
          detail: `No route for ${request.method} ${request.url.split('?')[0]}`,
        }),
      ),
    )
  },
  { name: 'error-handler' },
)
