import { sql } from 'drizzle-orm'
import { boolean, index, jsonb, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core'

const createdAt = () => timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow()
const at = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' })

/** Accounts. Emails are unique without regard to case (a unique index on lower(email)). */
export const users = pgTable(
  'users',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    email: text('email').notNull(),
    passwordHash: text('password_hash'),
    emailVerifiedAt: at('email_verified_at'),
    roles: text('roles').array().notNull().default(sql`'{user}'::text[]`),
    disabledAt: at('disabled_at'),
    lastLoginAt: at('last_login_at'),
    /** The active TOTP secret, sealed with KEY_ENCRYPTION_KEY; null without MFA. */
    totpSecretSealed: text('totp_secret_sealed'),
    totpEnabledAt: at('totp_enabled_at'),
    /** An enrolment not yet proven by a code (replaced by each new enrolment). */
    totpPendingSealed: text('totp_pending_sealed'),
    createdAt: createdAt(),
    updatedAt: at('updated_at')
      .notNull()
      .defaultNow()
      .$onUpdate(() => new Date()),
  },
  (table) => [uniqueIndex('users_email_lower_key').on(sql`lower(${table.email})`)],
)

/**
 * The durable record of a session: its list entry and its revocation. The refresh-token
 * rotation state lives in the session store (Redis or in-process), keyed by the same id.
 */
export const sessions = pgTable(
  'sessions',
  {
    id: uuid('id').primaryKey(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    createdAt: createdAt(),
    lastUsedAt: at('last_used_at').notNull().defaultNow(),
    idleExpiresAt: at('idle_expires_at').notNull(),
    expiresAt: at('expires_at').notNull(),
    remember: boolean('remember').notNull(),
    ip: text('ip'),
    userAgent: text('user_agent'),
    scope: text('scope').notNull(),
    amr: text('amr').array().notNull(),
    authTime: at('auth_time').notNull(),
    revokedAt: at('revoked_at'),
    revokedReason: text('revoked_reason'),
  },
  (table) => [
    index('sessions_user_id_idx').on(table.userId, table.createdAt),
    // Retention deletes list entries by absolute expiry.
    index('sessions_expires_at_idx').on(table.expiresAt),
  ],
)

/** Signing keys: public JWK in clear, private JWK sealed with KEY_ENCRYPTION_KEY (AES-256-GCM). */
export const signingKeys = pgTable(
  'signing_keys',
  {
    kid: text('kid').primaryKey(),
    alg: text('alg').notNull(),
    publicJwk: jsonb('public_jwk').notNull().$type<Record<string, unknown>>(),
    privateJwkSealed: text('private_jwk_sealed').notNull(),
    createdAt: createdAt(),
    activatesAt: at('activates_at').notNull(),
    retiredAt: at('retired_at'),
  },
  (table) => [index('signing_keys_activates_at_idx').on(table.activatesAt)],
)

/** Single-use email tokens (verification, password reset), stored as SHA-256 hashes. */
export const emailTokens = pgTable(
  'email_tokens',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    purpose: text('purpose').$type<'verify_email' | 'reset_password'>().notNull(),
    tokenHash: text('token_hash').notNull(),
    createdAt: createdAt(),
    expiresAt: at('expires_at').notNull(),
    usedAt: at('used_at'),
  },
  (table) => [
    uniqueIndex('email_tokens_token_hash_key').on(table.tokenHash),
    index('email_tokens_user_purpose_idx').on(table.userId, table.purpose),
  ],
)

/** The audit log. `user_id` has no foreign key on purpose: events outlive deleted accounts. */
export const auditEvents = pgTable(
  'audit_events',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    type: text('type').notNull(),
    // Milliseconds, as JavaScript dates hold them, so a page cursor names an event exactly.
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date', precision: 3 })
      .notNull()
      .defaultNow(),
    actorId: uuid('actor_id'),
    userId: uuid('user_id'),
    ip: text('ip'),
    userAgent: text('user_agent'),
    requestId: text('request_id'),
    outcome: text('outcome').$type<'success' | 'failure'>().notNull(),
    details: jsonb('details').notNull().$type<Record<string, unknown>>().default({}),
  },
  (table) => [
    index('audit_events_created_idx').on(table.createdAt, table.id),
    index('audit_events_user_idx').on(table.userId, table.createdAt),
    index('audit_events_type_idx').on(table.type, table.createdAt),
  ],
)

/** MFA recovery codes: ten per set, single use, stored as SHA-256 hashes. */
export const recoveryCodes = pgTable(
  'recovery_codes',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    codeHash: text('code_hash').notNull(),
    createdAt: createdAt(),
    usedAt: at('used_at'),
  },
  (table) => [
    index('recovery_codes_user_idx').on(table.userId),
    uniqueIndex('recovery_codes_hash_key').on(table.userId, table.codeHash),
  ],
)

/**
 * Identities at OpenID Providers linked to accounts, keyed on the provider's (`iss`, `sub`):
 * never on email, which a provider may let its users change. One per provider per account.
 */
export const identities = pgTable(
  'identities',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    /** The configured provider id (`OIDC_PROVIDERS[].id`). */
    provider: text('provider').notNull(),
    issuer: text('issuer').notNull(),
    subject: text('subject').notNull(),
    /** The email the provider asserted when the identity was linked (informational). */
    email: text('email'),
    createdAt: createdAt(),
    lastLoginAt: at('last_login_at'),
  },
  (table) => [
    uniqueIndex('identities_issuer_subject_key').on(table.issuer, table.subject),
    uniqueIndex('identities_user_provider_key').on(table.userId, table.provider),
  ],
)
