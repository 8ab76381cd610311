/** What the generated OpenAPI document adds to the route schemas. */

/** The OpenAPI document's tags, in the order integrators read them. */
export const OPENAPI_TAGS = [
  { name: 'sign-up', description: 'Accounts and email verification' },
  { name: 'sign-in', description: 'Password sign-in, MFA, re-authentication' },
  { name: 'social login', description: 'Sign-in through OpenID Providers (web flow and native ID tokens)' },
  { name: 'tokens', description: 'The OAuth token and revocation endpoints (RFC 6749, RFC 7009)' },
  { name: 'password', description: 'Forgotten passwords' },
  { name: 'me', description: 'The signed-in user: profile, password, sessions, identities' },
  { name: 'mfa', description: 'TOTP enrolment and recovery codes' },
  { name: 'admin', description: 'Administration: users, sessions, signing keys, audit log' },
  { name: 'discovery', description: 'JWKS and authorization server metadata' },
  { name: 'operations', description: 'Health, readiness and metrics' },
]

/** `POST /v1/me/sessions/{id}` → `postV1MeSessionsById`. */
export function operationId(method: string, url: string): string {
  const words = url
    .split('/')
    .filter(Boolean)
    .map((segment) =>
      segment.startsWith(':') || segment.startsWith('{')
        ? `By-${segment.replace(/[:{}]/g, '')}`
        : segment.replace(/^\./, ''),
    )
    .flatMap((segment) => segment.split(/[-_.]/))
    .filter(Boolean)
    .map((word) => word[0]!.toUpperCase() + word.slice(1))
  return method.toLowerCase() + words.join('')
}

type Json = Record<string, unknown>

/** Paths without the default rate limit (src/plugins/app/rate-limit.ts). */
const UNLIMITED_PATHS = new Set(['/healthz', '/readyz', '/metrics'])

const header = (description: string, schema: Json = { type: 'integer' }) => ({ description, schema })

/**
 * Documents the headers that go with the error answers: Retry-After and RateLimit-* on 429 (added
 * to every rate-limited operation), Retry-After on 503, the Bearer challenge on 401 and 403.
 */
export function documentResponseHeaders(document: Json): Json {
  document.components ??= {}
  const components = document.components as Json
  components.headers = {
    RetryAfter: header('Seconds to wait before trying again'),
    RateLimitLimit: header('Requests allowed in the window'),
    RateLimitRemaining: header('Requests left in the window'),
    RateLimitReset: header('Seconds until the window resets'),
    WWWAuthenticate: header(
      'RFC 6750 Bearer challenge, e.g. error="insufficient_scope", scope="admin:users"',
      {
        type: 'string',
      },
    ),
  }
  const ref = (name: string) => ({ $ref: `#/components/headers/${name}` })
  for (const [path, operations] of Object.entries((document.paths ?? {}) as Record<string, Json>)) {
    for (const operation of Object.values(operations) as Json[]) {
      operation.responses ??= {}
      const responses = operation.responses as Record<string, Json>
      const oauth = JSON.stringify(responses).includes('OAuthError')
      const errorSchema = { $ref: `#/components/schemas/${oauth ? 'OAuthError' : 'Problem'}` }
      const type = oauth ? 'application/json' : 'application/problem+json'
      if (!UNLIMITED_PATHS.has(path) && !responses['429']) {
        responses['429'] = { description: 'Too many requests', content: { [type]: { schema: errorSchema } } }
      }
      const withHeaders = (status: string, headers: Record<string, Json>) => {
        const response = responses[status]
        if (response) response.headers = { ...(response.headers as Json | undefined), ...headers }
      }
      withHeaders('429', {
        'Retry-After': ref('RetryAfter'),
        'RateLimit-Limit': ref('RateLimitLimit'),
        'RateLimit-Remaining': ref('RateLimitRemaining'),
        'RateLimit-Reset': ref('RateLimitReset'),
      })
      withHeaders('503', { 'Retry-After': ref('RetryAfter') })
      if (operation.security) {
        withHeaders('401', { 'WWW-Authenticate': ref('WWWAuthenticate') })
        withHeaders('403', { 'WWW-Authenticate': ref('WWWAuthenticate') })
      }
    }
  }
  return document
}
