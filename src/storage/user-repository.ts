import { and, asc, eq, type SQL, sql } from 'drizzle-orm'
import type { Database } from './database.js'
import { users } from './schema.js'

export type UserRow = typeof users.$inferSelect

/** Reads and writes the users table. Emails are matched without regard to case. */
export class UserRepository {
  constructor(private readonly db: Database) {}

  async findById(id: string): Promise<UserRow | undefined> {
    const [row] = await this.db.select().from(users).where(eq(users.id, id)).limit(1)
    return row
  }

  /**
   * The user with what GET /v1/me shows besides: unused recovery codes and linked identities,
   * in one round trip (the endpoint is on every app's start-up path).
   */
  async findProfile(
    id: string,
  ): Promise<
    | { user: UserRow; recoveryCodesLeft: number; identities: { provider: string; subject: string }[] }
    | undefined
  > {
    const [row] = await this.db
      .select({
        user: users,
        recoveryCodesLeft: sql<number>`(select count(*)::int from recovery_codes where recovery_codes.user_id = "users"."id" and recovery_codes.used_at is null)`,
        identities: sql<
          { provider: string; subject: string }[]
        >`coalesce((select json_agg(json_build_object('provider', identities.provider, 'subject', identities.subject) order by identities.created_at, identities.provider) from identities where identities.user_id = "users"."id"), '[]'::json)`,
      })
      .from(users)
      .where(eq(users.id, id))
      .limit(1)
    if (!row) return undefined
    return { user: row.user, recoveryCodesLeft: Number(row.recoveryCodesLeft), identities: row.identities }
  }

  async findByEmail(email: string): Promise<UserRow | undefined> {
    const [row] = await this.db
      .select()
      .from(users)
      .where(sql`lower(${users.email}) = lower(${email})`)
      .limit(1)
    return row
  }

  /** Inserts a user; returns undefined when the email is taken (no error, no partial write). */
  async insert(values: {
    email: string
    passwordHash: string | null
    roles?: string[]
    emailVerifiedAt?: Date | null
  }): Promise<UserRow | undefined> {
    const [row] = await this.db.insert(users).values(values).onConflictDoNothing().returning()
    return row
  }

  async update(
    id: string,
    values: Partial<
      Pick<
        UserRow,
        | 'passwordHash'
        | 'emailVerifiedAt'
        | 'roles'
        | 'disabledAt'
        | 'lastLoginAt'
        | 'totpSecretSealed'
        | 'totpEnabledAt'
        | 'totpPendingSealed'
      >
    >,
  ): Promise<UserRow | undefined> {
    const [row] = await this.db.update(users).set(values).where(eq(users.id, id)).returning()
    return row
  }

  /**
   * A page of users in a stable order (lower-cased email, unique), optionally those whose email
   * starts with `emailPrefix`, after the email `after` (the cursor). One more row than `limit`
   * tells the caller that another page exists.
   */
  async search(filter: {
    emailPrefix?: string | undefined
    after?: string | undefined
    limit: number
  }): Promise<UserRow[]> {
    const conditions: SQL[] = []
    if (filter.emailPrefix)
      conditions.push(sql`lower(${users.email}) like ${`${escapeLike(filter.emailPrefix.toLowerCase())}%`}`)
    if (filter.after) conditions.push(sql`lower(${users.email}) > ${filter.after}`)
    return this.db
      .select()
      .from(users)
      .where(conditions.length > 0 ? and(...conditions) : undefined)
      .orderBy(asc(sql`lower(${users.email})`))
      .limit(filter.limit + 1)
  }

  async delete(id: string): Promise<void> {
    await this.db.delete(users).where(eq(users.id, id))
  }
}

/** `value` with LIKE's wildcards escaped, so a search for `a_b` means exactly that. */
function escapeLike(value: string): string {
  return value.replace(/[\\%_]/g, (character) => `\\${character}`)
}
