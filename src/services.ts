import { randomBytes } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import type { Config } from './config.js'
import { decodeKeyEncryptionKey } from './config.js'
import { AccessTokenIssuer } from './domain/access-tokens.js'
import { AccountService } from './domain/accounts.js'
import { Administration } from './domain/admin.js'
import { AuditLog } from './domain/audit.js'
import { type Clock, systemClock } from './domain/clock.js'
import { LoginCooldown } from './domain/cooldown.js'
import { KeyRing } from './domain/key-ring.js'
import { MfaService } from './domain/mfa.js'
import { OidcProviders } from './domain/oidc-providers.js'
import { Outbox } from './domain/outbox.js'
import { PasswordHasher } from './domain/password-hasher.js'
import { Retention } from './domain/retention.js'
import { SessionService } from './domain/sessions.js'
import { SignInGate } from './domain/sign-in.js'
import { SocialLogin } from './domain/social-login.js'
import { DependencyUnavailableError } from './errors.js'
import { createMailer, type Mailer } from './mail/mailer.js'
import * as templates from './mail/templates.js'
import { Metrics } from './metrics.js'
import { AuditRepository } from './storage/audit-repository.js'
import { type CooldownStore, MemoryCooldownStore, RedisCooldownStore } from './storage/cooldown-store.js'
import { type DatabaseHandle, openDatabase } from './storage/database.js'
import { EmailTokenRepository } from './storage/email-token-repository.js'
import { type EphemeralStore, MemoryEphemeralStore, RedisEphemeralStore } from './storage/ephemeral-store.js'
import { IdentityRepository } from './storage/identity-repository.js'
import { MemorySessionStore } from './storage/memory-session-store.js'
import { RecoveryCodeRepository } from './storage/recovery-code-repository.js'
import { createRedisClient, type RedisClient, redisConfigured, waitForRedis } from './storage/redis-client.js'
import { RedisSessionStore } from './storage/redis-session-store.js'
import { SessionRepository } from './storage/session-repository.js'
import type { SessionStore } from './storage/session-store.js'
import { SigningKeyRepository } from './storage/signing-key-repository.js'
import { UserRepository } from './storage/user-repository.js'

export interface ServiceLogger {
  info(object: unknown, message?: string): void
  warn(object: unknown, message?: string): void
  error(object: unknown, message?: string): void
}

export interface ServiceOverrides {
  clock?: Clock
  mailer?: Mailer
  /** Skip the periodic key-table refresh (tests drive it). */
  keyRefresh?: boolean
}

/** Everything the routes use, built once from the configuration (the composition root). */
export interface Services {
  config: Config
  clock: Clock
  database: DatabaseHandle
  redis: RedisClient | undefined
  store: SessionStore
  users: UserRepository
  keyRing: KeyRing
  accessTokens: AccessTokenIssuer
  audit: AuditLog
  outbox: Outbox
  hasher: PasswordHasher
  sessions: SessionService
  accounts: AccountService
  mfa: MfaService
  identities: IdentityRepository
  socialLogin: SocialLogin
  administration: Administration
  metrics: Metrics
  /** Deletes rows past their retention (run hourly by every instance). */
  retention: Retention
  /** Dependencies that /readyz checks. */
  readiness(): Promise<{ database: boolean; redis: boolean }>
  close(): Promise<void>
}

/** Opens storage, loads the key ring and wires the domain services. */
export async function createServices(
  config: Config,
  logger: ServiceLogger,
  overrides: ServiceOverrides = {},
): Promise<Services> {
  const clock = overrides.clock ?? systemClock
  const metrics = new Metrics()
  const closers: (() => Promise<void>)[] = []
  try {
    const database = await openDatabase({ url: config.DATABASE_URL, dataDir: config.DATA_DIR })
    closers.push(() => database.close())
    await database.migrate()

    let redis: RedisClient | undefined
    let store: SessionStore
    let cooldownStore: CooldownStore
    let ephemeral: EphemeralStore
    const redisPrefix = config.REDIS_KEY_PREFIX
    if (redisConfigured(config)) {
      redis = createRedisClient(config)
      const client = redis
      closers.push(async () => {
        client.disconnect()
      })
      await waitForRedis(client)
      store = guardStore(metrics, new RedisSessionStore(client, { prefix: redisPrefix }))
      cooldownStore = guardStore(metrics, new RedisCooldownStore(client, redisPrefix))
      ephemeral = guardStore(metrics, new RedisEphemeralStore(client, redisPrefix))
    } else {
      store = new MemorySessionStore()
      cooldownStore = new MemoryCooldownStore()
      ephemeral = new MemoryEphemeralStore()
    }
    closers.push(() => store.close())

    const db = database.db
    const users = new UserRepository(db)
    const sessionRows = new SessionRepository(db)
    if (store.kind === 'memory') {
      // The in-process store starts empty: sessions of an earlier process cannot be refreshed,
      // so their list entries must not look live.
      const ended = await sessionRows.revokeAllUnrevoked(new Date(clock.now()), 'restart')
      if (ended > 0)
        logger.warn({ sessions: ended }, 'in-process session store: sessions of the last run ended')
    }

    const encryptionKey = await keyEncryptionKey(config, logger)
    const keyRing = new KeyRing({
      repository: new SigningKeyRepository(db),
      encryptionKey,
      alg: config.SIGNING_ALG,
      clock,
      jwksMaxAgeSeconds: config.JWKS_MAX_AGE,
      accessTokenTtlSeconds: config.ACCESS_TOKEN_TTL,
      rotationIntervalSeconds: config.KEY_ROTATION_INTERVAL,
    })
    await keyRing.initialise()
    if (overrides.keyRefresh !== false) {
      // Re-read often enough that a key added elsewhere is published long before it signs.
      const every = Math.max(1, Math.min(30, Math.floor(config.JWKS_MAX_AGE / 10))) * 1000
      const timer = setInterval(() => {
        keyRing.refresh().catch((error: unknown) => logger.error({ err: error }, 'key ring refresh failed'))
      }, every)
      timer.unref()
      closers.push(async () => clearInterval(timer))
    }

    const mailer =
      overrides.mailer ??
      createMailer({ smtpUrl: config.SMTP_URL, from: config.MAIL_FROM, dataDir: config.DATA_DIR, logger })
    closers.push(() => mailer.close())
    const outbox = new Outbox(mailer, logger)
    closers.push(() => outbox.drain())

    const auditEvents = new AuditRepository(db)
    const audit = new AuditLog(auditEvents, logger)
    const emailTokens = new EmailTokenRepository(db)
    const retention = new Retention({
      auditEvents,
      sessions: sessionRows,
      emailTokens,
      auditRetentionDays: config.AUDIT_RETENTION_DAYS,
    })
    // Hourly, on every instance: the deletes are idempotent.
    const retentionTimer = setInterval(() => {
      retention
        .run(clock.now())
        .then((deleted) => {
          if (deleted.auditEvents + deleted.sessions + deleted.emailTokens > 0)
            logger.info({ deleted }, 'rows past retention deleted')
        })
        .catch((error: unknown) => logger.error({ err: error }, 'retention failed'))
    }, 3_600_000)
    retentionTimer.unref()
    closers.push(async () => clearInterval(retentionTimer))
    const hasher = new PasswordHasher({
      memoryKib: config.ARGON2_MEMORY_KIB,
      timeCost: config.ARGON2_TIME_COST,
      // Hashing is CPU-bound: leave a core for the event loop (token checks, refreshes).
      concurrency: config.ARGON2_CONCURRENCY ?? Math.max(1, Math.min(2, availableParallelism() - 1)),
      maxQueue: config.ARGON2_MAX_QUEUE,
      maxWaitMs: config.ARGON2_QUEUE_TIMEOUT * 1000,
      ...(config.PASSWORD_PEPPER ? { pepper: config.PASSWORD_PEPPER } : {}),
    })
    const accessTokens = new AccessTokenIssuer(
      keyRing,
      {
        issuer: config.ISSUER,
        audience: config.ACCESS_TOKEN_AUDIENCE,
        clientId: config.CLIENT_ID,
        ttlSeconds: config.ACCESS_TOKEN_TTL,
      },
      clock,
    )
    const sessions = new SessionService({
      store,
      sessions: sessionRows,
      users,
      accessTokens,
      audit,
      clock,
      lifetimes: {
        idle: config.SESSION_IDLE_TTL,
        absolute: config.SESSION_MAX_TTL,
        rememberIdle: config.REMEMBER_IDLE_TTL,
        rememberAbsolute: config.REMEMBER_MAX_TTL,
        reuseGrace: config.REFRESH_REUSE_GRACE,
      },
      onReuseDetected: (user) => outbox.send({ to: user.email, ...templates.sessionEndedByReuse() }),
      onRefresh: (outcome) => metrics.refresh(outcome),
    })
    const cooldown = new LoginCooldown(cooldownStore, clock)
    const mfa = new MfaService({
      users,
      recoveryCodes: new RecoveryCodeRepository(db),
      ephemeral,
      sessions,
      cooldown,
      audit,
      outbox,
      clock,
      encryptionKey,
      settings: { issuer: config.MFA_ISSUER, challengeTtl: config.MFA_TOKEN_TTL, appUrl: config.APP_URL },
    })
    const signIn = new SignInGate(mfa, sessions)
    const accounts = new AccountService({
      users,
      emailTokens,
      hasher,
      sessions,
      signIn,
      mfa,
      cooldown,
      audit,
      outbox,
      clock,
      settings: {
        appUrl: config.APP_URL,
        emailVerification: config.EMAIL_VERIFICATION,
        verifyTokenTtl: config.VERIFY_TOKEN_TTL,
        resetTokenTtl: config.RESET_TOKEN_TTL,
      },
    })

    metrics.observe({
      argon2Waiting: () => hasher.queueDepth,
      argon2InFlight: () => hasher.inFlight,
      signingKeyAgeSeconds: () => keyRing.signingKeyAgeSeconds(),
    })
    const administration = new Administration({ users, sessions, keyRing, audit, auditEvents, clock })
    const identities = new IdentityRepository(db)
    const socialLogin = new SocialLogin({
      providers: new OidcProviders(config.OIDC_PROVIDERS, { allowHttp: config.NODE_ENV !== 'production' }),
      ephemeral,
      users,
      identities,
      signIn,
      sessions,
      audit,
      clock,
      settings: { baseUrl: config.ISSUER, redirectAllowlist: config.REDIRECT_ALLOWLIST },
    })

    return {
      config,
      clock,
      database,
      redis,
      store,
      users,
      keyRing,
      accessTokens,
      audit,
      outbox,
      hasher,
      sessions,
      accounts,
      mfa,
      identities,
      socialLogin,
      administration,
      metrics,
      retention,
      async readiness() {
        const [databaseUp, redisUp] = await Promise.all([
          database.ping().then(
            () => true,
            () => false,
          ),
          store.ping().then(
            () => true,
            () => false,
          ),
        ])
        return { database: databaseUp, redis: redisUp }
      },
      close: () => closeAll(closers),
    }
  } catch (error) {
    await closeAll(closers)
    throw error
  }
}

async function closeAll(closers: (() => Promise<void>)[]): Promise<void> {
  for (const close of closers.reverse()) await close().catch(() => {})
  closers.length = 0
}

/** Turns any failure of the store into a DependencyUnavailableError (answered 503). */
function guardStore<T extends object>(metrics: Metrics, store: T): T {
  return new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver)
      if (typeof value !== 'function' || property === 'close') return value
      return async (...args: unknown[]) => {
        try {
          return await value.apply(target, args)
        } catch (error) {
          metrics.dependencyError('redis')
          throw new DependencyUnavailableError('redis', error)
        }
      }
    },
  })
}

/**
 * KEY_ENCRYPTION_KEY, or (outside production) a key generated once and kept in
 * DATA_DIR/key-encryption-key so restarts can read the keys they sealed.
 */
export async function keyEncryptionKey(config: Config, logger: ServiceLogger): Promise<Buffer> {
  if (config.KEY_ENCRYPTION_KEY) return decodeKeyEncryptionKey(config.KEY_ENCRYPTION_KEY)!
  const file = join(config.DATA_DIR, 'key-encryption-key')
  try {
    const stored = decodeKeyEncryptionKey((await readFile(file, 'utf8')).trim())
    if (stored) return stored
    throw new Error(`${file} does not hold a 32-byte key`)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  const key = randomBytes(32)
  await mkdir(config.DATA_DIR, { recursive: true })
  await writeFile(file, `${key.toString('hex')}\n`, { mode: 0o600, flag: 'wx' })
  logger.warn({ file }, 'KEY_ENCRYPTION_KEY is not set: generated one for development')
  return key
}
