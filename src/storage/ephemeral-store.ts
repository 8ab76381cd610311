import type { RedisClient } from './redis-client.js'

/**
 * Short-lived values shared by every instance (Redis) or kept in-process (embedded default):
 * MFA challenges and the TOTP codes already used. Every key expires by itself.
 */
export interface EphemeralStore {
  /** Stores `value` under `key` for `ttlMs` unless the key exists; true when stored. */
  setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean>
  get(key: string): Promise<string | null>
  /** Removes and returns the value in one step: a value can be taken once. */
  take(key: string): Promise<string | null>
  /** Adds one to the counter at `key` (created with `ttlMs`); returns the new count. */
  increment(key: string, ttlMs: number): Promise<number>
  delete(...keys: string[]): Promise<void>
}

/** The in-process EphemeralStore. */
export class MemoryEphemeralStore implements EphemeralStore {
  readonly #entries = new Map<string, { value: string; expiresAt: number }>()

  async setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean> {
    if (this.#live(key)) return false
    this.#entries.set(key, { value, expiresAt: Date.now() + ttlMs })
    this.#sweepSometimes()
    return true
  }

  async get(key: string): Promise<string | null> {
    return this.#live(key)?.value ?? null
  }

  async take(key: string): Promise<string | null> {
    const entry = this.#live(key)
    this.#entries.delete(key)
    return entry?.value ?? null
  }

  async increment(key: string, ttlMs: number): Promise<number> {
    const entry = this.#live(key)
    const count = Number(entry?.value ?? 0) + 1
    this.#entries.set(key, { value: String(count), expiresAt: entry?.expiresAt ?? Date.now() + ttlMs })
    return count
  }

  async delete(...keys: string[]): Promise<void> {
    for (const key of keys) this.#entries.delete(key)
  }

  #live(key: string) {
    const entry = this.#entries.get(key)
    if (entry && entry.expiresAt <= Date.now()) {
      this.#entries.delete(key)
      return undefined
    }
    return entry
  }

  #sweepSometimes(): void {
    if (this.#entries.size < 10_000) return
    const now = Date.now()
    for (const [key, entry] of this.#entries) if (entry.expiresAt <= now) this.#entries.delete(key)
  }
}

/** The Redis EphemeralStore; `prefix` namespaces the keys. */
export class RedisEphemeralStore implements EphemeralStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
  ) {}

  async setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean> {
    return (await this.redis.set(this.prefix + key, value, 'PX', ttlMs, 'NX')) === 'OK'
  }

  async get(key: string): Promise<string | null> {
    return this.redis.get(this.prefix + key)
  }

  async take(key: string): Promise<string | null> {
    return this.redis.getdel(this.prefix + key)
  }

  async increment(key: string, ttlMs: number): Promise<number> {
    const full = this.prefix + key
    const results = await this.redis.multi().incr(full).pexpire(full, ttlMs, 'NX').exec()
    const [error, count] = results?.[0] ?? [new Error('no reply'), 0]
    if (error) throw error
    return Number(count)
  }

  /** One DEL per key: keys in different Cluster slots cannot share a command. */
  async delete(...keys: string[]): Promise<void> {
    await Promise.all(keys.map((key) => this.redis.del(this.prefix + key)))
  }
}
