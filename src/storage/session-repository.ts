import { and, desc, eq, gt, isNull, lt, ne } from 'drizzle-orm'
import { type Database, deleteBatch } from './database.js'
import { sessions } from './schema.js'

export type SessionRow = typeof sessions.$inferSelect
export type NewSessionRow = typeof sessions.$inferInsert

/** The durable list entries of sessions (the rotation state is in the session store). */
export class SessionRepository {
  constructor(private readonly db: Database) {}

  async insert(row: NewSessionRow): Promise<void> {
    await this.db.insert(sessions).values(row)
  }

  async findById(id: string): Promise<SessionRow | undefined> {
    const [row] = await this.db.select().from(sessions).where(eq(sessions.id, id)).limit(1)
    return row
  }

  /** Records a refresh: the list shows it, and the idle expiry moves. */
  async touch(id: string, lastUsedAt: Date, idleExpiresAt: Date): Promise<void> {
    await this.db.update(sessions).set({ lastUsedAt, idleExpiresAt }).where(eq(sessions.id, id))
  }

  /** Records a re-authentication on the list entry. */
  async setAuthentication(id: string, authTime: Date, amr: string[]): Promise<void> {
    await this.db.update(sessions).set({ authTime, amr }).where(eq(sessions.id, id))
  }

  /** Marks a session revoked; returns false when it already was (or does not exist). */
  async markRevoked(id: string, at: Date, reason: string): Promise<boolean> {
    const rows = await this.db
      .update(sessions)
      .set({ revokedAt: at, revokedReason: reason })
      .where(and(eq(sessions.id, id), isNull(sessions.revokedAt)))
      .returning({ id: sessions.id })
    return rows.length > 0
  }

  /** The user's sessions that are neither revoked nor expired, newest first. */
  async listLive(userId: string, now: Date): Promise<SessionRow[]> {
    return this.db
      .select()
      .from(sessions)
      .where(
        and(
          eq(sessions.userId, userId),
          isNull(sessions.revokedAt),
          gt(sessions.expiresAt, now),
          gt(sessions.idleExpiresAt, now),
        ),
      )
      .orderBy(desc(sessions.createdAt), desc(sessions.id))
  }

  /**
   * Ids of the user's sessions that may still be live (not revoked, not past their absolute
   * expiry), optionally all but one. Sessions that ended by expiring are never marked revoked,
   * so without the expiry bound this list would hold every session the user ever had.
   */
  async listOpenIds(userId: string, now: Date, except?: string): Promise<string[]> {
    const rows = await this.db
      .select({ id: sessions.id })
      .from(sessions)
      .where(
        and(
          eq(sessions.userId, userId),
          isNull(sessions.revokedAt),
          gt(sessions.expiresAt, now),
          except ? ne(sessions.id, except) : undefined,
        ),
      )
    return rows.map((row) => row.id)
  }

  /**
   * Deletes list entries of sessions whose absolute expiry is before `cutoff` (revoked ones
   * included: every session has one), at most `batch` at a time; returns how many went.
   */
  async deleteExpiredBefore(cutoff: Date, batch: number): Promise<number> {
    return deleteBatch(this.db, sessions, sessions.id, lt(sessions.expiresAt, cutoff), batch)
  }

  /** Marks every session without rotation state as revoked (the in-process store lost it). */
  async revokeAllUnrevoked(at: Date, reason: string): Promise<number> {
    const rows = await this.db
      .update(sessions)
      .set({ revokedAt: at, revokedReason: reason })
      .where(isNull(sessions.revokedAt))
      .returning({ id: sessions.id })
    return rows.length
  }
}
