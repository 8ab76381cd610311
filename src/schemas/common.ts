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
  {
    $id: 'Problem',
    additionalProperties: true,
    description: 'RFC 9457 problem details',
    examples: [
      {
        type: 'urn:latchkey:error:invalid_credentials',
        title: 'Invalid credentials',
        status: 401,
        code: 'invalid_credentials',
        request_id: '0b6e5d1c-4a1f-4c4e-9a65-2f7f0c3d9e21',
      },
    ],
  },
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
  {
    $id: 'TokenResponse',
    examples: [
      {
        access_token:
          'eyJhbGciOiJSUzI1NiIsImtpZCI6Ii4uLiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiIuLi4ifQ.c2lnbmF0dXJl',
        token_type: 'Bearer',
        expires_in: 900,
        refresh_token: '4f1c2a8e-6b7d-4e0a-9c3f-2d5e8a1b7c90.Qm9vbGVhbiBzZWNyZXQgb2YgMzIgYnl0ZXMgaGVyZQ',
        scope: 'profile sessions',
      },
    ],
  },
)

/** `{ 400: Problem, 401: Problem, ... }` for a route's documented error statuses. */
export function problems(...statuses: number[]): Record<number, TSchema> {
  return Object.fromEntries(statuses.map((status) => [status, Type.Ref('Problem')]))
}
