import { type Static, type StaticDecode, type TSchema, Type } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'

/**
 * The whole configuration: one TypeBox schema that is both the `Config` type and its validation.
 * Keys are the environment variable names; string values are converted, checked and decoded once
 * by `loadConfig`, then frozen and passed down. Nothing else reads `process.env`.
 */

const Seconds = (def: number, description: string) =>
  Type.Integer({ minimum: 1, maximum: 10 * 365 * 86400, default: def, description })

const RATE_UNITS = { second: 1, minute: 60, hour: 3600, day: 86400 } as const
/** A rate such as `10/minute`, decoded to `{ max, windowSeconds }`. */
export interface Rate {
  max: number
  windowSeconds: number
}
const RatePattern = '^[1-9][0-9]{0,6}/(second|minute|hour|day)$'
const RateSetting = (def: string, description: string) =>
  Type.Transform(Type.String({ pattern: RatePattern, default: def, description }))
    .Decode((value): Rate => {
      const [max, unit] = value.split('/') as [string, keyof typeof RATE_UNITS]
      return { max: Number(max), windowSeconds: RATE_UNITS[unit] }
    })
    .Encode(
      (rate) => `${rate.max}/${Object.entries(RATE_UNITS).find(([, s]) => s === rate.windowSeconds)?.[0]}`,
    )

const commaList = (value: string) =>
  value
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item.length > 0)
const CommaList = (description: string) =>
  Type.Transform(Type.String({ default: '', description }))
    .Decode(commaList)
    .Encode((list) => list.join(','))

const OptionalSecret = (description: string, minLength = 1) =>
  Type.Optional(Type.String({ minLength, description }))

const HttpUrl = (description: string) =>
  Type.String({ pattern: '^https?://[^\\s/?#]+(/[^\\s?#]*)?$', description })

const OidcProvider = Type.Object(
  {
    id: Type.String({ pattern: '^[a-z0-9][a-z0-9_-]{0,31}$' }),
    issuer: HttpUrl('the provider issuer'),
    client_id: Type.String({ minLength: 1 }),
    client_secret: Type.String({ minLength: 1 }),
    scopes: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
    allowed_domains: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
    require_nonce: Type.Optional(Type.Boolean()),
    response_mode: Type.Optional(Type.Union([Type.Literal('query'), Type.Literal('form_post')])),
  },
  { additionalProperties: false },
)
export type OidcProviderConfig = Static<typeof OidcProvider>

const OidcProviders = Type.Transform(
  Type.String({
    default: '[]',
    description: 'JSON list of OpenID Providers for social login (see "Social login")',
  }),
)
  .Decode((value): OidcProviderConfig[] => {
    let parsed: unknown
    try {
      parsed = JSON.parse(value)
    } catch {
      throw new Error('is not valid JSON')
    }
    if (!Value.Check(Type.Array(OidcProvider), parsed)) {
      const first = Value.Errors(Type.Array(OidcProvider), parsed).First()
      throw new Error(`is not a list of providers (${first?.path || '/'}: ${first?.message})`)
    }
    return parsed
  })
  .Encode((providers) => JSON.stringify(providers))

export const ConfigSchema = Type.Object({
  NODE_ENV: Type.Union([Type.Literal('development'), Type.Literal('production'), Type.Literal('test')], {
    default: 'development',
    description: 'production refuses embedded defaults, missing secrets and unsafe settings',
  }),
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 3000, description: 'TCP port to listen on' }),
  HOST: Type.String({ minLength: 1, default: '127.0.0.1', description: 'address to listen on' }),
  ISSUER: Type.Optional(
    HttpUrl('`iss` of access tokens and base URL of this API (default http://HOST:PORT)'),
  ),
  ACCESS_TOKEN_AUDIENCE: Type.Optional(
    Type.String({ minLength: 1, description: '`aud` of access tokens (default ISSUER)' }),
  ),
  CLIENT_ID: Type.String({ minLength: 1, default: 'first-party', description: '`client_id` claim' }),
  DATA_DIR: Type.String({ minLength: 1, default: './data', description: 'embedded database and mail files' }),
  DATABASE_URL: Type.Optional(
    Type.String({ pattern: '^postgres(ql)?://', description: 'PostgreSQL URL (unset: embedded PGlite)' }),
  ),
  REDIS_URL: Type.Optional(
    Type.String({ pattern: '^rediss?://', description: 'Redis URL (unset: in-process store)' }),
  ),
  REDIS_SENTINELS: CommaList('host:port of each Redis Sentinel (instead of REDIS_URL)'),
  REDIS_SENTINEL_NAME: Type.String({
    minLength: 1,
    default: 'mymaster',
    description: 'primary name the Sentinels watch',
  }),
  REDIS_CLUSTER_NODES: CommaList('host:port of some Redis Cluster nodes (instead of REDIS_URL)'),
  REDIS_KEY_PREFIX: Type.String({
    pattern: '^[A-Za-z0-9:._-]{1,64}$',
    default: 'lk:',
    description:
      'prefix of every Redis key: the instances of one deployment share it, another deployment on the same Redis needs its own (no braces: they would pin every key to one Cluster slot)',
  }),
  REDIS_PASSWORD: OptionalSecret('password for Sentinel-managed or Cluster nodes'),
  KEY_ENCRYPTION_KEY: OptionalSecret('32 bytes, base64 or hex: encrypts signing keys and TOTP secrets', 32),
  PASSWORD_PEPPER: OptionalSecret('secret mixed into every password hash', 16),
  CORS_ORIGINS: CommaList('exact origins allowed by CORS'),
  REDIRECT_ALLOWLIST: CommaList('exact redirect targets allowed after social login'),
  TRUST_PROXY: CommaList('addresses or CIDRs of the proxies to trust for X-Forwarded-For'),
  SMTP_URL: Type.Optional(
    Type.String({ pattern: '^smtps?://', description: 'SMTP server (unset: .eml files in DATA_DIR/mail)' }),
  ),
  MAIL_FROM: Type.String({ minLength: 3, default: 'Latchkey <no-reply@localhost>', description: 'sender' }),
  APP_URL: Type.Optional(HttpUrl('where email links point (default ISSUER)')),
  OIDC_PROVIDERS: OidcProviders,
  MFA_ISSUER: Type.String({
    minLength: 1,
    default: 'Latchkey',
    description: 'issuer shown by authenticator apps',
  }),
  SIGNING_ALG: Type.Union([Type.Literal('RS256'), Type.Literal('ES256'), Type.Literal('EdDSA')], {
    default: 'RS256',
    description: 'algorithm of new signing keys (RS256, ES256 or EdDSA)',
  }),
  KEY_ROTATION_INTERVAL: Type.Integer({
    minimum: 0,
    default: 30 * 86_400,
    description: 'seconds between automatic key rotations (default 30 days; 0: only on demand)',
  }),
  AUDIT_RETENTION_DAYS: Type.Integer({
    minimum: 1,
    maximum: 36_500,
    default: 365,
    description: 'days audit events are kept; older ones are deleted hourly',
  }),
  EMAIL_VERIFICATION: Type.Union([Type.Literal('required'), Type.Literal('optional')], {
    default: 'required',
    description: 'required: login waits for verification; optional: login works at once',
  }),
  METRICS_TOKEN: OptionalSecret('bearer token required by /metrics', 16),
  LOG_LEVEL: Type.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((level) => Type.Literal(level)),
    { default: 'info', description: 'pino log level' },
  ),
  BODY_LIMIT: Type.Integer({
    minimum: 1024,
    maximum: 10 * 1024 * 1024,
    default: 65536,
    description: 'largest request body in bytes (413 beyond)',
  }),
  ACCESS_TOKEN_TTL: Seconds(900, 'access token lifetime'),
  REFRESH_REUSE_GRACE: Type.Integer({
    minimum: 0,
    maximum: 300,
    default: 10,
    description: 'seconds a spent refresh token may be retried and get the same successor',
  }),
  SESSION_IDLE_TTL: Seconds(12 * 3600, 'session idle lifetime'),
  SESSION_MAX_TTL: Seconds(24 * 3600, 'session absolute lifetime'),
  REMEMBER_IDLE_TTL: Seconds(7 * 86400, 'remember-me idle lifetime'),
  REMEMBER_MAX_TTL: Seconds(30 * 86400, 'remember-me absolute lifetime'),
  FRESH_AUTH_MAX_AGE: Seconds(300, 'fresh-login window for sensitive actions'),
  VERIFY_TOKEN_TTL: Seconds(86400, 'email verification token lifetime'),
  RESET_TOKEN_TTL: Seconds(3600, 'password reset token lifetime'),
  MFA_TOKEN_TTL: Seconds(300, 'MFA challenge lifetime'),
  JWKS_MAX_AGE: Seconds(300, 'JWKS cache lifetime and delay before a new key signs'),
  RATE_LIMIT_LOGIN_IP: RateSetting('10/minute', 'login attempts per IP'),
  RATE_LIMIT_LOGIN_ACCOUNT: RateSetting('5/minute', 'login attempts per account'),
  RATE_LIMIT_EMAIL_IP: RateSetting('5/hour', 'sign-up, forgot-password, resend per IP'),
  RATE_LIMIT_EMAIL_ACCOUNT: RateSetting('3/hour', 'sign-up, forgot-password, resend per address'),
  RATE_LIMIT_DEFAULT: RateSetting('300/minute', 'every other endpoint per IP'),
  ARGON2_MEMORY_KIB: Type.Integer({
    minimum: 19456,
    maximum: 4194304,
    default: 19456,
    description: 'argon2id memory cost in KiB (changing it rehashes at next login)',
  }),
  ARGON2_TIME_COST: Type.Integer({ minimum: 2, maximum: 20, default: 2, description: 'argon2id iterations' }),
  ARGON2_CONCURRENCY: Type.Optional(
    Type.Integer({
      minimum: 1,
      maximum: 64,
      description:
        'argon2 hashes in flight at once (default: CPU cores - 1, at least 1, at most 2; stays below the libuv pool of 4)',
    }),
  ),
  ARGON2_MAX_QUEUE: Type.Integer({
    minimum: 0,
    maximum: 100000,
    default: 1024,
    description: 'logins that may wait for a hashing slot at once; beyond that they get 503 at once',
  }),
  ARGON2_QUEUE_TIMEOUT: Type.Optional(
    Type.Integer({
      minimum: 1,
      maximum: 3600,
      description:
        'seconds a login waits for a hashing slot before it gets 503 (default: 2, or REQUEST_TIMEOUT if that is less; at most REQUEST_TIMEOUT)',
    }),
  ),
  SHUTDOWN_TIMEOUT: Seconds(10, 'seconds to finish in-flight requests on SIGTERM'),
  REQUEST_TIMEOUT: Seconds(15, 'a request not answered by then gets 503 (nothing waits forever)'),
})

type Settings = StaticDecode<typeof ConfigSchema>

/** The decoded, frozen configuration, with the defaults that depend on other settings resolved. */
export type Config = Readonly<
  Omit<Settings, 'ISSUER' | 'ACCESS_TOKEN_AUDIENCE' | 'APP_URL' | 'ARGON2_QUEUE_TIMEOUT'> & {
    ARGON2_QUEUE_TIMEOUT: number
    ISSUER: string
    ACCESS_TOKEN_AUDIENCE: string
    APP_URL: string
  }
>

export class ConfigError extends Error {
  override name = 'ConfigError'
}

const propertySchemas = ConfigSchema.properties as Record<string, TSchema>

/**
 * Reads and validates the configuration from `env` (normally `process.env`); throws a
 * `ConfigError` naming every bad variable. With `NODE_ENV=production` it also refuses embedded
 * defaults, missing secrets and insecure settings.
 */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const raw: Record<string, unknown> = {}
  for (const name of Object.keys(propertySchemas)) {
    const value = env[name]
    if (value !== undefined && value !== '') raw[name] = value
  }
  const problems: string[] = []
  const converted = Value.Default(ConfigSchema, Value.Convert(ConfigSchema, raw)) as Record<string, unknown>
  for (const error of Value.Errors(ConfigSchema, converted)) {
    const name = error.path.split('/')[1] ?? ''
    problems.push(`${name}: ${error.message} (got ${JSON.stringify(raw[name] ?? null)})`)
  }
  if (problems.length > 0) throw new ConfigError(`invalid configuration:\n  ${unique(problems).join('\n  ')}`)

  const decoded: Record<string, unknown> = {}
  for (const [name, schema] of Object.entries(propertySchemas)) {
    if (converted[name] === undefined) continue
    try {
      decoded[name] = Value.Decode(schema, converted[name])
    } catch (error) {
      const cause = (error as { error?: Error }).error ?? (error as Error)
      problems.push(`${name}: ${cause.message}`)
    }
  }
  if (problems.length > 0) throw new ConfigError(`invalid configuration:\n  ${problems.join('\n  ')}`)

  const settings = decoded as Settings
  const issuer = (settings.ISSUER ?? `http://${hostForUrl(settings.HOST)}:${settings.PORT}`).replace(
    /\/$/,
    '',
  )
  const config: Config = {
    ...settings,
    ISSUER: issuer,
    ACCESS_TOKEN_AUDIENCE: settings.ACCESS_TOKEN_AUDIENCE ?? issuer,
    APP_URL: (settings.APP_URL ?? issuer).replace(/\/$/, ''),
    ARGON2_QUEUE_TIMEOUT: settings.ARGON2_QUEUE_TIMEOUT ?? Math.min(2, settings.REQUEST_TIMEOUT),
  }
  problems.push(...consistencyProblems(config, settings))
  if (config.NODE_ENV === 'production') problems.push(...productionProblems(config, settings))
  if (problems.length > 0) throw new ConfigError(`invalid configuration:\n  ${problems.join('\n  ')}`)
  return deepFreeze(config)
}

function consistencyProblems(config: Config, settings: Settings): string[] {
  const problems: string[] = []
  if (config.SESSION_IDLE_TTL > config.SESSION_MAX_TTL)
    problems.push('SESSION_IDLE_TTL: must not exceed SESSION_MAX_TTL')
  if (config.REMEMBER_IDLE_TTL > config.REMEMBER_MAX_TTL)
    problems.push('REMEMBER_IDLE_TTL: must not exceed REMEMBER_MAX_TTL')
  if (
    settings.KEY_ENCRYPTION_KEY !== undefined &&
    decodeKeyEncryptionKey(settings.KEY_ENCRYPTION_KEY) === null
  )
    problems.push('KEY_ENCRYPTION_KEY: must be 32 bytes written as 64 hex digits or base64')
  for (const origin of config.CORS_ORIGINS) {
    if (origin !== '*' && !/^https?:\/\/[^/\s]+$/.test(origin))
      problems.push(`CORS_ORIGINS: "${origin}" is not an origin (scheme://host[:port], no path)`)
  }
  if (config.ARGON2_QUEUE_TIMEOUT > config.REQUEST_TIMEOUT)
    problems.push('ARGON2_QUEUE_TIMEOUT: must not exceed REQUEST_TIMEOUT')
  const redisModes = [
    settings.REDIS_URL ? 'REDIS_URL' : null,
    config.REDIS_SENTINELS.length > 0 ? 'REDIS_SENTINELS' : null,
    config.REDIS_CLUSTER_NODES.length > 0 ? 'REDIS_CLUSTER_NODES' : null,
  ].filter((name) => name !== null)
  if (redisModes.length > 1) problems.push(`${redisModes.join(', ')}: set only one of them`)
  const ids = new Set<string>()
  for (const provider of config.OIDC_PROVIDERS) {
    if (ids.has(provider.id)) problems.push(`OIDC_PROVIDERS: provider id "${provider.id}" appears twice`)
    ids.add(provider.id)
  }
  return problems
}

function productionProblems(config: Config, settings: Settings): string[] {
  const problems: string[] = []
  const refuse = (name: string, why: string) => problems.push(`${name}: ${why} (NODE_ENV=production)`)
  if (!settings.DATABASE_URL)
    refuse('DATABASE_URL', 'required; the embedded database is for development only')
  if (!settings.REDIS_URL && config.REDIS_SENTINELS.length === 0 && config.REDIS_CLUSTER_NODES.length === 0)
    refuse(
      'REDIS_URL',
      'required (or REDIS_SENTINELS or REDIS_CLUSTER_NODES); the in-process store serves one instance only',
    )
  if (!settings.KEY_ENCRYPTION_KEY) refuse('KEY_ENCRYPTION_KEY', 'required; signing keys must be encrypted')
  if (!settings.SMTP_URL) refuse('SMTP_URL', 'required; mail files in DATA_DIR are for development only')
  if (!settings.ISSUER) refuse('ISSUER', 'required')
  else if (!config.ISSUER.startsWith('https://')) refuse('ISSUER', 'must be an https URL')
  if (!config.APP_URL.startsWith('https://')) refuse('APP_URL', 'must be an https URL')
  if (config.CORS_ORIGINS.includes('*')) refuse('CORS_ORIGINS', '"*" is not allowed')
  for (const origin of config.CORS_ORIGINS) {
    if (origin.startsWith('http://')) refuse('CORS_ORIGINS', `"${origin}" is not https`)
  }
  if (config.REDIRECT_ALLOWLIST.some((target) => target.includes('*')))
    refuse('REDIRECT_ALLOWLIST', 'wildcards are not allowed')
  for (const provider of config.OIDC_PROVIDERS) {
    if (!provider.issuer.startsWith('https://'))
      refuse('OIDC_PROVIDERS', `issuer of "${provider.id}" must be https`)
  }
  return problems
}

/** Decodes KEY_ENCRYPTION_KEY (64 hex digits or base64 of 32 bytes); null when it is neither. */
export function decodeKeyEncryptionKey(value: string): Buffer | null {
  if (/^[0-9a-fA-F]{64}$/.test(value)) return Buffer.from(value, 'hex')
  if (/^[A-Za-z0-9+/_-]{43}=?$/.test(value)) {
    const bytes = Buffer.from(value, 'base64')
    if (bytes.length === 32) return bytes
  }
  return null
}

function hostForUrl(host: string): string {
  if (host === '0.0.0.0' || host === '::') return 'localhost'
  return host.includes(':') ? `[${host}]` : host
}

function unique(items: string[]): string[] {
  return [...new Set(items)]
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const item of Object.values(value)) deepFreeze(item)
  }
  return value
}

/** Describes every variable (name, default, description) for the README and .env.example. */
export function describeConfig(): { name: string; default: unknown; description: string }[] {
  return Object.entries(propertySchemas).map(([name, schema]) => ({
    name,
    default: (schema as { default?: unknown }).default,
    description: (schema as { description?: string }).description ?? '',
  }))
}
