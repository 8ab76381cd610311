/**
 * Every error the API answers with, in one place. Domain code throws these; one error handler
 * (plugins/app/errors.ts) turns them into RFC 9457 problem+json, or into the RFC 6749 §5.2 shape
 * on the token and revocation endpoints. `detail` is public; `cause` is logged, never sent.
 */

export const ERROR_CODES = {
  validation_failed: { status: 400, title: 'The request is not valid' },
  invalid_scope: { status: 400, title: 'The requested scope is not granted' },
  invalid_redirect: { status: 400, title: 'The redirect target is not allowed' },
  invalid_token: { status: 400, title: 'The token is not valid' },
  unauthenticated: { status: 401, title: 'Authentication is required' },
  invalid_credentials: { status: 401, title: 'The email or password is not correct' },
  invalid_code: { status: 401, title: 'The code is not correct' },
  fresh_login_required: { status: 401, title: 'A recent login is required' },
  email_not_verified: { status: 403, title: 'The email address is not verified' },
  account_disabled: { status: 403, title: 'The account is disabled' },
  mfa_required: { status: 403, title: 'A second factor is required' },
  insufficient_scope: { status: 403, title: 'The token does not grant the required scope' },
  forbidden: { status: 403, title: 'Forbidden' },
  csrf_check_failed: { status: 403, title: 'Cross-site request refused' },
  domain_not_allowed: { status: 403, title: 'The email domain is not allowed' },
  not_found: { status: 404, title: 'Not found' },
  method_not_allowed: { status: 405, title: 'Method not allowed' },
  account_exists: { status: 409, title: 'An account with this email exists' },
  payload_too_large: { status: 413, title: 'The request body is too large' },
  unsupported_media_type: { status: 415, title: 'The content type is not supported' },
  weak_password: { status: 422, title: 'The password does not meet the policy' },
  rate_limited: { status: 429, title: 'Too many requests' },
  internal_error: { status: 500, title: 'Internal error' },
  service_unavailable: { status: 503, title: 'The service is temporarily unavailable' },
} as const satisfies Record<string, { status: number; title: string }>

export type ErrorCode = keyof typeof ERROR_CODES

export interface FieldError {
  path: string
  message: string
}

export interface ProblemOptions {
  detail?: string
  /** Overrides the code's usual status (e.g. `invalid_credentials` is 400 behind a bearer token). */
  status?: number
  errors?: FieldError[]
  headers?: Record<string, string>
  /** Extra members of the problem body (e.g. `mfa_token`). */
  extensions?: Record<string, unknown>
  /** Private: logged, never sent. */
  cause?: unknown
}

/** An error answered as problem+json with a stable `code`. */
export class ProblemError extends Error {
  override name = 'ProblemError'
  readonly code: ErrorCode
  readonly status: number
  readonly detail: string | undefined
  readonly errors: FieldError[] | undefined
  readonly headers: Record<string, string>
  readonly extensions: Record<string, unknown> | undefined

  constructor(code: ErrorCode, options: ProblemOptions = {}) {
    super(options.detail ?? ERROR_CODES[code].title, { cause: options.cause })
    this.code = code
    this.status = options.status ?? ERROR_CODES[code].status
    this.detail = options.detail
    this.errors = options.errors
    this.headers = options.headers ?? {}
    this.extensions = options.extensions
  }
}

export const OAUTH_ERROR_CODES = {
  invalid_request: 400,
  invalid_client: 401,
  invalid_grant: 400,
  unauthorized_client: 400,
  unsupported_grant_type: 400,
  unsupported_token_type: 400,
  invalid_scope: 400,
  temporarily_unavailable: 503,
  server_error: 500,
  mfa_required: 403,
  csrf_check_failed: 403,
} as const

export type OAuthErrorCode = keyof typeof OAUTH_ERROR_CODES

/** An error of the token and revocation endpoints, answered in the RFC 6749 §5.2 shape. */
export class OAuthError extends Error {
  override name = 'OAuthError'
  readonly error: OAuthErrorCode
  readonly status: number
  readonly headers: Record<string, string>
  readonly extensions: Record<string, unknown> | undefined

  constructor(
    error: OAuthErrorCode,
    description: string,
    options: { headers?: Record<string, string>; extensions?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super(description, { cause: options.cause })
    this.error = error
    this.status = OAUTH_ERROR_CODES[error]
    this.headers = options.headers ?? {}
    this.extensions = options.extensions
  }
}

/** Thrown by stores when PostgreSQL or Redis cannot answer: the request fails with 503. */
export class DependencyUnavailableError extends Error {
  override name = 'DependencyUnavailableError'
  readonly dependency: 'database' | 'redis'
  constructor(dependency: 'database' | 'redis', cause?: unknown) {
    super(`${dependency} unavailable`, { cause })
    this.dependency = dependency
  }
}

/** Shorthand for the 401 of a missing or bad bearer token. */
export function bearerError(kind: 'missing' | 'invalid', detail?: string): ProblemError {
  if (kind === 'missing') {
    return new ProblemError('unauthenticated', {
      headers: { 'www-authenticate': 'Bearer' },
      ...(detail === undefined ? {} : { detail }),
    })
  }
  return new ProblemError('invalid_token', {
    status: 401,
    detail: detail ?? 'The access token is not valid',
    headers: { 'www-authenticate': 'Bearer error="invalid_token"' },
  })
}
