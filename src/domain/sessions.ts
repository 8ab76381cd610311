import { randomUUID } from 'node:crypto'
import { OAuthError, ProblemError } from '../errors.js'
import type { SessionRepository, SessionRow } from '../storage/session-repository.js'
import type { CachedProfile, SessionStore, StoredSession } from '../storage/session-store.js'
import type { UserRepository, UserRow } from '../storage/user-repository.js'
import type { AccessTokenIssuer } from './access-tokens.js'
import type { AuditLog, RequestContext } from './audit.js'
import { type Clock, epochSeconds } from './clock.js'
import { hashToken, keyFromToken, randomToken, seal, unseal } from './crypto.js'
import { type Actor, canActOnSession, effectiveScope } from './policy.js'

/** The RFC 6749 §5.1 token response. */
export interface TokenResponse {
  access_token: string
  token_type: 'Bearer'
  expires_in: number
  refresh_token: string
  scope: string
}

/**
 * Tokens as the service issues them: the token response, and what a browser-mode answer needs
 * to give its cookie the session's lifetime. Routes answer `response`.
 */
export interface IssuedTokens {
  response: TokenResponse
  session: { remember: boolean; expiresAt: number }
}

/** A token response without a refresh token: step-up keeps the session's refresh token. */
export type AccessTokenResponse = Omit<TokenResponse, 'refresh_token'>

export interface SessionLifetimes {
  /** Seconds. */
  idle: number
  absolute: number
  rememberIdle: number
  rememberAbsolute: number
  /** REFRESH_REUSE_GRACE, seconds. */
  reuseGrace: number
}

export interface SessionServiceDeps {
  store: SessionStore
  sessions: SessionRepository
  users: UserRepository
  accessTokens: AccessTokenIssuer
  audit: AuditLog
  clock: Clock
  lifetimes: SessionLifetimes
  /** Called when refresh-token reuse ends a session (the owner is told by email). */
  onReuseDetected?: (user: UserRow) => void
  /** Told the outcome of every refresh grant (metrics). */
  onRefresh?: (outcome: 'rotated' | 'grace_retry' | 'reuse_detected' | 'expired' | 'invalid') => void
}

export interface StartSessionInput {
  user: UserRow
  scope: string
  amr: string[]
  remember: boolean
  context: RequestContext
}

/** A session as `GET /v1/me/sessions` lists it. */
export interface SessionListEntry {
  id: string
  created_at: string
  last_used_at: string
  ip: string | null
  user_agent: string | null
  current: boolean
  remember: boolean
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const SUCCESSOR_PURPOSE = 'latchkey refresh successor'
const LIST_ENTRY_TOUCH_INTERVAL_MS = 60_000

/**
 * Splits a refresh token `<session id>.<secret>` into the session id and the token's hash.
 * The id lets the store find the family in one lookup (and keep it in one Redis hash slot);
 * the 256-bit secret is what authenticates.
 */
export function parseRefreshToken(token: string): { sessionId: string; hash: string } | null {
  const dot = token.indexOf('.')
  if (dot !== 36 || token.length !== 36 + 1 + 43) return null
  const sessionId = token.slice(0, dot)
  if (!UUID.test(sessionId) || !/^[A-Za-z0-9_-]{43}$/.test(token.slice(dot + 1))) return null
  return { sessionId, hash: hashToken(token) }
}

function mintRefreshToken(sessionId: string): string {
  return `${sessionId}.${randomToken(32)}`
}

const invalidGrant = (description = 'The refresh token is invalid, expired or revoked') =>
  new OAuthError('invalid_grant', description)

/**
 * Sessions and refresh-token rotation: starts sessions, rotates their refresh tokens through
 * the store (one successor per token, honest retries within the grace window, reuse after it
 * ends the session), and revokes them. The store holds the rotation state; PostgreSQL holds
 * the list entry and the revocation, so both survive a restart of the API.
 */
export class SessionService {
  constructor(private readonly deps: SessionServiceDeps) {}

  /** Opens a session for a user who has just authenticated; answers a token response. */
  async start(input: StartSessionInput): Promise<IssuedTokens> {
    const { store, sessions, clock, lifetimes } = this.deps
    const now = clock.now()
    const idle = input.remember ? lifetimes.rememberIdle : lifetimes.idle
    const absolute = input.remember ? lifetimes.rememberAbsolute : lifetimes.absolute
    const session: StoredSession = {
      id: randomUUID(),
      userId: input.user.id,
      scope: input.scope,
      amr: input.amr,
      authTime: epochSeconds(now),
      remember: input.remember,
      createdAt: now,
      lastUsedAt: now,
      idleTtl: idle,
      expiresAt: now + absolute * 1000,
      roles: [...input.user.roles],
    }
    await sessions.insert({
      id: session.id,
      userId: session.userId,
      createdAt: new Date(now),
      lastUsedAt: new Date(now),
      idleExpiresAt: new Date(Math.min(now + idle * 1000, session.expiresAt)),
      expiresAt: new Date(session.expiresAt),
      remember: session.remember,
      ip: input.context.ip,
      userAgent: input.context.userAgent?.slice(0, 512) ?? null,
      scope: session.scope,
      amr: session.amr,
      authTime: new Date(session.authTime * 1000),
    })
    const refreshToken = mintRefreshToken(session.id)
    try {
      await store.create(session, hashToken(refreshToken))
    } catch (error) {
      // No half-made session: without rotation state the list entry must not look live.
      await sessions.markRevoked(session.id, new Date(now), 'store_unavailable').catch(() => {})
      throw error
    }
    // Refreshes take the roles from the store, and a role change or a disabling updates or ends
    // the sessions it finds in the database. One that happened between the caller's read of
    // the user and the insert above did not see this session: read the user again.
    const current = await this.deps.users.findById(input.user.id)
    if (!current || current.disabledAt) {
      await this.revoke(session.id, {
        reason: current ? 'account_disabled' : 'account_deleted',
        actorId: null,
        context: input.context,
      })
      throw new ProblemError(current ? 'account_disabled' : 'invalid_credentials')
    }
    if (current.roles.join(' ') !== session.roles?.join(' ')) {
      session.roles = [...current.roles]
      await store.userChanged(session.id, session.roles)
    }
    return this.issued(session, await this.respond(session, session.roles, refreshToken))
  }

  /**
   * The refresh grant. Rotates the token; a retry within the grace window gets the same
   * successor; reuse after it revokes the session, writes an audit event and tells the owner.
   */
  async refresh(refreshToken: string, context: RequestContext): Promise<IssuedTokens> {
    const { store, clock, lifetimes } = this.deps
    const parsed = parseRefreshToken(refreshToken)
    if (!parsed) {
      this.deps.onRefresh?.('invalid')
      throw invalidGrant()
    }
    const successor = mintRefreshToken(parsed.sessionId)
    const sealKey = keyFromToken(refreshToken, SUCCESSOR_PURPOSE)
    const now = clock.now()
    const result = await store.rotate({
      sessionId: parsed.sessionId,
      presentedHash: parsed.hash,
      successorHash: hashToken(successor),
      successorSealed: seal(sealKey, successor, parsed.sessionId),
      now,
      graceMs: lifetimes.reuseGrace * 1000,
    })
    const observe = this.deps.onRefresh
    switch (result.outcome) {
      case 'rotated': {
        observe?.('rotated')
        const roles = await this.rolesOf(result.session)
        // The list entry's "last used" may lag by a minute: it is written when this use falls in
        // another minute than the previous one, so at most once a minute per session however
        // often it refreshes, and PostgreSQL stays off the rotation's hot path.
        if (
          Math.floor(now / LIST_ENTRY_TOUCH_INTERVAL_MS) !==
          Math.floor(result.previousLastUsedAt / LIST_ENTRY_TOUCH_INTERVAL_MS)
        ) {
          const idleExpiry = Math.min(now + result.session.idleTtl * 1000, result.session.expiresAt)
          await this.deps.sessions.touch(result.session.id, new Date(now), new Date(idleExpiry))
        }
        return this.issued(result.session, await this.respond(result.session, roles, successor))
      }
      case 'replayed': {
        observe?.('grace_retry')
        const roles = await this.rolesOf(result.session)
        const same = unseal(sealKey, result.successorSealed, parsed.sessionId)
        return this.issued(result.session, await this.respond(result.session, roles, same))
      }
      case 'reused': {
        observe?.('reuse_detected')
        await this.deps.sessions.markRevoked(result.session.id, new Date(now), 'refresh_reuse')
        await this.deps.audit.record({
          type: 'auth.refresh_reuse_detected',
          outcome: 'failure',
          userId: result.session.userId,
          context,
          details: { session_id: result.session.id },
        })
        const user = await this.deps.users.findById(result.session.userId)
        if (user) this.deps.onReuseDetected?.(user)
        throw invalidGrant()
      }
      case 'expired':
        observe?.('expired')
        await this.deps.sessions.markRevoked(result.sessionId, new Date(now), 'expired')
        throw invalidGrant()
      default:
        observe?.('invalid')
        throw invalidGrant()
    }
  }

  /**
   * Records a fresh authentication on a live session (re-authentication): a new `auth_time`
   * and `amr` for this session's next access tokens, refreshes included. The refresh token
   * stays as it is. Answers a new access token.
   */
  async reauthenticate(sessionId: string, user: UserRow, amr: string[]): Promise<AccessTokenResponse> {
    const now = this.deps.clock.now()
    const authTime = epochSeconds(now)
    if (!(await this.deps.store.reauthenticate(sessionId, authTime, amr, now))) {
      throw new ProblemError('invalid_token', { status: 401, detail: 'The session has ended' })
    }
    await this.deps.sessions.setAuthentication(sessionId, new Date(authTime * 1000), amr)
    const session = await this.deps.store.get(sessionId, now)
    if (!session) throw new ProblemError('invalid_token', { status: 401, detail: 'The session has ended' })
    const { refresh_token: _none, ...response } = await this.respond(session, user.roles, '')
    return response
  }

  /** Ends the session a refresh token belongs to (logout, RFC 7009); unknown tokens are ignored. */
  async revokeByRefreshToken(refreshToken: string, context: RequestContext, reason: string): Promise<void> {
    const parsed = parseRefreshToken(refreshToken)
    if (!parsed) return
    const standing = await this.deps.store.standing(parsed.sessionId, parsed.hash, this.deps.clock.now())
    if (standing !== 'current' && standing !== 'previous') return
    const session = await this.deps.store.get(parsed.sessionId, this.deps.clock.now())
    await this.revoke(parsed.sessionId, { reason, actorId: session?.userId ?? null, context })
  }

  /** Ends one session at once: its refresh token and its access tokens stop working. */
  async revoke(
    sessionId: string,
    options: { reason: string; actorId: string | null; context?: RequestContext },
  ): Promise<void> {
    await this.deps.store.revoke(sessionId)
    const row = await this.deps.sessions.findById(sessionId)
    const changed = await this.deps.sessions.markRevoked(
      sessionId,
      new Date(this.deps.clock.now()),
      options.reason,
    )
    if (changed && row) {
      await this.deps.audit.record({
        type: options.reason === 'logout' ? 'auth.logout' : 'session.revoked',
        outcome: 'success',
        actorId: options.actorId,
        userId: row.userId,
        ...(options.context ? { context: options.context } : {}),
        details: { session_id: sessionId, reason: options.reason },
      })
    }
  }

  /**
   * Tells the user's live sessions that the user changed (after the database holds it): their
   * cached profile goes, and with `roles` their next refresh issues an access token with these
   * roles and, for sessions that asked for no particular scope, the scope they grant. Every
   * change GET /v1/me shows must call this. Answers how many sessions were told.
   */
  async userChanged(userId: string, change: { roles?: string[] } = {}): Promise<number> {
    const ids = await this.deps.sessions.listOpenIds(userId, new Date(this.deps.clock.now()))
    let told = 0
    for (const id of ids) if (await this.deps.store.userChanged(id, change.roles ?? null)) told++
    return told
  }

  /** Ends every session of a user, or every one but `except`. */
  async revokeAllForUser(
    userId: string,
    options: { reason: string; actorId: string | null; except?: string; context?: RequestContext },
  ): Promise<number> {
    const ids = await this.deps.sessions.listOpenIds(userId, new Date(this.deps.clock.now()), options.except)
    for (const id of ids) await this.revoke(id, options)
    return ids.length
  }

  /**
   * The live session behind an access token's `sid` with its cached profile, or null when it
   * was revoked or expired (one round trip; every bearer request).
   */
  async liveWithProfile(
    sessionId: string,
  ): Promise<{ session: StoredSession; profile: CachedProfile } | null> {
    return this.deps.store.getWithProfile(sessionId, this.deps.clock.now())
  }

  /** Caches the GET /v1/me answer read at `version` (see CachedProfile); false when it moved on. */
  async cacheProfile(sessionId: string, version: string, answer: string): Promise<boolean> {
    return this.deps.store.cacheProfile(sessionId, version, answer)
  }

  /** The user's live sessions, newest first, for the session list. */
  async list(userId: string, currentSessionId: string): Promise<SessionListEntry[]> {
    const rows = await this.deps.sessions.listLive(userId, new Date(this.deps.clock.now()))
    return rows.map((row) => toListEntry(row, currentSessionId))
  }

  /**
   * A session the actor may act on (the policy's ownership rule), when it is not yet revoked;
   * undefined otherwise, so that callers answer 404 whether it does not exist or is not theirs.
   */
  async findVisible(sessionId: string, actor: Actor): Promise<SessionRow | undefined> {
    if (!UUID.test(sessionId)) return undefined
    const row = await this.deps.sessions.findById(sessionId)
    if (!row || row.revokedAt || !canActOnSession(actor, row)) return undefined
    return row
  }

  /**
   * The roles a refresh issues: the session's copy, kept current by every role change. A
   * session stored without one (before roles were kept in the store) reads the user, and is
   * ended when the account is gone or disabled.
   */
  private async rolesOf(session: StoredSession): Promise<string[]> {
    if (session.roles) return session.roles
    const user = await this.deps.users.findById(session.userId)
    if (!user || user.disabledAt) {
      await this.revoke(session.id, { reason: user ? 'account_disabled' : 'account_deleted', actorId: null })
      throw invalidGrant()
    }
    return user.roles
  }

  private issued(session: StoredSession, response: TokenResponse): IssuedTokens {
    return { response, session: { remember: session.remember, expiresAt: session.expiresAt } }
  }

  private async respond(
    session: StoredSession,
    roles: string[],
    refreshToken: string,
  ): Promise<TokenResponse> {
    // A session that asked for no particular scope gets what its roles grant at each refresh.
    const scope = effectiveScope(session.scope, roles)
    const { token, expiresIn } = await this.deps.accessTokens.issue({
      userId: session.userId,
      sessionId: session.id,
      scope,
      roles,
      authTime: session.authTime,
      amr: session.amr,
    })
    return {
      access_token: token,
      token_type: 'Bearer',
      expires_in: expiresIn,
      refresh_token: refreshToken,
      scope,
    }
  }
}

function toListEntry(row: SessionRow, currentSessionId: string): SessionListEntry {
  return {
    id: row.id,
    created_at: row.createdAt.toISOString(),
    last_used_at: row.lastUsedAt.toISOString(),
    ip: row.ip,
    user_agent: row.userAgent,
    current: row.id === currentSessionId,
    remember: row.remember,
  }
}
