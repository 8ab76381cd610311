import { createHash } from 'node:crypto'
import { isIPv4, isIPv6 } from 'node:net'
import fastifyRateLimit, { type FastifyRateLimitStore } from '@fastify/rate-limit'
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import type { Rate } from '../../config.js'
import { DependencyUnavailableError, ProblemError } from '../../errors.js'
import { requestContext } from '../../routes/context.js'
import type { Services } from '../../services.js'
import type { RedisClient } from '../../storage/redis-client.js'

/** A limit hook: put it in a route's `onRequest` (per-address limits) or `preHandler` (any). */
export type RateLimitHook = (request: FastifyRequest, reply: FastifyReply) => Promise<void>

/**
 * The named limits that routes attach. Names are stable: other route files depend on them.
 *
 * ```ts
 * app.post('/password/forgot', {
 *   onRequest: app.rateLimits.emailIp,
 *   preHandler: app.rateLimits.emailAccount,
 *   ...
 * })
 * ```
 * A route that attaches `loginIp` or `emailIp` is no longer under the default per-address limit
 * (RATE_LIMIT_DEFAULT): the named per-address limit replaces it. The per-account limits read
 * `request.body.email`, so they must run as a `preHandler` (after validation); attaching one in
 * `onRequest`, `preParsing` or `preValidation` is refused when the route is registered.
 */
export interface RateLimits {
  /** RATE_LIMIT_LOGIN_IP (10/minute) per client address (IPv6: per /64). Replaces the default. */
  loginIp: RateLimitHook
  /**
   * RATE_LIMIT_LOGIN_ACCOUNT (5/minute) per account *and* client address: key = the lower-cased,
   * trimmed `email` of the body plus the client address. preHandler only.
   */
  loginAccount: RateLimitHook
  /**
   * RATE_LIMIT_EMAIL_IP (5/hour) per client address, for endpoints that send mail (sign-up,
   * verification resend, forgot-password). Replaces the default.
   */
  emailIp: RateLimitHook
  /**
   * RATE_LIMIT_EMAIL_ACCOUNT (3/hour) per email address alone (lower-cased, trimmed `email` of
   * the body), for endpoints that send mail. preHandler only.
   */
  emailAccount: RateLimitHook
}

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Named rate limits for routes to attach: `loginIp`, `loginAccount` (POST /v1/auth/login),
     * `emailIp`, `emailAccount` (sign-up, verification resend, forgot-password). See
     * {@link RateLimits} in plugins/app/rate-limit.ts.
     */
    rateLimits: RateLimits
  }
}

export interface RateLimitPluginOptions {
  services: Services
}

type LimitName = 'default' | 'login_ip' | 'login_account' | 'email_ip' | 'email_account'

interface LimitSpec {
  name: LimitName
  rate: Rate
  /** The subject of the count (without the limit name); undefined: the limit does not apply. */
  subject(request: FastifyRequest): string | undefined
  /** Needs the parsed body: preHandler only. */
  needsBody: boolean
  /** Replaces the default per-address limit on the routes it is attached to. */
  replacesDefault: boolean
  /**
   * Whether the RateLimit-* headers of an answer that is not refused may describe this limit.
   * The per-email limit of the mail endpoints counts requests of every client for that address,
   * so its remaining budget would tell one client about another's requests: it shows only on
   * its own 429.
   */
  advertise: boolean
  /** Write a `rate_limit.exceeded` audit event (once per key per window per process). */
  audit: boolean
}

/** Routes that no limit covers: probes must answer while clients are being refused. */
const UNLIMITED = [/^\/healthz$/, /^\/readyz$/, /^\/metrics$/, /^\/docs(?:\/|$)/]

/** Marks hooks that replace the default per-address limit on the route they are attached to. */
const REPLACES_DEFAULT = Symbol('latchkey.rateLimit.replacesDefault')
/** Marks hooks that must run after validation. */
const NEEDS_BODY = Symbol('latchkey.rateLimit.needsBody')
type MarkedHook = RateLimitHook & { [REPLACES_DEFAULT]?: boolean; [NEEDS_BODY]?: boolean }

/** One warning per process when X-Forwarded-For arrives while TRUST_PROXY is unset. */
let forwardedForWarned = false

/**
 * The rate-limit key of a client address: IPv4 as is; IPv6 per /64 (the first four hextets,
 * normalised, as `2001:db8:0:1::/64`), since one subscriber usually holds a whole /64; an
 * IPv4-mapped IPv6 address (`::ffff:1.2.3.4`, as dual-stack sockets report IPv4 clients) as
 * the IPv4 address.
 */
export function clientAddressKey(ip: string | undefined): string {
  if (!ip) return 'unknown'
  const address = ip.replace(/%.*$/, '') // an IPv6 zone id names the interface, not the client
  if (isIPv4(address)) return address
  if (!isIPv6(address)) return address.toLowerCase()
  const hextets = expandIPv6(address)
  if (hextets.slice(0, 5).every((part) => part === 0) && hextets[5] === 0xffff) {
    const [high = 0, low = 0] = hextets.slice(6)
    return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.')
  }
  return `${hextets
    .slice(0, 4)
    .map((part) => part.toString(16))
    .join(':')}::/64`
}

/** The eight 16-bit groups of a valid IPv6 address (`::` expanded, a dotted IPv4 tail converted). */
function expandIPv6(address: string): number[] {
  let text = address.toLowerCase()
  const dotted = text.match(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/)
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number]
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head = '', tail] = text.split('::')
  const parse = (part: string) => (part ? part.split(':').map((group) => Number.parseInt(group, 16)) : [])
  const left = parse(head)
  const right = tail === undefined ? [] : parse(tail)
  return [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right]
}

/** The email of a body as a key part: trimmed, NFC, lower-cased, hashed (no address in Redis). */
function emailKey(request: FastifyRequest): string | undefined {
  const email = (request.body as { email?: unknown } | null | undefined)?.email
  if (typeof email !== 'string') return undefined
  return createHash('sha256').update(email.trim().normalize('NFC').toLowerCase()).digest('base64url')
}

/** The limit whose counts are leased (see LeasedCounters): the default one. */
const LEASED_LIMIT = 'default:'

/**
 * Counters for @fastify/rate-limit: fixed windows in Redis (shared by every instance on it) or,
 * without Redis, in this process. Keys are `${nameSpace}${limit}:${subject}`, so limits never
 * collide. A Redis failure becomes a DependencyUnavailableError: the request is refused with
 * 503 service_unavailable (fail closed), never let through unlimited and never a 500.
 *
 * The default limit (RATE_LIMIT_DEFAULT, every route without a limit of its own, the token
 * endpoint and GET /v1/me included) leases its counts instead of asking Redis per request: see
 * {@link LeasedCounters}. The sign-in and email limits count every request in Redis.
 */
function storeFor(redis: RedisClient | undefined, nameSpace: string) {
  const script = `
    local current = redis.call('INCRBY', KEYS[1], ARGV[2])
    local ttl = redis.call('PTTL', KEYS[1])
    if current == tonumber(ARGV[2]) or ttl < 0 then
      redis.call('PEXPIRE', KEYS[1], ARGV[1])
      ttl = tonumber(ARGV[1])
    end
    return { current, ttl }`
  type Scripted = RedisClient & {
    latchkeyRateLimit(key: string, windowMs: number, by: number): Promise<[number, number]>
  }
  if (redis && typeof (redis as unknown as Partial<Scripted>).latchkeyRateLimit !== 'function') {
    redis.defineCommand('latchkeyRateLimit', { numberOfKeys: 1, lua: script })
  }
  const count = async (key: string, windowMs: number, by: number): Promise<Counted> => {
    try {
      const [current, ttl] = await (redis as unknown as Scripted).latchkeyRateLimit(
        `${nameSpace}${key}`,
        windowMs,
        by,
      )
      return { current: Number(current), ttl: Number(ttl) }
    } catch (error) {
      throw new DependencyUnavailableError('redis', error)
    }
  }
  const leased = redis ? new LeasedCounters(count) : undefined

  return class LatchkeyRateLimitStore implements FastifyRateLimitStore {
    readonly #local = new Map<string, { count: number; resetAt: number }>()

    incr(
      key: string,
      callback: (error: Error | null, result?: { current: number; ttl: number }) => void,
      timeWindow: number,
      max: number,
    ): void {
      if (redis) {
        const counted =
          leased && key.startsWith(LEASED_LIMIT)
            ? leased.take(key, timeWindow, max)
            : count(key, timeWindow, 1)
        counted.then(
          (result) => callback(null, result),
          (error: Error) => callback(error),
        )
        return
      }
      // Real time, never a test's clock (services.clock): Redis expires keys on its own time,
      // and both stores must behave alike.
      const now = Date.now()
      let entry = this.#local.get(key)
      if (!entry || entry.resetAt <= now) {
        if (entry) this.#local.delete(key)
        else if (this.#local.size >= MAX_KEYS) evictOldest(this.#local, now, (e) => e.resetAt)
        entry = { count: 0, resetAt: now + timeWindow }
        this.#local.set(key, entry)
      }
      entry.count += 1
      callback(null, { current: entry.count, ttl: entry.resetAt - now })
    }

    /** Each limit gets its own in-process map; in Redis the limit name is in the key already. */
    child(): FastifyRateLimitStore {
      return new LatchkeyRateLimitStore()
    }
  }
}

interface Counted {
  /** The count of the window including this request (above `max`: refused). */
  current: number
  /** Milliseconds left in the window. */
  ttl: number
}

/** In-process counters and leases are bounded, so that a flood of addresses cannot exhaust memory. */
const MAX_KEYS = 100_000

/** Drops expired entries, then the oldest tenth, of a map that reached its bound. */
function evictOldest<V>(map: Map<string, V>, now: number, endOf: (value: V) => number): void {
  for (const [key, value] of map) if (endOf(value) <= now) map.delete(key)
  // Still full: drop the oldest windows (Map order is insertion order).
  let excess = map.size - Math.floor(MAX_KEYS * 0.9)
  for (const key of map.keys()) {
    if (excess-- <= 0) break
    map.delete(key)
  }
}

interface Lease {
  /** When the Redis window ends (ms, this process's clock). */
  windowEnd: number
  /** Counts claimed from Redis and not used yet. */
  left: number
  /** The window's count in Redis after this process's last claim. */
  claimed: number
  /** The size of the last claim; the next one doubles it, up to the cap. */
  size: number
  /** The whole limit is spent for this window: refuse without asking Redis. */
  spent: boolean
  /** A claim in flight; requests that find no counts left wait for it. */
  pending: Promise<void> | undefined
}

/**
 * Counts leased in blocks from the shared Redis counter, so that a busy client costs one Redis
 * round trip per block rather than one per request. A client's first request in a window
 * claims 1; each claim after that doubles, up to a twentieth of the limit. Claims add to the
 * shared count before the requests they cover are served, so all instances together never let
 * more than the limit through in a window; counts an instance claimed and did not use are lost
 * when the window ends, so a client that spreads its requests over N instances may be refused
 * up to (N − 1) × limit/20 requests early. A window whose count reached the limit is refused
 * here until it ends. While Redis is unreachable, requests still covered by a lease pass;
 * the next claim fails with 503.
 */
export class LeasedCounters {
  readonly #leases = new Map<string, Lease>()

  constructor(private readonly count: (key: string, windowMs: number, by: number) => Promise<Counted>) {}

  async take(key: string, windowMs: number, max: number): Promise<Counted> {
    for (;;) {
      const now = Date.now()
      const lease = this.#leases.get(key)
      if (lease && lease.windowEnd > now) {
        const ttl = lease.windowEnd - now
        if (lease.left > 0) {
          lease.left -= 1
          return { current: lease.claimed - lease.left, ttl }
        }
        if (lease.spent) return { current: max + 1, ttl }
        if (lease.pending) {
          await lease.pending.catch(() => {})
          continue
        }
      }
      return this.#claim(key, lease, windowMs, max)
    }
  }

  async #claim(key: string, previous: Lease | undefined, windowMs: number, max: number): Promise<Counted> {
    const cap = Math.max(1, Math.floor(max / 20))
    const size = previous ? Math.min(cap, previous.size * 2) : 1
    const now = Date.now()
    const lease: Lease = previous ?? {
      windowEnd: now,
      left: 0,
      claimed: 0,
      size,
      spent: false,
      pending: undefined,
    }
    if (!previous) {
      if (this.#leases.size >= MAX_KEYS) evictOldest(this.#leases, now, (entry) => entry.windowEnd)
      this.#leases.set(key, lease)
    }
    let settle!: () => void
    lease.pending = new Promise<void>((resolve) => {
      settle = resolve
    })
    try {
      const { current, ttl } = await this.count(key, windowMs, size)
      const before = current - size
      const granted = Math.max(0, Math.min(size, max - before))
      lease.windowEnd = Date.now() + ttl
      lease.size = size
      lease.spent = before + granted >= max
      if (granted === 0) {
        lease.left = 0
        return { current: Math.max(current, max + 1), ttl }
      }
      // This request takes the first of the granted counts.
      lease.left = granted - 1
      lease.claimed = before + granted
      return { current: before + 1, ttl }
    } finally {
      lease.pending = undefined
      settle()
    }
  }
}

/**
 * Rate limits (API.md, "Limits and policies"), with @fastify/rate-limit's limiters over a store
 * in Redis, so every instance on one Redis shares the counts:
 * - every route except the probes and /docs: RATE_LIMIT_DEFAULT per client address;
 * - named limits that routes attach (`app.rateLimits`, see {@link RateLimits}).
 * The client address is `request.ip`: the socket address, or with TRUST_PROXY the right-most
 * X-Forwarded-For hop that is not a trusted proxy (Fastify's `trustProxy`); IPv6 per /64.
 * Answers under a limit carry RateLimit-Limit/-Remaining/-Reset (draft-ietf-httpapi-ratelimit-
 * headers; of several limits, the one closest to exhaustion); a refusal is 429 `rate_limited`
 * with Retry-After and a body that is the same for every account and limit.
 */
export default fp(
  async function rateLimit(app: FastifyInstance, options: RateLimitPluginOptions) {
    const { services } = options
    // app.config, not services.config: the OpenAPI generator builds the app without services.
    const { config } = app
    const nameSpace = `${config.REDIS_KEY_PREFIX}rl:`

    // The plugin's own route hooks (`global`, app.rateLimit) allow one limit per request, so
    // every limit here is a hook of ours around `app.createRateLimit`. Its options still
    // govern app.rateLimit()/config.rateLimit should anyone use them: draft headers, fail closed.
    await app.register(fastifyRateLimit, {
      global: false,
      enableDraftSpec: true,
      // Fail closed: an auth server must not drop its brute-force defence when Redis is down.
      skipOnError: false,
      store: storeFor(services.redis, nameSpace),
    })

    /** What each request's RateLimit-* headers show so far: the limit closest to exhaustion. */
    const shown = new WeakMap<FastifyRequest, { remaining: number; reset: number }>()
    /** Audit events written, by limit key, until the end of their window (process-local). */
    const audited = new Map<string, number>()

    const hook = (spec: LimitSpec): MarkedHook => {
      const limiter = app.createRateLimit({
        max: spec.rate.max,
        timeWindow: spec.rate.windowSeconds * 1000,
        keyGenerator: (request) => `${spec.name}:${spec.subject(request)}`,
      })
      const limit: MarkedHook = async function rateLimitHook(request, reply) {
        if (spec.subject(request) === undefined) return
        const result = await limiter(request)
        if (result.isAllowed) return
        const reset = Math.max(1, result.ttlInSeconds)
        if (result.isExceeded) {
          services.metrics.rateLimitHits.inc({ limit: spec.name })
          if (spec.audit) await auditOnce(spec, request, result.key, result.ttl)
          throw new ProblemError('rate_limited', {
            detail: 'Too many requests; try again later',
            headers: {
              'retry-after': String(reset),
              'ratelimit-limit': String(result.max),
              'ratelimit-remaining': '0',
              'ratelimit-reset': String(reset),
            },
          })
        }
        if (!spec.advertise) return
        const previous = shown.get(request)
        if (
          previous &&
          (previous.remaining < result.remaining ||
            (previous.remaining === result.remaining && previous.reset >= reset))
        )
          return
        shown.set(request, { remaining: result.remaining, reset })
        reply.header('ratelimit-limit', result.max)
        reply.header('ratelimit-remaining', result.remaining)
        reply.header('ratelimit-reset', reset)
      }
      limit[REPLACES_DEFAULT] = spec.replacesDefault
      limit[NEEDS_BODY] = spec.needsBody
      return limit
    }

    async function auditOnce(spec: LimitSpec, request: FastifyRequest, key: string, ttl: number) {
      const now = Date.now()
      const until = audited.get(key)
      if (until !== undefined && until > now) return
      if (audited.size >= 10_000) {
        for (const [entry, expiry] of audited) if (expiry <= now) audited.delete(entry)
        if (audited.size >= 10_000) audited.clear()
      }
      audited.set(key, now + Math.max(ttl, 1000))
      // The context is address, user agent and request id; the body (and its password) never.
      await services.audit.record({
        type: 'rate_limit.exceeded',
        outcome: 'failure',
        context: requestContext(request),
        details: { limit: spec.name, max: spec.rate.max, window_seconds: spec.rate.windowSeconds },
      })
    }

    const byAddress = (request: FastifyRequest) => clientAddressKey(request.ip)

    const defaultLimit = hook({
      name: 'default',
      rate: config.RATE_LIMIT_DEFAULT,
      subject: byAddress,
      needsBody: false,
      replacesDefault: false,
      advertise: true,
      audit: false,
    })
    const limits: RateLimits = {
      loginIp: hook({
        name: 'login_ip',
        rate: config.RATE_LIMIT_LOGIN_IP,
        subject: byAddress,
        needsBody: false,
        replacesDefault: true,
        advertise: true,
        audit: true,
      }),
      // Keyed on account *and* address: failures from one address must not use up the owner's
      // budget at another (else anyone could lock an account out with five requests a minute).
      // The account-wide defence against a distributed guess is the progressive cooldown
      // (domain/cooldown.ts), which lets the owner's correct password through.
      loginAccount: hook({
        name: 'login_account',
        rate: config.RATE_LIMIT_LOGIN_ACCOUNT,
        subject: (request) => {
          const email = emailKey(request)
          return email === undefined ? undefined : `${email}:${byAddress(request)}`
        },
        needsBody: true,
        replacesDefault: false,
        advertise: true,
        audit: true,
      }),
      emailIp: hook({
        name: 'email_ip',
        rate: config.RATE_LIMIT_EMAIL_IP,
        subject: byAddress,
        needsBody: false,
        replacesDefault: true,
        advertise: true,
        audit: true,
      }),
      // Keyed on the email address alone: these endpoints answer 202 to everyone, so a 429 for
      // an address tells nothing about an account, and it stops mail bombing from many clients.
      emailAccount: hook({
        name: 'email_account',
        rate: config.RATE_LIMIT_EMAIL_ACCOUNT,
        subject: emailKey,
        needsBody: true,
        replacesDefault: false,
        advertise: false,
        audit: true,
      }),
    }
    app.decorate('rateLimits', limits)

    const hooksOf = (value: unknown): MarkedHook[] =>
      (Array.isArray(value) ? value : value ? [value] : []) as MarkedHook[]

    app.addHook('onRoute', (route: RouteOptions) => {
      for (const stage of ['onRequest', 'preParsing', 'preValidation'] as const) {
        if (hooksOf(route[stage]).some((limit) => limit[NEEDS_BODY]))
          throw new Error(`${route.method} ${route.url}: a per-account rate limit must be a preHandler`)
      }
      if (UNLIMITED.some((pattern) => pattern.test(route.url))) return
      const attached = [...hooksOf(route.onRequest), ...hooksOf(route.preHandler)]
      if (attached.some((limit) => limit[REPLACES_DEFAULT])) return
      route.onRequest = [defaultLimit, ...hooksOf(route.onRequest)] as RouteOptions['onRequest']
    })

    if (config.TRUST_PROXY.length === 0) {
      app.addHook('onRequest', async (request) => {
        if (forwardedForWarned || request.headers['x-forwarded-for'] === undefined) return
        forwardedForWarned = true
        request.log.warn(
          'X-Forwarded-For is ignored because TRUST_PROXY is not set: rate limits, audit events and ' +
            'sessions use the socket address. Behind a reverse proxy or load balancer, set ' +
            'TRUST_PROXY to its addresses or CIDRs (comma-separated, e.g. TRUST_PROXY=10.0.0.0/8).',
        )
      })
    }
  },
  { name: 'rate-limit', dependencies: ['error-handler'] },
)
