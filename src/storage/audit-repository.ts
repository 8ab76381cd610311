import { and, desc, eq, gte, lt, lte, type SQL, sql } from 'drizzle-orm'
import { type Database, deleteBatch } from './database.js'
import { auditEvents } from './schema.js'

export type AuditEventRow = typeof auditEvents.$inferSelect
export type NewAuditEventRow = typeof auditEvents.$inferInsert

/** Appends to and reads the audit log. */
export class AuditRepository {
  constructor(private readonly db: Database) {}

  async insert(row: NewAuditEventRow): Promise<void> {
    await this.db.insert(auditEvents).values(row)
  }

  /**
   * A page of events, newest first (time, then id), filtered by user, type and time range,
   * strictly before the cursor `before`. One more row than `limit` tells that another page exists.
   */
  async page(filter: {
    userId?: string | undefined
    type?: string | undefined
    since?: Date | undefined
    until?: Date | undefined
    before?: { createdAt: Date; id: string } | undefined
    limit: number
  }): Promise<AuditEventRow[]> {
    const conditions: SQL[] = []
    if (filter.userId) conditions.push(eq(auditEvents.userId, filter.userId))
    if (filter.type) conditions.push(eq(auditEvents.type, filter.type))
    if (filter.since) conditions.push(gte(auditEvents.createdAt, filter.since))
    if (filter.until) conditions.push(lte(auditEvents.createdAt, filter.until))
    if (filter.before)
      conditions.push(
        sql`(${auditEvents.createdAt}, ${auditEvents.id}) < (${filter.before.createdAt.toISOString()}::timestamptz, ${filter.before.id}::uuid)`,
      )
    return this.db
      .select()
      .from(auditEvents)
      .where(conditions.length > 0 ? and(...conditions) : undefined)
      .orderBy(desc(auditEvents.createdAt), desc(auditEvents.id))
      .limit(filter.limit + 1)
  }

  /** Deletes events older than `cutoff`, at most `batch` at a time; returns how many went. */
  async deleteOlderThan(cutoff: Date, batch: number): Promise<number> {
    return deleteBatch(this.db, auditEvents, auditEvents.id, lt(auditEvents.createdAt, cutoff), batch)
  }

  /** Newest first, filtered by user and type. */
  async list(filter: { userId?: string; type?: string; limit: number }): Promise<AuditEventRow[]> {
    const conditions: SQL[] = []
    if (filter.userId) conditions.push(eq(auditEvents.userId, filter.userId))
    if (filter.type) conditions.push(eq(auditEvents.type, filter.type))
    return this.db
      .select()
      .from(auditEvents)
      .where(conditions.length > 0 ? and(...conditions) : undefined)
      .orderBy(desc(auditEvents.createdAt), desc(auditEvents.id))
      .limit(filter.limit)
  }
}
