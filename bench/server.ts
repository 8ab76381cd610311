import { createHash, randomBytes, randomUUID } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import formbody from '@fastify/formbody'
import Fastify, { type FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { exportJWK, generateKeyPair, jwtVerify, SignJWT } from 'jose'
import Provider from 'oidc-provider'
import { buildApp } from '../src/app.js'
import { loadConfig } from '../src/config.js'

/**
 * One benchmark target, run as its own process by bench/run.ts so that the load generator and
 * the server never share an event loop: `tsx bench/server.ts <scenario>`.
 *
 *   bare         GET /            a small JSON, nothing else (baseline A)
 *   jose-verify  GET /verify      jose jwtVerify (RS256, CryptoKey) of the bearer token (baseline B)
 *   jose-sign    GET /sign        jose SignJWT (RS256, CryptoKey) of access-token claims (baseline B)
 *   jose-rotate  POST /token      the least a rotating refresh grant does: one Redis script swaps the
 *                                 presented token's hash for its successor's, jose signs the access
 *                                 token; BENCH_USERS refresh tokens seeded (no sessions, no grace)
 *   product      the whole API (buildApp) on PostgreSQL and Redis, with BENCH_USERS users seeded
 *                and the rate limits (RATE_LIMIT_LOGIN_IP, _LOGIN_ACCOUNT, _DEFAULT) set out of reach
 *   oidc-provider  the peer: panva's oidc-provider (storage in Maps) answering the refresh-token
 *                grant with rotation and RS256 JWT access tokens, BENCH_USERS refresh tokens seeded
 *
 * It listens on 127.0.0.1, port 0, and writes one JSON line `{"bench":"ready","port":...}` to
 * stdout (any other stdout line is a log line). SIGTERM or SIGINT closes it.
 */

const ISSUER = 'http://latchkey.bench'

/** What jose signs with (here a non-extractable WebCrypto key, as in the key ring). */
type SigningKey = Parameters<SignJWT['sign']>[0]

interface Ready {
  port: number
  /** jose-verify: the fixed token the load generator sends. */
  token?: string
  /** product: the seeded users' emails (password BENCH_PASSWORD). */
  emails?: string[]
  /** oidc-provider and jose-rotate: one refresh token per chain; oidc-provider: the client to name. */
  refreshTokens?: string[]
  clientId?: string
}

/** A benchmark target: a Fastify app, or a plain Node server (the peer, which is Koa). */
interface Target {
  app?: FastifyInstance
  server?: Server
  ready: Omit<Ready, 'port'>
}

function required(name: string): string {
  const value = process.env[name]
  if (!value) throw new Error(`${name} is not set (bench/server.ts is started by bench/run.ts)`)
  return value
}

/** The claims the product puts in an access token, so the jose baselines do the same work. */
function accessTokenClaims() {
  return {
    client_id: 'first-party',
    scope: 'profile sessions',
    roles: ['user'],
    sid: randomUUID(),
    auth_time: Math.floor(Date.now() / 1000),
    amr: ['pwd'],
  }
}

async function signAccessToken(privateKey: SigningKey, kid: string): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  return new SignJWT(accessTokenClaims())
    .setProtectedHeader({ alg: 'RS256', kid, typ: 'at+jwt' })
    .setIssuer(ISSUER)
    .setSubject(randomUUID())
    .setAudience(ISSUER)
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(now + 3600)
    .setJti(randomUUID())
    .sign(privateKey)
}

function bareFastify(): FastifyInstance {
  return Fastify({ logger: { level: 'warn' } })
}

async function bare(): Promise<{ app: FastifyInstance; ready: Omit<Ready, 'port'> }> {
  const app = bareFastify()
  app.get('/', async () => ({ hello: 'world' }))
  return { app, ready: {} }
}

async function joseVerify(): Promise<{ app: FastifyInstance; ready: Omit<Ready, 'port'> }> {
  // RSA 2048, as the product's key ring makes; non-extractable WebCrypto keys, as jose uses them.
  const { privateKey, publicKey } = await generateKeyPair('RS256', { modulusLength: 2048 })
  const token = await signAccessToken(privateKey, 'bench')
  const app = bareFastify()
  app.get('/verify', async (request, reply) => {
    const header = request.headers.authorization
    if (!header?.startsWith('Bearer ')) return reply.code(401).send({ error: 'missing token' })
    try {
      const { payload } = await jwtVerify(header.slice(7), publicKey, {
        algorithms: ['RS256'],
        issuer: ISSUER,
        audience: ISSUER,
        typ: 'at+jwt',
        clockTolerance: 5,
      })
      return { sub: payload.sub }
    } catch {
      return reply.code(401).send({ error: 'invalid token' })
    }
  })
  return { app, ready: { token } }
}

async function joseSign(): Promise<{ app: FastifyInstance; ready: Omit<Ready, 'port'> }> {
  const { privateKey } = await generateKeyPair('RS256', { modulusLength: 2048 })
  const app = bareFastify()
  app.get('/sign', async () => ({ access_token: await signAccessToken(privateKey, 'bench') }))
  return { app, ready: {} }
}

/**
 * A minimal rotating refresh grant, for scale: what any refresh-token rotation with a shared
 * store must do at least. Tokens are `<id>.<secret>`; Redis keeps the SHA-256 of each chain's
 * current secret, and one script checks the presented one and stores the successor's in the
 * same round trip. No session record, roles, reuse grace, revocation, hooks or limits.
 */
async function joseRotate(): Promise<Target> {
  const { privateKey } = await generateKeyPair('RS256', { modulusLength: 2048 })
  const prefix = `${required('BENCH_REDIS_PREFIX')}rotate:`
  // The product's client settings that matter here: autopipelining on.
  const redis = new Redis(required('BENCH_REDIS_URL'), { keyPrefix: prefix, enableAutoPipelining: true })
  redis.defineCommand('rotate', {
    numberOfKeys: 1,
    lua: `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
      redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
      return 1`,
  })
  const rotate = (redis as unknown as { rotate(...args: string[]): Promise<number> }).rotate.bind(redis)
  const hash = (secret: string) => createHash('sha256').update(secret).digest('base64url')
  const lifetime = String(86_400_000)

  const refreshTokens: string[] = []
  for (let i = 0; i < Number(process.env.BENCH_USERS ?? '0'); i++) {
    const id = randomUUID()
    const secret = randomBytes(32).toString('base64url')
    await redis.set(id, hash(secret), 'PX', lifetime)
    refreshTokens.push(`${id}.${secret}`)
  }

  const app = bareFastify()
  await app.register(formbody)
  app.addHook('onClose', async () => {
    redis.disconnect()
  })
  app.post('/token', async (request, reply) => {
    const presented = (request.body as { refresh_token?: unknown } | undefined)?.refresh_token
    const dot = typeof presented === 'string' ? presented.indexOf('.') : -1
    if (typeof presented !== 'string' || dot < 0) return reply.code(400).send({ error: 'invalid_request' })
    const id = presented.slice(0, dot)
    const secret = randomBytes(32).toString('base64url')
    const rotated = await rotate(id, hash(presented.slice(dot + 1)), hash(secret), lifetime)
    if (rotated !== 1) return reply.code(400).send({ error: 'invalid_grant' })
    reply.header('cache-control', 'no-store')
    return {
      access_token: await signAccessToken(privateKey, 'bench'),
      token_type: 'Bearer',
      expires_in: 900,
      refresh_token: `${id}.${secret}`,
    }
  })
  return { app, ready: { refreshTokens } }
}

/** Far above what a whole run sends from 127.0.0.1 in a minute (a few hundred thousand requests). */
const BENCH_RATE = '1000000/minute'

/** The real API on the database and Redis prefix that bench/run.ts made for this run. */
async function product(): Promise<{ app: FastifyInstance; ready: Omit<Ready, 'port'> }> {
  const config = loadConfig({
    NODE_ENV: 'development',
    LOG_LEVEL: 'warn',
    HOST: '127.0.0.1',
    PORT: '0',
    ISSUER,
    DATABASE_URL: required('BENCH_DATABASE_URL'),
    REDIS_URL: required('BENCH_REDIS_URL'),
    KEY_ENCRYPTION_KEY: required('BENCH_KEY_ENCRYPTION_KEY'),
    DATA_DIR: required('BENCH_DATA_DIR'),
    // The bench hammers a few accounts from 127.0.0.1: a production-sized limit would answer 429
    // within a second. The limits stay on (their cost is part of every request), just out of reach.
    RATE_LIMIT_LOGIN_IP: BENCH_RATE,
    RATE_LIMIT_LOGIN_ACCOUNT: BENCH_RATE,
    RATE_LIMIT_DEFAULT: BENCH_RATE,
    // The refresh variants: a fresh database whose first key has this algorithm.
    SIGNING_ALG: process.env.BENCH_SIGNING_ALG || 'RS256',
    REDIS_KEY_PREFIX: required('BENCH_REDIS_PREFIX'),
  })
  const app = await buildApp(config)

  // Users are inserted directly (verified, one shared hash) so no email round trip is needed.
  const count = Number(process.env.BENCH_USERS ?? '0')
  const emails: string[] = []
  if (count > 0) {
    const passwordHash = await app.services.hasher.hash(required('BENCH_PASSWORD'))
    const tag = randomUUID().slice(0, 8)
    for (let i = 0; i < count; i++) {
      const email = `bench-${tag}-${i}@example.com`
      const user = await app.services.users.insert({ email, passwordHash, emailVerifiedAt: new Date() })
      if (!user) throw new Error(`could not insert ${email}`)
      emails.push(email)
    }
  }
  return { app, ready: { emails } }
}

/**
 * oidc-provider's storage for the benchmark: plain Maps. (Its built-in development adapter is an
 * LRU of 1,000 entries, which evicts the grants after about a thousand rotations.)
 */
class MapAdapter {
  static readonly stores = new Map<
    string,
    Map<string, { payload: Record<string, unknown>; expiresAt: number }>
  >()
  readonly #store: Map<string, { payload: Record<string, unknown>; expiresAt: number }>

  constructor(name: string) {
    let store = MapAdapter.stores.get(name)
    if (!store) {
      store = new Map()
      MapAdapter.stores.set(name, store)
    }
    this.#store = store
  }

  async upsert(id: string, payload: Record<string, unknown>, expiresIn: number) {
    this.#store.set(id, { payload, expiresAt: Date.now() + expiresIn * 1000 })
  }

  async find(id: string) {
    const entry = this.#store.get(id)
    if (!entry || entry.expiresAt < Date.now()) return undefined
    return entry.payload
  }

  async findByUid(uid: string) {
    for (const entry of this.#store.values()) if (entry.payload.uid === uid) return entry.payload
    return undefined
  }

  async findByUserCode(userCode: string) {
    for (const entry of this.#store.values()) if (entry.payload.userCode === userCode) return entry.payload
    return undefined
  }

  async consume(id: string) {
    const entry = this.#store.get(id)
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000)
  }

  async destroy(id: string) {
    this.#store.delete(id)
  }

  async revokeByGrantId(grantId: string) {
    for (const [id, entry] of this.#store) if (entry.payload.grantId === grantId) this.#store.delete(id)
  }
}

/**
 * The peer: oidc-provider's refresh-token grant, configured as close to Latchkey's as it goes:
 * rotation on every use, RS256 JWT access tokens (resource indicators with a JWT resource
 * server), a public first-party client, storage in Maps (faster than any real store).
 */
async function peerOidcProvider(): Promise<Target> {
  const { privateKey } = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true })
  const jwk = { ...(await exportJWK(privateKey)), kid: 'bench', alg: 'RS256', use: 'sig' }
  const resource = 'urn:latchkey:bench'
  const clientId = 'bench'
  const provider = new Provider(ISSUER, {
    adapter: MapAdapter as never,
    clients: [
      {
        client_id: clientId,
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: ['http://127.0.0.1/callback'],
      },
    ],
    jwks: { keys: [jwk] },
    findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
    features: {
      devInteractions: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => resource,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'profile sessions',
          audience: resource,
          accessTokenFormat: 'jwt',
          accessTokenTTL: 900,
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
    rotateRefreshToken: true,
    ttl: { RefreshToken: 86_400, AccessToken: 900, Grant: 86_400, Session: 86_400 },
  })
  const client = await provider.Client.find(clientId)
  if (!client) throw new Error('no bench client')
  const count = Number(process.env.BENCH_USERS ?? '0')
  const refreshTokens: string[] = []
  const now = Math.floor(Date.now() / 1000)
  for (let i = 0; i < count; i++) {
    const accountId = `bench-${i}`
    const grant = new provider.Grant({ accountId, clientId })
    grant.addOIDCScope('offline_access')
    grant.addResourceScope(resource, 'profile sessions')
    const grantId = await grant.save()
    const token = new provider.RefreshToken({
      client,
      accountId,
      grantId,
      scope: 'offline_access profile sessions',
      resource,
      gty: 'authorization_code',
      authTime: now,
      iiat: now,
      rotations: 0,
    } as never)
    refreshTokens.push(await token.save())
  }
  const server = createServer(provider.callback())
  return { server, ready: { refreshTokens, clientId } }
}

const scenarios = {
  bare,
  'oidc-provider': peerOidcProvider,
  'jose-verify': joseVerify,
  'jose-sign': joseSign,
  'jose-rotate': joseRotate,
  product,
} as const

async function main(): Promise<void> {
  const name = process.argv[2] ?? ''
  if (!Object.hasOwn(scenarios, name)) {
    process.stderr.write(`usage: tsx bench/server.ts <${Object.keys(scenarios).join('|')}>\n`)
    process.exit(64)
  }
  const { app, server, ready } = (await scenarios[name as keyof typeof scenarios]()) as Target

  let closing = false
  const close = async () => {
    if (closing) return
    closing = true
    await app?.close().catch(() => {})
    server?.close()
    process.exit(0)
  }
  process.on('SIGTERM', close)
  process.on('SIGINT', close)

  if (app) await app.listen({ host: '127.0.0.1', port: 0 })
  else await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve))
  const address = (app?.server ?? server)?.address()
  if (!address || typeof address === 'string') throw new Error('no TCP address')
  const line: Ready = { port: address.port, ...ready }
  process.stdout.write(`${JSON.stringify({ bench: 'ready', ...line })}\n`)
}

main().catch((error: unknown) => {
  process.stderr.write(`bench/server: ${error instanceof Error ? (error.stack ?? error.message) : error}\n`)
  process.exit(1)
})
