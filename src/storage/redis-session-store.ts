/**
 * The Redis SessionStore used by every production instance.
 *
 * One HASH per session at `${prefix}session:{${sessionId}}` (the braces are a Cluster hash tag:
 * each script touches one key, so one slot). Fields:
 *
 *   user, scope, amr (JSON), auth_time (s), remember ('1'|'0'), created, last_used (ms),
 *   idle_ttl (s), expires (ms), roles (JSON; absent in sessions stored before it was kept)
 *                                     the StoredSession
 *   cur                               hash of the current refresh token
 *   prev, prev_at, succ               the token spent last, when (ms), and the sealed successor it got
 *   spent                             the last SPENT_HISTORY spent hashes (prev included), oldest
 *                                     first, each followed by a space (hashes are 43 characters)
 *   x:<hash>                          one per token spent before `spent` was kept (still honoured;
 *                                     they go with the session)
 *   profile, pv                       the cached GET /v1/me answer (JSON) and its version
 *
 * The key carries PEXPIREAT min(last_used + idle_ttl, expires), set on create and on each
 * rotation, so Redis drops dead sessions by itself. Rotation is one Lua script (atomic, so
 * concurrent presentations of one token never fork the chain). The clock is passed in (`now`),
 * never read from Redis, so the state machine is the same as the in-process store's.
 */
import type { RedisClient } from './redis-client.js'
import {
  type CachedProfile,
  type RotateInput,
  type RotateOutcome,
  type SessionStore,
  SPENT_HISTORY,
  type StoredSession,
  type TokenStanding,
} from './session-store.js'

export interface RedisSessionStoreOptions {
  /** Key prefix; default 'lk:'. */
  prefix?: string
}

/** The StoredSession fields, in the order every script and HMGET returns them. */
const SESSION_FIELDS = [
  'user',
  'scope',
  'amr',
  'auth_time',
  'remember',
  'created',
  'last_used',
  'idle_ttl',
  'expires',
  'roles',
] as const

/**
 * KEYS[1] session key. ARGV: user, scope, amr, auth_time, remember, created, last_used, idle_ttl,
 * expires, cur, deadline (ms), roles. Returns 1 when created, 0 when the key exists (nothing
 * written).
 */
const CREATE_LUA = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1],
  'user', ARGV[1], 'scope', ARGV[2], 'amr', ARGV[3], 'auth_time', ARGV[4], 'remember', ARGV[5],
  'created', ARGV[6], 'last_used', ARGV[7], 'idle_ttl', ARGV[8], 'expires', ARGV[9], 'cur', ARGV[10],
  'roles', ARGV[12])
redis.call('PEXPIREAT', KEYS[1], ARGV[11])
return 1
`

/**
 * KEYS[1] session key. ARGV: presented hash, successor hash, successor sealed, now (ms), grace (ms),
 * SPENT_HISTORY. Returns {outcome} for 'unknown' and 'expired', else {outcome, user, scope, amr, auth_time,
 * remember, created, last_used, idle_ttl, expires, roles, extra}: extra is the sealed successor
 * for 'replayed' and the previous last_used for 'rotated'. A missing roles field is returned as
 * '' (a nil would end a Lua table).
 */
const ROTATE_LUA = `
local key = KEYS[1]
local presented = ARGV[1]
local now = tonumber(ARGV[4])
local f = redis.call('HMGET', key, 'user', 'scope', 'amr', 'auth_time', 'remember', 'created',
  'last_used', 'idle_ttl', 'expires', 'roles', 'cur', 'prev', 'prev_at', 'succ', 'spent')
if not f[1] then return {'unknown'} end
local idle_ms = tonumber(f[8]) * 1000
local expires = tonumber(f[9])
if now > expires or now > tonumber(f[7]) + idle_ms then
  redis.call('DEL', key)
  return {'expired'}
end
local function answer(outcome, last_used, extra)
  return {outcome, f[1], f[2], f[3], f[4], f[5], f[6], last_used, f[8], f[9], f[10] or '', extra or ''}
end
if presented == f[11] then
  local spent = (f[15] or '') .. presented .. ' '
  local keep = tonumber(ARGV[6]) * (#presented + 1)
  if #spent > keep then spent = string.sub(spent, #spent - keep + 1) end
  redis.call('HSET', key, 'prev', presented, 'prev_at', ARGV[4], 'succ', ARGV[3], 'cur', ARGV[2],
    'spent', spent, 'last_used', ARGV[4])
  redis.call('PEXPIREAT', key, string.format('%.0f', math.min(now + idle_ms, expires)))
  return answer('rotated', ARGV[4], f[7])
end
if f[12] and presented == f[12] then
  if f[14] and now - tonumber(f[13]) <= tonumber(ARGV[5]) then
    return answer('replayed', f[7], f[14])
  end
  redis.call('DEL', key)
  return answer('reused', f[7])
end
if (f[15] and string.find(' ' .. f[15], ' ' .. presented .. ' ', 1, true))
  or redis.call('HEXISTS', key, 'x:' .. presented) == 1 then
  redis.call('DEL', key)
  return answer('reused', f[7])
end
return {'unknown'}
`

/**
 * KEYS[1] session key. ARGV: auth_time (s), amr (JSON), now (ms). Sets both on a live session;
 * returns 1, or 0 when the session is missing or expired (nothing written).
 */
const REAUTHENTICATE_LUA = `
local f = redis.call('HMGET', KEYS[1], 'last_used', 'idle_ttl', 'expires')
if not f[1] then return 0 end
local now = tonumber(ARGV[3])
if now > tonumber(f[3]) or now > tonumber(f[1]) + tonumber(f[2]) * 1000 then return 0 end
redis.call('HSET', KEYS[1], 'auth_time', ARGV[1], 'amr', ARGV[2])
return 1
`

/**
 * KEYS[1] session key. ARGV: roles (JSON, or '' to keep them). On an existing session: bumps
 * pv, drops the cached profile, sets the roles. Returns 1, or 0 when the session is gone.
 */
const USER_CHANGED_LUA = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'pv', 1)
redis.call('HDEL', KEYS[1], 'profile')
if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], 'roles', ARGV[1]) end
return 1
`

/** KEYS[1] session key. ARGV: version, profile (JSON). Caches it while pv is still the version. */
const CACHE_PROFILE_LUA = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if (redis.call('HGET', KEYS[1], 'pv') or '0') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'profile', ARGV[2])
return 1
`

interface SessionCommands {
  latchkeySessionCreate(key: string, ...args: string[]): Promise<number>
  latchkeySessionRotate(key: string, ...args: string[]): Promise<string[]>
  latchkeySessionReauthenticate(key: string, ...args: string[]): Promise<number>
  latchkeySessionUserChanged(key: string, roles: string): Promise<number>
  latchkeySessionCacheProfile(key: string, version: string, json: string): Promise<number>
}

function int(value: string | null | undefined, field: string): number {
  const n = Number(value)
  if (value == null || value === '' || !Number.isFinite(n)) {
    throw new Error(`session store: field ${field} is not a number (${String(value)})`)
  }
  return n
}

function strings(value: string, field: string): string[] {
  const list: unknown = JSON.parse(value)
  if (!Array.isArray(list) || !list.every((m) => typeof m === 'string')) {
    throw new Error(`session store: field ${field} is not a list of strings`)
  }
  return list
}

/** Builds a StoredSession from the ten SESSION_FIELDS values (roles null or '' when absent). */
function toSession(id: string, v: (string | null)[]): StoredSession {
  return {
    id,
    userId: v[0] ?? '',
    scope: v[1] ?? '',
    amr: strings(v[2] ?? '[]', 'amr'),
    authTime: int(v[3], 'auth_time'),
    remember: v[4] === '1',
    createdAt: int(v[5], 'created'),
    lastUsedAt: int(v[6], 'last_used'),
    idleTtl: int(v[7], 'idle_ttl'),
    expiresAt: int(v[8], 'expires'),
    roles: v[9] ? strings(v[9], 'roles') : null,
  }
}

function isExpired(session: StoredSession, now: number): boolean {
  return now > session.expiresAt || now > session.lastUsedAt + session.idleTtl * 1000
}

export class RedisSessionStore implements SessionStore {
  readonly kind = 'redis' as const
  readonly #redis: RedisClient & SessionCommands
  readonly #prefix: string

  /** `redis` is owned by the caller: close() does not quit it. */
  constructor(redis: RedisClient, options: RedisSessionStoreOptions = {}) {
    this.#prefix = options.prefix ?? 'lk:'
    redis.defineCommand('latchkeySessionCreate', { numberOfKeys: 1, lua: CREATE_LUA })
    redis.defineCommand('latchkeySessionRotate', { numberOfKeys: 1, lua: ROTATE_LUA })
    redis.defineCommand('latchkeySessionReauthenticate', { numberOfKeys: 1, lua: REAUTHENTICATE_LUA })
    redis.defineCommand('latchkeySessionUserChanged', { numberOfKeys: 1, lua: USER_CHANGED_LUA })
    redis.defineCommand('latchkeySessionCacheProfile', { numberOfKeys: 1, lua: CACHE_PROFILE_LUA })
    this.#redis = redis as RedisClient & SessionCommands
  }

  /** The session's key (exposed for tests and tooling). */
  key(sessionId: string): string {
    return `${this.#prefix}session:{${sessionId}}`
  }

  async create(session: StoredSession, refreshHash: string): Promise<void> {
    const deadline = Math.min(session.lastUsedAt + session.idleTtl * 1000, session.expiresAt)
    const created = await this.#redis.latchkeySessionCreate(
      this.key(session.id),
      session.userId,
      session.scope,
      JSON.stringify(session.amr),
      String(session.authTime),
      session.remember ? '1' : '0',
      String(session.createdAt),
      String(session.lastUsedAt),
      String(session.idleTtl),
      String(session.expiresAt),
      refreshHash,
      String(Math.trunc(deadline)),
      session.roles ? JSON.stringify(session.roles) : '',
    )
    if (created !== 1) throw new Error(`session ${session.id} already exists`)
  }

  async rotate(input: RotateInput): Promise<RotateOutcome> {
    const { sessionId } = input
    const reply = await this.#redis.latchkeySessionRotate(
      this.key(sessionId),
      input.presentedHash,
      input.successorHash,
      input.successorSealed,
      String(input.now),
      String(input.graceMs),
      String(SPENT_HISTORY),
    )
    const outcome = reply[0]
    switch (outcome) {
      case 'unknown':
        return { outcome: 'unknown' }
      case 'expired':
        return { outcome: 'expired', sessionId }
      case 'rotated':
        return {
          outcome,
          session: toSession(sessionId, reply.slice(1, 11)),
          previousLastUsedAt: int(reply[11], 'last_used'),
        }
      case 'reused':
        return { outcome, session: toSession(sessionId, reply.slice(1, 11)) }
      case 'replayed':
        return {
          outcome,
          session: toSession(sessionId, reply.slice(1, 11)),
          successorSealed: reply[11] ?? '',
        }
      default:
        throw new Error(`session store: unexpected rotate reply ${String(outcome)}`)
    }
  }

  async standing(sessionId: string, presentedHash: string, now: number): Promise<TokenStanding | null> {
    const [cur, prev, lastUsed, idleTtl, expires, spent, spentBefore] = await this.#redis.hmget(
      this.key(sessionId),
      'cur',
      'prev',
      'last_used',
      'idle_ttl',
      'expires',
      'spent',
      `x:${presentedHash}`,
    )
    if (cur == null) return null
    const lastUsedAt = int(lastUsed, 'last_used')
    const expiresAt = int(expires, 'expires')
    if (now > expiresAt || now > lastUsedAt + int(idleTtl, 'idle_ttl') * 1000) return null
    if (presentedHash === cur) return 'current'
    if (presentedHash === prev) return 'previous'
    if (` ${spent ?? ''}`.includes(` ${presentedHash} `) || spentBefore != null) return 'spent'
    return null
  }

  async get(sessionId: string, now: number): Promise<StoredSession | null> {
    const values = await this.#redis.hmget(this.key(sessionId), ...SESSION_FIELDS)
    if (values[0] == null) return null
    const session = toSession(sessionId, values)
    return isExpired(session, now) ? null : session
  }

  async reauthenticate(sessionId: string, authTime: number, amr: string[], now: number): Promise<boolean> {
    const changed = await this.#redis.latchkeySessionReauthenticate(
      this.key(sessionId),
      String(authTime),
      JSON.stringify(amr),
      String(now),
    )
    return changed === 1
  }

  async getWithProfile(
    sessionId: string,
    now: number,
  ): Promise<{ session: StoredSession; profile: CachedProfile } | null> {
    const values = await this.#redis.hmget(this.key(sessionId), ...SESSION_FIELDS, 'profile', 'pv')
    if (values[0] == null) return null
    const session = toSession(sessionId, values)
    if (isExpired(session, now)) return null
    const [json = null, version = null] = values.slice(SESSION_FIELDS.length)
    return { session, profile: { json, version: version ?? '0' } }
  }

  async cacheProfile(sessionId: string, version: string, json: string): Promise<boolean> {
    return (await this.#redis.latchkeySessionCacheProfile(this.key(sessionId), version, json)) === 1
  }

  async userChanged(sessionId: string, roles: string[] | null): Promise<boolean> {
    const encoded = roles ? JSON.stringify(roles) : ''
    return (await this.#redis.latchkeySessionUserChanged(this.key(sessionId), encoded)) === 1
  }

  async revoke(sessionId: string): Promise<boolean> {
    return (await this.#redis.del(this.key(sessionId))) > 0
  }

  async ping(): Promise<void> {
    await this.#redis.ping()
  }

  async close(): Promise<void> {}
}
