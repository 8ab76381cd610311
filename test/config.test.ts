import t from 'tap'
import { type ConfigError, loadConfig } from '../src/config.js'

const production = {
  NODE_ENV: 'production',
  DATABASE_URL: 'postgres://db.internal/latchkey',
  REDIS_URL: 'redis://cache.internal:6379',
  KEY_ENCRYPTION_KEY: 'b'.repeat(64),
  SMTP_URL: 'smtps://mail.internal:465',
  ISSUER: 'https://auth.example.com',
  CORS_ORIGINS: 'https://app.example.com',
}

t.test('defaults for development', async (t) => {
  const config = loadConfig({})
  t.equal(config.PORT, 3000)
  t.equal(config.ISSUER, 'http://127.0.0.1:3000')
  t.equal(config.ACCESS_TOKEN_AUDIENCE, config.ISSUER)
  t.equal(config.APP_URL, config.ISSUER)
  t.equal(config.ACCESS_TOKEN_TTL, 900)
  t.equal(config.REFRESH_REUSE_GRACE, 10)
  t.equal(config.SESSION_IDLE_TTL, 12 * 3600)
  t.equal(config.SESSION_MAX_TTL, 24 * 3600)
  t.equal(config.REMEMBER_IDLE_TTL, 7 * 86400)
  t.equal(config.REMEMBER_MAX_TTL, 30 * 86400)
  t.equal(config.JWKS_MAX_AGE, 300)
  t.equal(config.BODY_LIMIT, 65536)
  t.equal(config.CLIENT_ID, 'first-party')
  t.same(config.RATE_LIMIT_LOGIN_IP, { max: 10, windowSeconds: 60 })
  t.same(config.RATE_LIMIT_EMAIL_ACCOUNT, { max: 3, windowSeconds: 3600 })
  t.same(config.CORS_ORIGINS, [])
  t.equal(config.DATABASE_URL, undefined)
  t.ok(Object.isFrozen(config), 'frozen')
  t.ok(Object.isFrozen(config.CORS_ORIGINS), 'deeply frozen')
})

t.test('values are converted and decoded', async (t) => {
  const config = loadConfig({
    PORT: '8080',
    ACCESS_TOKEN_TTL: '600',
    CORS_ORIGINS: 'https://a.example.com, http://localhost:5173',
    RATE_LIMIT_DEFAULT: '100/second',
    OIDC_PROVIDERS:
      '[{"id":"google","issuer":"https://accounts.google.com","client_id":"c","client_secret":"s"}]',
    ISSUER: 'https://auth.example.com/',
  })
  t.equal(config.PORT, 8080)
  t.equal(config.ACCESS_TOKEN_TTL, 600)
  t.same(config.CORS_ORIGINS, ['https://a.example.com', 'http://localhost:5173'])
  t.same(config.RATE_LIMIT_DEFAULT, { max: 100, windowSeconds: 1 })
  t.equal(config.OIDC_PROVIDERS[0]?.id, 'google')
  t.equal(config.ISSUER, 'https://auth.example.com', 'a trailing slash is dropped')
})

t.test('the hashing queue: its bound, and a wait that never outlasts REQUEST_TIMEOUT', async (t) => {
  const defaults = loadConfig({})
  t.equal(defaults.ARGON2_MAX_QUEUE, 1024)
  t.equal(defaults.ARGON2_QUEUE_TIMEOUT, 2)
  t.equal(
    loadConfig({ REQUEST_TIMEOUT: '1' }).ARGON2_QUEUE_TIMEOUT,
    1,
    'the default follows a shorter REQUEST_TIMEOUT',
  )
  const set = loadConfig({ ARGON2_QUEUE_TIMEOUT: '5', ARGON2_MAX_QUEUE: '0' })
  t.equal(set.ARGON2_QUEUE_TIMEOUT, 5)
  t.equal(set.ARGON2_MAX_QUEUE, 0)
  t.throws(
    () => loadConfig({ ARGON2_QUEUE_TIMEOUT: '20' }),
    /ARGON2_QUEUE_TIMEOUT: must not exceed REQUEST_TIMEOUT/,
  )
  t.throws(() => loadConfig({ ARGON2_QUEUE_TIMEOUT: '0' }), /ARGON2_QUEUE_TIMEOUT/)
  t.throws(() => loadConfig({ ARGON2_MAX_QUEUE: '-1' }), /ARGON2_MAX_QUEUE/)
})

t.test('REDIS_KEY_PREFIX: lk: by default, no braces', async (t) => {
  t.equal(loadConfig({}).REDIS_KEY_PREFIX, 'lk:')
  t.equal(loadConfig({ REDIS_KEY_PREFIX: 'staging:lk:' }).REDIS_KEY_PREFIX, 'staging:lk:')
  t.throws(
    () => loadConfig({ REDIS_KEY_PREFIX: '{lk}:' }),
    /REDIS_KEY_PREFIX/,
    'a hash tag would pin every key',
  )
  t.throws(() => loadConfig({ REDIS_KEY_PREFIX: 'a b' }), /REDIS_KEY_PREFIX/)
})

t.test('malformed values fail with a message naming the variable', async (t) => {
  const cases: [Record<string, string>, RegExp][] = [
    [{ PORT: 'eighty' }, /PORT/],
    [{ PORT: '70000' }, /PORT/],
    [{ ACCESS_TOKEN_TTL: '-5' }, /ACCESS_TOKEN_TTL/],
    [{ SIGNING_ALG: 'HS256' }, /SIGNING_ALG/],
    [{ RATE_LIMIT_LOGIN_IP: '10 per minute' }, /RATE_LIMIT_LOGIN_IP/],
    [{ DATABASE_URL: 'mysql://x' }, /DATABASE_URL/],
    [{ KEY_ENCRYPTION_KEY: 'too-short-but-more-than-32-characters-xx' }, /KEY_ENCRYPTION_KEY/],
    [{ OIDC_PROVIDERS: 'not json' }, /OIDC_PROVIDERS/],
    [{ OIDC_PROVIDERS: '[{"id":"x"}]' }, /OIDC_PROVIDERS/],
    [
      {
        OIDC_PROVIDERS:
          '[{"id":"x","issuer":"https://x.example","client_id":"a","client_secret":"b","response_mode":"fragment"}]',
      },
      /OIDC_PROVIDERS.*response_mode/,
    ],
    [
      {
        OIDC_PROVIDERS: '[{"id":"Bad Id","issuer":"https://x.example","client_id":"a","client_secret":"b"}]',
      },
      /OIDC_PROVIDERS.*id/,
    ],
    [{ CORS_ORIGINS: 'https://a.example.com/path' }, /CORS_ORIGINS/],
    [{ REDIS_URL: 'redis://127.0.0.1:6379', REDIS_CLUSTER_NODES: '127.0.0.1:7000' }, /set only one of them/],
    [{ SESSION_IDLE_TTL: '90000' }, /SESSION_IDLE_TTL/],
    [{ EMAIL_VERIFICATION: 'sometimes' }, /EMAIL_VERIFICATION/],
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL/],
  ]
  for (const [env, pattern] of cases) {
    t.throws(() => loadConfig(env), { name: 'ConfigError', message: pattern }, JSON.stringify(env))
  }
})

t.test('production accepts a complete, safe configuration', async (t) => {
  const config = loadConfig(production)
  t.equal(config.NODE_ENV, 'production')
})

t.test('production refuses embedded defaults, missing secrets and unsafe settings', async (t) => {
  const refusals: [Record<string, string | undefined>, RegExp][] = [
    [{ DATABASE_URL: undefined }, /DATABASE_URL: required/],
    [{ REDIS_URL: undefined }, /REDIS_URL: required/],
    [{ KEY_ENCRYPTION_KEY: undefined }, /KEY_ENCRYPTION_KEY: required/],
    [{ SMTP_URL: undefined }, /SMTP_URL: required/],
    [{ ISSUER: undefined }, /ISSUER: required/],
    [{ ISSUER: 'http://auth.example.com' }, /ISSUER: must be an https URL/],
    [{ CORS_ORIGINS: '*' }, /CORS_ORIGINS: "\*" is not allowed/],
    [{ CORS_ORIGINS: 'http://app.example.com' }, /CORS_ORIGINS/],
    [{ REDIRECT_ALLOWLIST: 'https://*.example.com/cb' }, /REDIRECT_ALLOWLIST/],
    [
      {
        OIDC_PROVIDERS:
          '[{"id":"corp","issuer":"http://sso.example.com","client_id":"c","client_secret":"s"}]',
      },
      /OIDC_PROVIDERS: issuer of "corp" must be https/,
    ],
  ]
  for (const [change, pattern] of refusals) {
    const env: Record<string, string | undefined> = { ...production, ...change }
    t.throws(() => loadConfig(env), { message: pattern }, JSON.stringify(change))
  }
  const error = t.throws(() => loadConfig({ NODE_ENV: 'production' })) as ConfigError
  t.match(
    error.message,
    /DATABASE_URL[\s\S]*REDIS_URL[\s\S]*KEY_ENCRYPTION_KEY/,
    'every problem is named at once',
  )
})

t.test('the server process refuses to start on a bad production configuration', async (t) => {
  const { spawnSync } = await import('node:child_process')
  const result = spawnSync(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    env: { PATH: process.env.PATH, NODE_ENV: 'production' },
    encoding: 'utf8',
    timeout: 30_000,
  })
  t.equal(result.status, 78, 'exit status EX_CONFIG')
  t.match(result.stderr, /DATABASE_URL: required/)
  t.match(result.stderr, /KEY_ENCRYPTION_KEY: required/)
})
