import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { problems, Uuid } from '../schemas/common.js'
import { actorOf, noStore, requestContext } from './context.js'

const Timestamp = Type.String({ format: 'date-time' })
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T) =>
  Type.Union([schema, Type.Null()])

const UserSummary = Type.Object({
  id: Uuid,
  email: Type.String(),
  email_verified: Type.Boolean(),
  roles: Type.Array(Type.String()),
  disabled: Type.Boolean(),
  created_at: Timestamp,
})

const UserDetail = Type.Object({
  id: Uuid,
  email: Type.String(),
  email_verified: Type.Boolean(),
  roles: Type.Array(Type.String()),
  disabled: Type.Boolean(),
  mfa: Type.Object({ totp: Type.Boolean() }),
  last_login_at: Nullable(Timestamp),
  session_count: Type.Integer(),
  created_at: Timestamp,
})

const AuditEvent = Type.Object({
  id: Uuid,
  type: Type.String(),
  created_at: Timestamp,
  actor_id: Nullable(Uuid),
  user_id: Nullable(Uuid),
  ip: Nullable(Type.String()),
  user_agent: Nullable(Type.String()),
  request_id: Nullable(Type.String()),
  outcome: Type.Union([Type.Literal('success'), Type.Literal('failure')]),
  details: Type.Record(Type.String(), Type.Unknown()),
})

const Limit = Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 }))
const Cursor = Type.Optional(
  Type.String({ maxLength: 512, description: 'next_cursor of the previous page (opaque)' }),
)
const UserId = Type.Object({ id: Uuid })
/** An http bearer scheme has no scopes in OpenAPI: each description names the role and scope. */
const bearer = (_scope: string) => [{ bearer: [] }]

/**
 * The administration API. Every route needs the `admin` role and the scope named in the
 * contract, both checked by preHandlers before the handler runs; what an administrator may do to
 * a given user is the policy module's decision (src/domain/policy.ts).
 */
const adminRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { administration } = app.services
  const guard = (scope: string) => [app.authenticate, app.requireScope(scope), app.requireRole('admin')]
  const refusals = problems(400, 401, 403, 429, 503)

  app.get(
    '/users',
    {
      preHandler: guard('admin:users'),
      schema: {
        tags: ['admin'],
        summary: 'List and search users',
        description:
          'Needs the admin role and scope admin:users. Ordered by email (case-insensitive), a stable order; `email` keeps the users whose email starts with it. Pages are at most `limit` long; pass `next_cursor` back as `cursor` for the next one (null on the last page).',
        security: bearer('admin:users'),
        querystring: Type.Object(
          {
            email: Type.Optional(Type.String({ minLength: 1, maxLength: 254 })),
            limit: Limit,
            cursor: Cursor,
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({ items: Type.Array(UserSummary), next_cursor: Nullable(Type.String()) }),
          ...refusals,
        },
      },
    },
    async (request, reply) => {
      noStore(reply)
      const { email, limit = 50, cursor } = request.query
      return administration.listUsers({ email, limit, cursor })
    },
  )

  app.get(
    '/users/:id',
    {
      preHandler: guard('admin:users'),
      schema: {
        tags: ['admin'],
        summary: 'One user',
        description:
          'Needs the admin role and scope admin:users. Roles, status, email verification, MFA, last login and live session count.',
        security: bearer('admin:users'),
        params: UserId,
        response: { 200: UserDetail, ...problems(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request, reply) => {
      noStore(reply)
      return administration.getUser(request.params.id)
    },
  )

  app.patch(
    '/users/:id',
    {
      preHandler: guard('admin:users'),
      schema: {
        tags: ['admin'],
        summary: 'Change roles or disable a user',
        description:
          "roles replaces the user's roles (`user` is always kept; unknown roles are 400). Role changes reach the user's access tokens at their next refresh. disabled: true ends every session at once (refresh tokens and access tokens stop working) and sign-in answers 403 account_disabled; false enables the account again. An administrator cannot remove their own admin role or disable themselves (403 forbidden).",
        security: bearer('admin:users'),
        params: UserId,
        body: Type.Object(
          {
            roles: Type.Optional(
              Type.Array(Type.String({ maxLength: 64 }), { maxItems: 16, uniqueItems: true }),
            ),
            disabled: Type.Optional(Type.Boolean()),
          },
          {
            additionalProperties: false,
            minProperties: 1,
            examples: [{ roles: ['admin'] }, { disabled: true }],
          },
        ),
        response: { 200: UserDetail, ...problems(400, 401, 403, 404, 415, 429, 503) },
      },
    },
    async (request, reply) => {
      noStore(reply)
      return administration.updateUser(
        actorOf(request),
        request.params.id,
        request.body,
        requestContext(request),
      )
    },
  )

  app.delete(
    '/users/:id/sessions',
    {
      preHandler: guard('admin:users'),
      schema: {
        tags: ['admin'],
        summary: 'End every session of a user',
        description:
          'Needs the admin role and scope admin:users. Refresh tokens and access tokens of those sessions stop working at once.',
        security: bearer('admin:users'),
        params: UserId,
        response: { 204: Type.Null(), ...problems(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request, reply) => {
      await administration.revokeSessions(actorOf(request), request.params.id, requestContext(request))
      return reply.code(204).send(null)
    },
  )

  app.post(
    '/keys/rotate',
    {
      preHandler: guard('admin:keys'),
      schema: {
        tags: ['admin'],
        summary: 'Introduce a new signing key',
        description:
          'Needs the admin role and scope admin:keys. The new key is in the JWKS at once and signs from activates_at (now + JWKS_MAX_AGE); the key it replaces keeps verifying for ACCESS_TOKEN_TTL after that.',
        security: bearer('admin:keys'),
        response: {
          200: Type.Object({ kid: Type.String(), activates_at: Timestamp }),
          ...problems(401, 403, 429, 503),
        },
      },
    },
    async (request, reply) => {
      noStore(reply)
      return administration.rotateKey(actorOf(request), requestContext(request))
    },
  )

  app.get(
    '/audit-events',
    {
      preHandler: guard('admin:audit'),
      schema: {
        tags: ['admin'],
        summary: 'The audit log',
        description:
          'Needs the admin role and scope admin:audit. Newest first. Filters: user_id (whom the event concerns), type, since and until (inclusive, RFC 3339). Events are kept AUDIT_RETENTION_DAYS days.',
        security: bearer('admin:audit'),
        querystring: Type.Object(
          {
            user_id: Type.Optional(Uuid),
            type: Type.Optional(Type.String({ maxLength: 64 })),
            since: Type.Optional(Timestamp),
            until: Type.Optional(Timestamp),
            limit: Limit,
            cursor: Cursor,
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({ items: Type.Array(AuditEvent), next_cursor: Nullable(Type.String()) }),
          ...refusals,
        },
      },
    },
    async (request, reply) => {
      noStore(reply)
      const { user_id: userId, type, since, until, limit = 50, cursor } = request.query
      return administration.auditEvents({ userId, type, since, until, limit, cursor })
    },
  )
}

export default adminRoutes
