import { mkdir } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { inArray, type SQL, sql } from 'drizzle-orm'
import type { PgColumn, PgDatabase, PgQueryResultHKT, PgTable } from 'drizzle-orm/pg-core'
import * as schema from './schema.js'

/** The drizzle handle every repository takes: the same API over postgres.js and PGlite. */
export type Database = PgDatabase<PgQueryResultHKT, typeof schema>

/**
 * Deletes at most `batch` rows of `table` that match `where`, chosen by their key column `id`,
 * so that retention never holds a table for long; answers how many went.
 */
export async function deleteBatch(
  db: Database,
  table: PgTable,
  id: PgColumn,
  where: SQL,
  batch: number,
): Promise<number> {
  const chosen = db.select({ id }).from(table).where(where).limit(batch)
  const rows = await db.delete(table).where(inArray(id, chosen)).returning({ id })
  return rows.length
}

export interface DatabaseHandle {
  db: Database
  kind: 'postgres' | 'pglite'
  /** Applies the migrations in drizzle/ (serialised across instances by an advisory lock). */
  migrate(): Promise<void>
  /** Round-trip check for /readyz. */
  ping(): Promise<void>
  close(): Promise<void>
}

export const MIGRATIONS_FOLDER = fileURLToPath(new URL('../../drizzle', import.meta.url))

/** An arbitrary constant: the advisory lock that serialises migrations of concurrent instances. */
const MIGRATION_LOCK_ID = 7_361_492_008

export interface OpenDatabaseOptions {
  /** PostgreSQL URL; when absent, PGlite in `dataDir`. */
  url?: string | undefined
  dataDir: string
  /** Pool size for postgres.js. */
  maxConnections?: number
}

/** Opens PostgreSQL (postgres.js) when a URL is given, else PGlite stored in `dataDir/pglite`. */
export async function openDatabase(options: OpenDatabaseOptions): Promise<DatabaseHandle> {
  if (options.url) return openPostgres(options.url, options.maxConnections ?? 10)
  return openPglite(resolve(options.dataDir))
}

async function openPostgres(url: string, max: number): Promise<DatabaseHandle> {
  const { default: postgres } = await import('postgres')
  const { drizzle } = await import('drizzle-orm/postgres-js')
  const { migrate } = await import('drizzle-orm/postgres-js/migrator')
  const client = postgres(url, {
    max,
    connect_timeout: 5,
    idle_timeout: 60,
    max_lifetime: 60 * 30,
    onnotice: () => {},
    connection: { application_name: 'latchkey', statement_timeout: 10_000 },
  })
  const db = drizzle(client, { schema })
  return {
    db: db as unknown as Database,
    kind: 'postgres',
    async migrate() {
      // One single-connection client holds the session-level lock for the whole run.
      const locked = postgres(url, { max: 1, connect_timeout: 5, onnotice: () => {} })
      try {
        await locked`select pg_advisory_lock(${MIGRATION_LOCK_ID})`
        await migrate(drizzle(locked, { schema }), { migrationsFolder: MIGRATIONS_FOLDER })
      } finally {
        await locked.end({ timeout: 5 })
      }
    },
    async ping() {
      await db.execute(sql`select 1`)
    },
    async close() {
      await client.end({ timeout: 5 })
    },
  }
}

async function openPglite(dataDir: string): Promise<DatabaseHandle> {
  const { PGlite } = await import('@electric-sql/pglite')
  const { drizzle } = await import('drizzle-orm/pglite')
  const { migrate } = await import('drizzle-orm/pglite/migrator')
  const directory = dataDir.endsWith(':memory:') ? undefined : join(dataDir, 'pglite')
  if (directory) await mkdir(directory, { recursive: true })
  const client = directory ? new PGlite(directory) : new PGlite()
  await client.waitReady
  const db = drizzle(client, { schema })
  return {
    db: db as unknown as Database,
    kind: 'pglite',
    async migrate() {
      await migrate(db, { migrationsFolder: MIGRATIONS_FOLDER })
    },
    async ping() {
      await client.query('select 1')
    },
    async close() {
      await client.close()
    },
  }
}
