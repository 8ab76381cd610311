import { type TSchema, Type } from '@sinclair/typebox'

/** An email address as the API accepts it (checked loosely: deliverability is proven by mail). */
export const Email = Type.String({
  format: 'email',
  minLength: 3,
  maxLength: 254,
  description: 'Email address',
  examples: ['ada@example.com'],
})

/** A password as typed: never trimmed or case-folded; the policy is checked after NFKC. */
export const Password = Type.String({ minLength: 1, maxLength: 1024, description: 'Password' })

export const Uuid = Type.String({ format: 'uuid' })

export const Problem = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    code: Type.String({ description: 'Stable machine code, e.g. invalid_credentials' }),
    detail: Type.Optional(Type.String()),
    errors: Type.Optional(Type.Array(Type.Object({ path: Type.String(), message: Type.String() }))),
    request_id: Type.String(),
  },
  { $id: 'Problem', additionalProperties: true, description: 'RFC 9457 problem details' },
)

export const OAuthErrorBody = Type.Object(
  {
    error: Type.String({ description: 'RFC 6749 §5.2 error code' }),
    error_description: Type.Optional(Type.String()),
  },
  { $id: 'OAuthError', additionalProperties: true },
)

export const TokenResponse = Type.Object(
  {
    access_token: Type.String({ description: 'RFC 9068 JWT' }),
    token_type: Type.Literal('Bearer'),
    expires_in: Type.Integer({ description: 'Seconds until the access token expires' }),
    refresh_token: Type.Optional(Type.String({ description: 'Opaque; rotates on every use' })),
    scope: Type.String(),
  },
  { $id: 'TokenResponse' },
)

/** `{ 400: Problem, 401: Problem, ... }` for a route's documented error statuses. */
export function problems(...statuses: number[]): Record<number, TSchema> {
  return Object.fromEntries(statuses.map((status) => [status, Type.Ref('Problem')]))
}
