import { asc, inArray, isNull, sql } from 'drizzle-orm'
import type { Database } from './database.js'
import { signingKeys } from './schema.js'

export type SigningKeyRow = typeof signingKeys.$inferSelect
export type NewSigningKeyRow = typeof signingKeys.$inferInsert

/** An arbitrary constant: serialises key creation across instances (first key, timed rotation). */
const KEY_LOCK_ID = 7_361_492_009

/** Reads and writes the signing_keys table. */
export class SigningKeyRepository {
  constructor(private readonly db: Database) {}

  /** Every key not yet marked retired, oldest activation first. */
  async listLive(): Promise<SigningKeyRow[]> {
    return this.db
      .select()
      .from(signingKeys)
      .where(isNull(signingKeys.retiredAt))
      .orderBy(asc(signingKeys.activatesAt))
  }

  /** Every key, retired ones included, oldest activation first. */
  async listAll(): Promise<SigningKeyRow[]> {
    return this.db.select().from(signingKeys).orderBy(asc(signingKeys.activatesAt))
  }

  async insert(row: NewSigningKeyRow): Promise<void> {
    await this.db.insert(signingKeys).values(row)
  }

  /**
   * Runs `decide` under a transaction-scoped advisory lock with the live keys, and inserts the
   * key it returns (if any). Concurrent instances therefore never both create a first key, or
   * both perform the same timed rotation.
   */
  async insertUnderLock(
    decide: (live: SigningKeyRow[]) => Promise<NewSigningKeyRow | null>,
  ): Promise<NewSigningKeyRow | null> {
    return this.db.transaction(async (tx) => {
      await tx.execute(sql`select pg_advisory_xact_lock(${KEY_LOCK_ID})`)
      const live = await tx
        .select()
        .from(signingKeys)
        .where(isNull(signingKeys.retiredAt))
        .orderBy(asc(signingKeys.activatesAt))
      const row = await decide(live)
      if (row) await tx.insert(signingKeys).values(row)
      return row
    })
  }

  async markRetired(kids: string[], at: Date): Promise<void> {
    if (kids.length === 0) return
    await this.db
      .update(signingKeys)
      .set({ retiredAt: at })
      .where(sql`${inArray(signingKeys.kid, kids)} and ${isNull(signingKeys.retiredAt)}`)
  }
}
