import { and, count, eq, isNull } from 'drizzle-orm'
import type { Database } from './database.js'
import { recoveryCodes } from './schema.js'

/** MFA recovery codes, stored as hashes. */
export class RecoveryCodeRepository {
  constructor(private readonly db: Database) {}

  /** Replaces the user's whole set (the old codes stop working). */
  async replaceSet(userId: string, codeHashes: string[]): Promise<void> {
    await this.db.transaction(async (tx) => {
      await tx.delete(recoveryCodes).where(eq(recoveryCodes.userId, userId))
      await tx.insert(recoveryCodes).values(codeHashes.map((codeHash) => ({ userId, codeHash })))
    })
  }

  /** Spends an unused code; false when there is none with this hash (one UPDATE: no double use). */
  async consume(userId: string, codeHash: string, now: Date): Promise<boolean> {
    const rows = await this.db
      .update(recoveryCodes)
      .set({ usedAt: now })
      .where(
        and(
          eq(recoveryCodes.userId, userId),
          eq(recoveryCodes.codeHash, codeHash),
          isNull(recoveryCodes.usedAt),
        ),
      )
      .returning({ id: recoveryCodes.id })
    return rows.length > 0
  }

  async countUnused(userId: string): Promise<number> {
    const [row] = await this.db
      .select({ value: count() })
      .from(recoveryCodes)
      .where(and(eq(recoveryCodes.userId, userId), isNull(recoveryCodes.usedAt)))
    return Number(row?.value ?? 0)
  }

  async deleteAll(userId: string): Promise<void> {
    await this.db.delete(recoveryCodes).where(eq(recoveryCodes.userId, userId))
  }
}
