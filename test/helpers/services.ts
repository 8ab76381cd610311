/**
 * Which real services the suite runs against. With TEST_DATABASE_URL / TEST_REDIS_URL (or
 * DATABASE_URL / REDIS_URL) set, tests use PostgreSQL and Redis; else PGlite and the in-process
 * store. Each test makes its own database and key prefix and removes them when it ends.
 */
export const testDatabaseUrl: string | undefined = process.env.TEST_DATABASE_URL || process.env.DATABASE_URL
export const testRedisUrl: string | undefined = process.env.TEST_REDIS_URL || process.env.REDIS_URL
