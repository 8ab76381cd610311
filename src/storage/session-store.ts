/**
 * The refresh-token rotation store: one interface, two implementations (Redis for every
 * production instance, in-process for the embedded default), one contract test for both
 * (test/storage/session-store.test.ts).
 *
 * The store is a small atomic state machine over hashes; it never sees a refresh token. The
 * domain (domain/sessions.ts) mints tokens, hashes them, and seals each successor with a key
 * derived from its predecessor so that an honest retry can be answered with the same successor
 * while only hashes and sealed values are stored.
 *
 * Times are milliseconds since the epoch and always passed in, so tests drive the clock.
 */

/** What the store keeps about a live session (the durable list entry is in PostgreSQL). */
export interface StoredSession {
  id: string
  userId: string
  /** Space-separated scopes granted at sign-in. */
  scope: string
  /** RFC 8176 methods of the sign-in; kept by refreshes. */
  amr: string[]
  /** Seconds since the epoch: when the user last authenticated. Refreshes keep it. */
  authTime: number
  remember: boolean
  createdAt: number
  lastUsedAt: number
  /** Idle lifetime in seconds: the session dies when unused for this long. */
  idleTtl: number
  /** Absolute expiry (ms). */
  expiresAt: number
  /**
   * The user's roles, kept here so that a refresh needs no database read; every role change
   * updates the live sessions (`userChanged`). Null for a session stored without them: the
   * caller reads the roles from the database.
   */
  roles: string[] | null
}

/**
 * How many spent refresh tokens a session remembers, newest first (the previous one included).
 * Presenting one of them after the grace window is reuse and ends the session; an older one is
 * no longer told apart from a token the session never issued: refused, nothing revoked. A
 * remember-me session refreshing every 15 minutes would otherwise keep about 2,900 hashes
 * (over 300 KB of Redis) by its 30th day.
 */
export const SPENT_HISTORY = 100

export interface RotateInput {
  sessionId: string
  /** SHA-256 (base64url) of the presented refresh token. */
  presentedHash: string
  /** Hash of the successor the caller minted; stored only if this call rotates. */
  successorHash: string
  /** The successor, sealed under a key derived from the presented token; returned on retries. */
  successorSealed: string
  now: number
  /** How long (ms) a spent token may be presented again as an honest retry. */
  graceMs: number
}

export type RotateOutcome =
  /** The presented token was current: it is spent now and the caller's successor is current. */
  | { outcome: 'rotated'; session: StoredSession; previousLastUsedAt: number }
  /** The presented token was spent within the grace window: answer with the same successor. */
  | { outcome: 'replayed'; session: StoredSession; successorSealed: string }
  /** A spent token after the grace window: the whole session was revoked by this call. */
  | { outcome: 'reused'; session: StoredSession }
  /** The session passed its idle or absolute lifetime (it is removed). */
  | { outcome: 'expired'; sessionId: string }
  /**
   * No such live session, a token this session never issued, or one spent more than
   * SPENT_HISTORY rotations ago. Nothing changes.
   */
  | { outcome: 'unknown' }

/**
 * The user's profile as GET /v1/me answers it, cached in the session (JSON), and the version
 * that `userChanged` bumps. A reader that found no profile reads the database and stores what
 * it read only if the version is still the one it saw, so a change that lands in between is
 * never overwritten by older data.
 */
export interface CachedProfile {
  json: string | null
  version: string
}

/** Where a presented token stands in its session, for logout and RFC 7009 revocation. */
export type TokenStanding = 'current' | 'previous' | 'spent'

export interface SessionStore {
  readonly kind: 'redis' | 'memory'
  /** Stores a new session whose current refresh token has hash `refreshHash`. */
  create(session: StoredSession, refreshHash: string): Promise<void>
  /** Atomically spends the presented token; concurrent calls with one token never fork. */
  rotate(input: RotateInput): Promise<RotateOutcome>
  /** Where `presentedHash` stands in the session, or null if the session is gone or never had it. */
  standing(sessionId: string, presentedHash: string, now: number): Promise<TokenStanding | null>
  /** The live session (not revoked, not expired), or null. Used on every bearer request. */
  get(sessionId: string, now: number): Promise<StoredSession | null>
  /**
   * Records a new authentication on a live session (step-up): its `authTime` and `amr` change,
   * its refresh token and lifetimes do not. False when the session is gone.
   */
  reauthenticate(sessionId: string, authTime: number, amr: string[], now: number): Promise<boolean>
  /** The live session with its cached profile, in one round trip (every bearer request). */
  getWithProfile(
    sessionId: string,
    now: number,
  ): Promise<{ session: StoredSession; profile: CachedProfile } | null>
  /** Caches a profile read at `version`; false when the session is gone or the version moved on. */
  cacheProfile(sessionId: string, version: string, json: string): Promise<boolean>
  /**
   * Something the profile shows changed (called after the database holds it): drops the cached
   * profile, bumps its version, and with `roles` replaces the session's roles. False when the
   * session is gone.
   */
  userChanged(sessionId: string, roles: string[] | null): Promise<boolean>
  /** Ends a session at once; true when it was live. */
  revoke(sessionId: string): Promise<boolean>
  /** Round trip for /readyz. */
  ping(): Promise<void>
  close(): Promise<void>
}
