import { ProblemError } from '../errors.js'
import type { AuditEventRow, AuditRepository } from '../storage/audit-repository.js'
import type { UserRepository, UserRow } from '../storage/user-repository.js'
import type { AuditLog, RequestContext } from './audit.js'
import type { Clock } from './clock.js'
import type { KeyRing } from './key-ring.js'
import { hasMfa } from './mfa.js'
import { type Actor, canUpdateUser, normalizeRoles } from './policy.js'
import type { SessionService } from './sessions.js'

export interface AdministrationDeps {
  users: UserRepository
  sessions: SessionService
  keyRing: KeyRing
  audit: AuditLog
  auditEvents: AuditRepository
  clock: Clock
}

export interface UserSummary {
  id: string
  email: string
  email_verified: boolean
  roles: string[]
  disabled: boolean
  created_at: string
}

export interface UserDetail extends UserSummary {
  mfa: { totp: boolean }
  last_login_at: string | null
  session_count: number
}

export interface AuditEventView {
  id: string
  type: string
  created_at: string
  actor_id: string | null
  user_id: string | null
  ip: string | null
  user_agent: string | null
  request_id: string | null
  outcome: 'success' | 'failure'
  details: Record<string, unknown>
}

export interface Page<T> {
  items: T[]
  next_cursor: string | null
}

export interface AuditQuery {
  userId?: string | undefined
  type?: string | undefined
  since?: string | undefined
  until?: string | undefined
  limit: number
  cursor?: string | undefined
}

const notFound = () => new ProblemError('not_found', { detail: 'No such user' })

/**
 * The administration API's rules: user search and changes, session revocation, key rotation and
 * the audit log. The routes check the role and scope; the policy module decides what an
 * administrator may do to a given user.
 */
export class Administration {
  constructor(private readonly deps: AdministrationDeps) {}

  async listUsers(query: { email?: string | undefined; limit: number; cursor?: string | undefined }) {
    const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor, 1)[0]
    const rows = await this.deps.users.search({ emailPrefix: query.email, after, limit: query.limit })
    const page = rows.slice(0, query.limit)
    const last = page.at(-1)
    return {
      items: page.map(summary),
      next_cursor: rows.length > query.limit && last ? encodeCursor([last.email.toLowerCase()]) : null,
    } satisfies Page<UserSummary>
  }

  async getUser(id: string): Promise<UserDetail> {
    const user = await this.deps.users.findById(id)
    if (!user) throw notFound()
    return this.detail(user)
  }

  /**
   * Changes roles and the disabled flag. Disabling ends every session at once (refresh tokens
   * and access tokens stop working) and sign-in answers account_disabled; role changes reach
   * the user's tokens at the next refresh.
   */
  async updateUser(
    actor: Actor,
    id: string,
    change: { roles?: string[] | undefined; disabled?: boolean | undefined },
    context: RequestContext,
  ): Promise<UserDetail> {
    const user = await this.deps.users.findById(id)
    if (!user) throw notFound()
    const roles = change.roles === undefined ? undefined : normalizeRoles(change.roles)
    if (roles === null) {
      throw new ProblemError('validation_failed', {
        errors: [{ path: '/roles', message: 'holds a role that does not exist' }],
      })
    }
    const decision = canUpdateUser(actor, id, { roles, disabled: change.disabled })
    if (!decision.allowed) throw new ProblemError('forbidden', { detail: decision.reason })

    const now = new Date(this.deps.clock.now())
    const disable = change.disabled === true && !user.disabledAt
    const enable = change.disabled === false && user.disabledAt !== null
    const rolesChanged = roles !== undefined && roles.join(' ') !== user.roles.join(' ')
    let updated = user
    if (rolesChanged || disable || enable) {
      updated =
        (await this.deps.users.update(id, {
          ...(rolesChanged ? { roles } : {}),
          ...(disable ? { disabledAt: now } : enable ? { disabledAt: null } : {}),
        })) ?? user
    }
    // Live sessions carry their roles (refreshes read them there): give them the new ones.
    if (rolesChanged && !disable && roles) await this.deps.sessions.userChanged(id, { roles })
    if (disable) {
      await this.deps.sessions.revokeAllForUser(id, {
        reason: 'account_disabled',
        actorId: actor.userId,
        context,
      })
    }
    if (rolesChanged || disable || enable) {
      await this.deps.audit.record({
        type: 'user.updated',
        outcome: 'success',
        actorId: actor.userId,
        userId: id,
        context,
        details: {
          ...(rolesChanged ? { roles: { from: user.roles, to: roles } } : {}),
          ...(disable || enable ? { disabled: disable } : {}),
        },
      })
    }
    return this.detail(updated)
  }

  /** Ends every session of the user; answers how many were live. */
  async revokeSessions(actor: Actor, id: string, context: RequestContext): Promise<number> {
    const user = await this.deps.users.findById(id)
    if (!user) throw notFound()
    return this.deps.sessions.revokeAllForUser(id, {
      reason: 'revoked_by_admin',
      actorId: actor.userId,
      context,
    })
  }

  /** Introduces a new signing key (it signs after JWKS_MAX_AGE, as the contract's rules say). */
  async rotateKey(actor: Actor, context: RequestContext): Promise<{ kid: string; activates_at: string }> {
    const { kid, activatesAt } = await this.deps.keyRing.rotate()
    await this.deps.audit.record({
      type: 'key.rotated',
      outcome: 'success',
      actorId: actor.userId,
      context,
      details: { kid, activates_at: activatesAt.toISOString(), via: 'api' },
    })
    return { kid, activates_at: activatesAt.toISOString() }
  }

  /** The audit log, newest first, filtered; the cursor is the last event of the previous page. */
  async auditEvents(query: AuditQuery): Promise<Page<AuditEventView>> {
    let before: { createdAt: Date; id: string } | undefined
    if (query.cursor !== undefined) {
      const [time, id] = decodeCursor(query.cursor, 2)
      const createdAt = new Date(time ?? '')
      if (Number.isNaN(createdAt.getTime()) || !/^[0-9a-f-]{36}$/.test(id ?? '')) throw badCursor()
      before = { createdAt, id: id ?? '' }
    }
    const rows = await this.deps.auditEvents.page({
      userId: query.userId,
      type: query.type,
      since: query.since === undefined ? undefined : new Date(query.since),
      until: query.until === undefined ? undefined : new Date(query.until),
      before,
      limit: query.limit,
    })
    const page = rows.slice(0, query.limit)
    const last = page.at(-1)
    return {
      items: page.map(auditView),
      next_cursor:
        rows.length > query.limit && last ? encodeCursor([last.createdAt.toISOString(), last.id]) : null,
    }
  }

  private async detail(user: UserRow): Promise<UserDetail> {
    const live = await this.deps.sessions.list(user.id, '')
    return {
      ...summary(user),
      mfa: { totp: hasMfa(user) },
      last_login_at: user.lastLoginAt?.toISOString() ?? null,
      session_count: live.length,
    }
  }
}

function summary(user: UserRow): UserSummary {
  return {
    id: user.id,
    email: user.email,
    email_verified: user.emailVerifiedAt !== null,
    roles: user.roles,
    disabled: user.disabledAt !== null,
    created_at: user.createdAt.toISOString(),
  }
}

function auditView(row: AuditEventRow): AuditEventView {
  return {
    id: row.id,
    type: row.type,
    created_at: row.createdAt.toISOString(),
    actor_id: row.actorId,
    user_id: row.userId,
    ip: row.ip,
    user_agent: row.userAgent,
    request_id: row.requestId,
    outcome: row.outcome,
    details: row.details,
  }
}

/** Cursors are opaque to clients: base64url of the sort key of the last item served. */
function encodeCursor(parts: string[]): string {
  return Buffer.from(JSON.stringify(parts)).toString('base64url')
}

function decodeCursor(cursor: string, length: number): string[] {
  try {
    const parts: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'))
    if (Array.isArray(parts) && parts.length === length && parts.every((part) => typeof part === 'string'))
      return parts as string[]
  } catch {
    // fall through
  }
  throw badCursor()
}

function badCursor(): ProblemError {
  return new ProblemError('validation_failed', {
    errors: [{ path: '/querystring/cursor', message: 'is not a cursor this API gave out' }],
  })
}
