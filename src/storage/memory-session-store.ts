/**
 * The in-process SessionStore for the embedded default (one instance, no Redis). Same state
 * machine as redis-session-store.ts; atomicity comes from every method running synchronously
 * between awaits. Expired sessions are dropped lazily: by rotate() when it meets one, by create()
 * (a sweep at most once per interval of the caller's clock), and by a cheap periodic sweep on the
 * wall clock (an unref'd timer, so it never keeps the process alive; close() clears it). Like
 * Redis's HMGET, get() and standing() only read: they report an expired session as gone without
 * removing it, so a later rotate() still answers 'expired' in both stores.
 */
import {
  type CachedProfile,
  type RotateInput,
  type RotateOutcome,
  type SessionStore,
  SPENT_HISTORY,
  type StoredSession,
  type TokenStanding,
} from './session-store.js'

interface Entry {
  session: StoredSession
  /** Hash of the current refresh token. */
  cur: string
  /** Hash of the token spent last, with when it was spent and the sealed successor it got. */
  prev: string | null
  prevAt: number
  succ: string | null
  /** The last SPENT_HISTORY spent hashes (prev included) → when each was spent, oldest first. */
  spent: Map<string, number>
  profile: string | null
  profileVersion: number
}

export interface MemorySessionStoreOptions {
  /** How often (ms) the periodic sweep runs against the wall clock; 0 disables it. Default 60 s. */
  sweepIntervalMs?: number
}

/** When the session dies: the sooner of its idle and absolute deadlines (ms). */
function deadline(session: StoredSession): number {
  return Math.min(session.lastUsedAt + session.idleTtl * 1000, session.expiresAt)
}

function isExpired(session: StoredSession, now: number): boolean {
  return now > session.expiresAt || now > session.lastUsedAt + session.idleTtl * 1000
}

function copy(session: StoredSession): StoredSession {
  return { ...session, amr: [...session.amr], roles: session.roles && [...session.roles] }
}

export class MemorySessionStore implements SessionStore {
  readonly kind = 'memory' as const
  readonly #sessions = new Map<string, Entry>()
  readonly #interval: number
  #timer: NodeJS.Timeout | undefined
  #lastSweep = Number.NEGATIVE_INFINITY

  constructor(options: MemorySessionStoreOptions = {}) {
    const interval = options.sweepIntervalMs ?? 60_000
    this.#interval = interval
    if (interval > 0) {
      this.#timer = setInterval(() => this.sweep(Date.now()), interval)
      this.#timer.unref()
    }
  }

  /** Drops every session that is dead at `now`; returns how many were dropped. */
  sweep(now: number = Date.now()): number {
    this.#lastSweep = now
    let dropped = 0
    for (const [id, entry] of this.#sessions) {
      if (isExpired(entry.session, now)) {
        this.#sessions.delete(id)
        dropped++
      }
    }
    return dropped
  }

  /** How many sessions are held (live or not yet swept). */
  get size(): number {
    return this.#sessions.size
  }

  /** The entry if it is live at `now` (read-only, like the Redis store's HMGET). */
  #live(sessionId: string, now: number): Entry | undefined {
    const entry = this.#sessions.get(sessionId)
    return entry && !isExpired(entry.session, now) ? entry : undefined
  }

  async create(session: StoredSession, refreshHash: string): Promise<void> {
    if (this.#sessions.has(session.id)) throw new Error(`session ${session.id} already exists`)
    if (this.#interval > 0 && session.createdAt - this.#lastSweep >= this.#interval)
      this.sweep(session.createdAt)
    this.#sessions.set(session.id, {
      session: copy(session),
      cur: refreshHash,
      prev: null,
      prevAt: 0,
      succ: null,
      spent: new Map(),
      profile: null,
      profileVersion: 0,
    })
  }

  async rotate(input: RotateInput): Promise<RotateOutcome> {
    const { sessionId, presentedHash, now } = input
    const entry = this.#sessions.get(sessionId)
    if (!entry) return { outcome: 'unknown' }
    if (isExpired(entry.session, now)) {
      this.#sessions.delete(sessionId)
      return { outcome: 'expired', sessionId }
    }
    if (presentedHash === entry.cur) {
      entry.spent.set(presentedHash, now)
      if (entry.spent.size > SPENT_HISTORY) {
        for (const oldest of entry.spent.keys()) {
          entry.spent.delete(oldest)
          break
        }
      }
      entry.prev = presentedHash
      entry.prevAt = now
      entry.succ = input.successorSealed
      entry.cur = input.successorHash
      const previousLastUsedAt = entry.session.lastUsedAt
      entry.session.lastUsedAt = now
      return { outcome: 'rotated', session: copy(entry.session), previousLastUsedAt }
    }
    if (presentedHash === entry.prev && entry.succ !== null && now - entry.prevAt <= input.graceMs) {
      return { outcome: 'replayed', session: copy(entry.session), successorSealed: entry.succ }
    }
    if (presentedHash === entry.prev || entry.spent.has(presentedHash)) {
      this.#sessions.delete(sessionId)
      return { outcome: 'reused', session: copy(entry.session) }
    }
    return { outcome: 'unknown' }
  }

  async standing(sessionId: string, presentedHash: string, now: number): Promise<TokenStanding | null> {
    const entry = this.#live(sessionId, now)
    if (!entry) return null
    if (presentedHash === entry.cur) return 'current'
    if (presentedHash === entry.prev) return 'previous'
    if (entry.spent.has(presentedHash)) return 'spent'
    return null
  }

  async get(sessionId: string, now: number): Promise<StoredSession | null> {
    const entry = this.#live(sessionId, now)
    return entry ? copy(entry.session) : null
  }

  async reauthenticate(sessionId: string, authTime: number, amr: string[], now: number): Promise<boolean> {
    const entry = this.#live(sessionId, now)
    if (!entry) return false
    entry.session.authTime = authTime
    entry.session.amr = [...amr]
    return true
  }

  async getWithProfile(
    sessionId: string,
    now: number,
  ): Promise<{ session: StoredSession; profile: CachedProfile } | null> {
    const entry = this.#live(sessionId, now)
    if (!entry) return null
    return {
      session: copy(entry.session),
      profile: { json: entry.profile, version: String(entry.profileVersion) },
    }
  }

  async cacheProfile(sessionId: string, version: string, json: string): Promise<boolean> {
    const entry = this.#sessions.get(sessionId)
    if (!entry || String(entry.profileVersion) !== version) return false
    entry.profile = json
    return true
  }

  async userChanged(sessionId: string, roles: string[] | null): Promise<boolean> {
    const entry = this.#sessions.get(sessionId)
    if (!entry) return false
    entry.profileVersion += 1
    entry.profile = null
    if (roles) entry.session.roles = [...roles]
    return true
  }

  async revoke(sessionId: string): Promise<boolean> {
    const entry = this.#sessions.get(sessionId)
    if (!entry) return false
    this.#sessions.delete(sessionId)
    // Like Redis, whose key outlives neither deadline on the wall clock.
    return deadline(entry.session) >= Date.now()
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer)
    this.#timer = undefined
  }
}
