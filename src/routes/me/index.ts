import { createHash } from 'node:crypto'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { type Static, Type } from '@sinclair/typebox'
import { hasMfa } from '../../domain/mfa.js'
import { ProblemError } from '../../errors.js'
import { Password, problems, Uuid } from '../../schemas/common.js'
import { actorOf, noStore, requestContext } from '../context.js'

const Me = Type.Object({
  id: Uuid,
  email: Type.String(),
  email_verified: Type.Boolean(),
  roles: Type.Array(Type.String()),
  mfa: Type.Object({ totp: Type.Boolean(), recovery_codes_left: Type.Integer() }),
  identities: Type.Array(Type.Object({ provider: Type.String(), subject: Type.String() })),
  created_at: Type.String({ format: 'date-time' }),
})

/**
 * Tags the GET /v1/me answer cached in the session with its schema: an answer cached by a
 * release whose answer had another shape (during a rolling deploy) is read again, not served.
 */
export const ME_CACHE_TAG = `${createHash('sha256').update(JSON.stringify(Me)).digest('base64url').slice(0, 12)} `

const SessionEntry = Type.Object({
  id: Uuid,
  created_at: Type.String({ format: 'date-time' }),
  last_used_at: Type.String({ format: 'date-time' }),
  ip: Type.Union([Type.String(), Type.Null()]),
  user_agent: Type.Union([Type.String(), Type.Null()]),
  current: Type.Boolean(),
  remember: Type.Boolean(),
})

const bearer = [{ bearer: [] }]

/** The signed-in user: profile and sessions. Ownership: a user sees and ends only their own. */
const meRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { users, sessions, accounts, socialLogin } = app.services

  app.get(
    '',
    {
      preHandler: [app.authenticate, app.requireScope('profile')],
      schema: {
        tags: ['me'],
        summary: 'The signed-in user',
        description:
          'Needs scope profile. Profile, MFA status and linked social identities (provider and subject, never their tokens).',
        security: bearer,
        response: { 200: Me, ...problems(401, 403) },
      },
    },
    async (request, reply) => {
      noStore(reply)
      // The session caches this answer; every change it shows clears it (SessionService.userChanged).
      const cached = request.cachedProfile
      // Cached as this route's JSON: Fastify sends a string with a JSON content type as it is
      // (the schema's type for send does not cover that, hence the cast).
      if (cached?.json?.startsWith(ME_CACHE_TAG))
        return reply
          .type('application/json; charset=utf-8')
          .send(cached.json.slice(ME_CACHE_TAG.length) as never)
      const profile = await users.findProfile(request.user.sub)
      if (!profile)
        throw new ProblemError('invalid_token', { status: 401, detail: 'The account no longer exists' })
      const { user } = profile
      const me: Static<typeof Me> = {
        id: user.id,
        email: user.email,
        email_verified: user.emailVerifiedAt !== null,
        roles: user.roles,
        mfa: { totp: hasMfa(user), recovery_codes_left: hasMfa(user) ? profile.recoveryCodesLeft : 0 },
        identities: profile.identities,
        created_at: user.createdAt.toISOString(),
      }
      if (cached) {
        // A cache that cannot be written costs the next request a database read, nothing more.
        await sessions
          .cacheProfile(request.user.sid, cached.version, ME_CACHE_TAG + JSON.stringify(me))
          .catch((error: unknown) => {
            request.log.warn({ err: error }, 'could not cache the profile')
          })
      }
      return me
    },
  )

  app.post(
    '/password',
    {
      preHandler: [app.authenticate, app.requireScope('profile'), app.requireFreshAuth],
      schema: {
        tags: ['me'],
        summary: 'Change my password',
        description:
          'Needs a fresh login (auth_time within FRESH_AUTH_MAX_AGE, else 401 fresh_login_required with an RFC 9470 challenge). Ends every other session; the current one continues. A wrong current password is 400 invalid_credentials and counts as a failed sign-in.',
        security: bearer,
        body: Type.Object(
          { current_password: Password, new_password: Password },
          { additionalProperties: false },
        ),
        response: { 204: Type.Null(), ...problems(400, 401, 403, 415, 422, 429, 503) },
      },
    },
    async (request, reply) => {
      const { current_password: current, new_password: next } = request.body
      await accounts.changePassword(request.user, current, next, requestContext(request))
      return reply.code(204).send(null)
    },
  )

  app.delete(
    '',
    {
      preHandler: [app.authenticate, app.requireScope('profile'), app.requireFreshAuth],
      schema: {
        tags: ['me'],
        summary: 'Delete my account',
        description:
          'Needs a fresh login. The account, its sessions and tokens are gone at once; audit events keep the user id.',
        security: bearer,
        response: { 204: Type.Null(), ...problems(401, 403, 429, 503) },
      },
    },
    async (request, reply) => {
      await accounts.deleteAccount(request.user, requestContext(request))
      return reply.code(204).send(null)
    },
  )

  app.delete(
    '/identities/:provider',
    {
      preHandler: [app.authenticate, app.requireScope('profile'), app.requireFreshAuth],
      schema: {
        tags: ['me'],
        summary: 'Unlink a social identity',
        description:
          "Needs a fresh login. Refused (403 forbidden) when the identity is the account's only way in: no password and no other linked identity. An identity that is not linked is 404.",
        security: bearer,
        params: Type.Object({ provider: Type.String({ maxLength: 32 }) }),
        response: { 204: Type.Null(), ...problems(401, 403, 404, 429, 503) },
      },
    },
    async (request, reply) => {
      await socialLogin.unlink(request.user.sub, request.params.provider, requestContext(request))
      return reply.code(204).send(null)
    },
  )

  app.get(
    '/sessions',
    {
      preHandler: [app.authenticate, app.requireScope('sessions')],
      schema: {
        tags: ['me'],
        summary: 'The live sessions of the signed-in user',
        description:
          'Needs scope sessions. Newest first; `current` marks the session of the token used. Pages with limit and cursor (next_cursor).',
        security: bearer,
        querystring: Type.Object(
          {
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 50 })),
            cursor: Type.Optional(Type.String({ maxLength: 64 })),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            items: Type.Array(SessionEntry),
            next_cursor: Type.Union([Type.String(), Type.Null()]),
          }),
          ...problems(401, 403),
        },
      },
    },
    async (request, reply) => {
      noStore(reply)
      const all = await sessions.list(request.user.sub, request.user.sid)
      const limit = request.query.limit ?? 50
      const start = request.query.cursor ? all.findIndex((entry) => entry.id === request.query.cursor) + 1 : 0
      const items = all.slice(start, start + limit)
      const next = start + limit < all.length ? (items.at(-1)?.id ?? null) : null
      return { items, next_cursor: next }
    },
  )

  app.delete(
    '/sessions/:id',
    {
      preHandler: [app.authenticate, app.requireScope('sessions')],
      schema: {
        tags: ['me'],
        summary: 'End one of my sessions',
        description:
          "A session that is not the caller's answers 404, as if it did not exist (an administrator with admin:users may end anyone's).",
        security: bearer,
        params: Type.Object({ id: Type.String({ maxLength: 64 }) }),
        response: { 204: Type.Null(), ...problems(401, 403, 404) },
      },
    },
    async (request, reply) => {
      const visible = await sessions.findVisible(request.params.id, actorOf(request))
      if (!visible) throw new ProblemError('not_found', { detail: 'No such session' })
      await sessions.revoke(visible.id, {
        reason: 'revoked_by_user',
        actorId: request.user.sub,
        context: requestContext(request),
      })
      return reply.code(204).send(null)
    },
  )

  app.delete(
    '/sessions',
    {
      preHandler: [app.authenticate, app.requireScope('sessions')],
      schema: {
        tags: ['me'],
        summary: 'End every session but the current one',
        description: 'Needs scope sessions. Their refresh tokens and access tokens stop working at once.',
        security: bearer,
        response: { 204: Type.Null(), ...problems(401, 403) },
      },
    },
    async (request, reply) => {
      await sessions.revokeAllForUser(request.user.sub, {
        reason: 'revoked_by_user',
        actorId: request.user.sub,
        except: request.user.sid,
        context: requestContext(request),
      })
      return reply.code(204).send(null)
    },
  )
}

export default meRoutes
