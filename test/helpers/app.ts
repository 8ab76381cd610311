import { randomUUID } from 'node:crypto'
import { Writable } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import pino from 'pino'
import postgres from 'postgres'
import type { Test } from 'tap'
import { buildApp, loggerOptions, serializers } from '../../src/app.js'
import { type Config, loadConfig } from '../../src/config.js'
import type { Clock } from '../../src/domain/clock.js'
import { STRONG_PASSWORD } from './flows.js'
import { testDatabaseUrl, testRedisUrl } from './services.js'

/** Limits high enough that only the tests about rate limiting ever meet them. */
export const RELAXED_RATE_LIMITS = {
  RATE_LIMIT_LOGIN_IP: '100000/minute',
  RATE_LIMIT_LOGIN_ACCOUNT: '100000/minute',
  RATE_LIMIT_EMAIL_IP: '100000/hour',
  RATE_LIMIT_EMAIL_ACCOUNT: '100000/hour',
  RATE_LIMIT_DEFAULT: '100000/minute',
}

/** A 32-byte key for tests (never a real one). */
export const TEST_KEY_ENCRYPTION_KEY = 'a'.repeat(64)

/** Every log line the app wrote during a test, for assertions on what logs must never hold. */
export class LogCapture extends Writable {
  readonly lines: string[] = []
  override _write(chunk: Buffer, _encoding: string, callback: () => void) {
    this.lines.push(...chunk.toString('utf8').split('\n').filter(Boolean))
    callback()
  }
  get text(): string {
    return this.lines.join('\n')
  }
}

/** A clock the test moves by hand. */
export class TestClock implements Clock {
  constructor(public current = Date.now()) {}
  now(): number {
    return this.current
  }
  advance(seconds: number): void {
    this.current += seconds * 1000
  }
}

export interface TestApp {
  app: FastifyInstance
  config: Config
  logs: LogCapture
  /** Database URL of the test's own database (undefined with PGlite). */
  databaseUrl: string | undefined
  redisPrefix: string
}

/**
 * Creates an empty PostgreSQL database for one test when TEST_DATABASE_URL is set and drops it
 * at teardown; returns undefined (PGlite in memory) otherwise.
 */
export async function createTestDatabase(t: Test): Promise<string | undefined> {
  if (!testDatabaseUrl) return undefined
  const name = `latchkey_test_${randomUUID().replaceAll('-', '')}`
  const admin = postgres(testDatabaseUrl, { max: 1, onnotice: () => {} })
  await admin.unsafe(`create database ${name}`)
  await admin.end()
  t.teardown(async () => {
    const cleanup = postgres(testDatabaseUrl!, { max: 1, onnotice: () => {} })
    try {
      await cleanup.unsafe(`drop database if exists ${name} with (force)`)
    } finally {
      await cleanup.end()
    }
  })
  const url = new URL(testDatabaseUrl)
  url.pathname = `/${name}`
  return url.toString()
}

/** Removes every Redis key under `prefix`. */
export async function deleteRedisPrefix(prefix: string): Promise<void> {
  if (!testRedisUrl) return
  const { Redis } = await import('ioredis')
  const redis = new Redis(testRedisUrl)
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500)
    cursor = next
    if (keys.length > 0) await redis.del(...keys)
  } while (cursor !== '0')
  await redis.quit()
}

/**
 * Builds the app for one test on its own database and Redis prefix, with `env` over the
 * defaults; closes it and removes its data at teardown.
 */
export async function build(
  t: Test,
  env: Record<string, string> = {},
  overrides: {
    clock?: Clock
    databaseUrl?: string
    redisPrefix?: string
    dataDir?: string
    /** Run the periodic key-table refresh, as a server does (off by default: tests drive it). */
    keyRefresh?: boolean
  } = {},
): Promise<TestApp> {
  const databaseUrl = overrides.databaseUrl ?? (await createTestDatabase(t))
  const redisPrefix = overrides.redisPrefix ?? `lktest:${randomUUID()}:`
  const config = loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: 'debug',
    DATA_DIR: overrides.dataDir ?? t.testdir(),
    KEY_ENCRYPTION_KEY: TEST_KEY_ENCRYPTION_KEY,
    ISSUER: 'http://latchkey.test',
    // Tests sign many users up from one address; the rate-limit tests set their own limits.
    ...RELAXED_RATE_LIMITS,
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
    ...(testRedisUrl ? { REDIS_URL: testRedisUrl } : {}),
    REDIS_KEY_PREFIX: redisPrefix,
    ...env,
  })
  const logs = new LogCapture()
  const logger = pino({ ...loggerOptions(config), serializers }, logs)
  const app = await buildApp(config, {
    logger,
    keyRefresh: overrides.keyRefresh ?? false,
    ...(overrides.clock ? { clock: overrides.clock } : {}),
  })
  t.teardown(async () => {
    // A failing test shows what the app logged at warn and above.
    if (!t.passing()) {
      for (const line of logs.lines) if (JSON.parse(line).level >= 40) t.comment(line.slice(0, 2000))
    }
    await app.close()
    if (!overrides.redisPrefix) await deleteRedisPrefix(redisPrefix)
    // Across the whole suite: no access token, refresh token or test password in any log line.
    // (Thrown, not asserted: the test has ended; tap reports a teardown error as a failure.)
    const leaks = [
      [/eyJ[A-Za-z0-9_-]{10,}\.eyJ/, 'an access token'],
      [/[0-9a-f-]{36}\.[A-Za-z0-9_-]{43}/, 'a refresh token'],
      [new RegExp(STRONG_PASSWORD), 'the test password'],
      [/\$argon2id\$/, 'a password hash'],
    ] as const
    for (const [pattern, what] of leaks) {
      if (pattern.test(logs.text)) {
        console.error(
          'LEAK',
          what,
          logs.lines.filter((l) => pattern.test(l)).map((l) => l.slice(0, 600)),
        )
        throw new Error(`${what} reached the logs`)
      }
    }
  })
  return { app, config, logs, databaseUrl, redisPrefix }
}
