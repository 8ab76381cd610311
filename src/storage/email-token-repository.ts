import { and, eq, isNull, lt } from 'drizzle-orm'
import { type Database, deleteBatch } from './database.js'
import { emailTokens } from './schema.js'

export type EmailTokenPurpose = 'verify_email' | 'reset_password'
export type EmailTokenRow = typeof emailTokens.$inferSelect

/** Single-use email tokens, stored as hashes. */
export class EmailTokenRepository {
  constructor(private readonly db: Database) {}

  /** Stores a token and voids every older unused token of the same user and purpose. */
  async replace(values: { userId: string; purpose: EmailTokenPurpose; tokenHash: string; expiresAt: Date }) {
    await this.db.transaction(async (tx) => {
      await tx
        .update(emailTokens)
        .set({ usedAt: new Date() })
        .where(
          and(
            eq(emailTokens.userId, values.userId),
            eq(emailTokens.purpose, values.purpose),
            isNull(emailTokens.usedAt),
          ),
        )
      await tx.insert(emailTokens).values(values)
    })
  }

  /**
   * Spends the token with this hash and purpose if it is unused and unexpired; returns its user
   * id, or undefined. One UPDATE, so two concurrent uses cannot both succeed.
   */
  async consume(purpose: EmailTokenPurpose, tokenHash: string, now: Date): Promise<string | undefined> {
    const [row] = await this.db
      .update(emailTokens)
      .set({ usedAt: now })
      .where(
        and(
          eq(emailTokens.tokenHash, tokenHash),
          eq(emailTokens.purpose, purpose),
          isNull(emailTokens.usedAt),
        ),
      )
      .returning()
    if (!row) return undefined
    return row.expiresAt.getTime() > now.getTime() ? row.userId : undefined
  }

  /** The token's row when it is unused and unexpired, without spending it (hosted pages). */
  async peek(purpose: EmailTokenPurpose, tokenHash: string, now: Date): Promise<EmailTokenRow | undefined> {
    const [row] = await this.db
      .select()
      .from(emailTokens)
      .where(
        and(
          eq(emailTokens.tokenHash, tokenHash),
          eq(emailTokens.purpose, purpose),
          isNull(emailTokens.usedAt),
        ),
      )
      .limit(1)
    return row && row.expiresAt.getTime() > now.getTime() ? row : undefined
  }

  /** Deletes tokens that expired before `cutoff`, used or not, at most `batch` at a time. */
  async deleteExpiredBefore(cutoff: Date, batch: number): Promise<number> {
    return deleteBatch(this.db, emailTokens, emailTokens.id, lt(emailTokens.expiresAt, cutoff), batch)
  }
}
