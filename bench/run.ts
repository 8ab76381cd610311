import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { Redis } from 'ioredis'
import postgres from 'postgres'

/**
 * `npm run bench`: load-tests bare baselines and the product's hot paths, each server in its own
 * child process (bench/server.ts), with autocannon in this process, then prints req/s, p50, p99
 * and each product path's ratio to its baseline. Exits 1 when any scenario saw a non-2xx answer,
 * a connection error or a broken refresh chain. See bench/README.md.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const SERVER = fileURLToPath(new URL('./server.ts', import.meta.url))
/** This file: `bench/run.ts flood` is the login flood's own load-generator process. */
const SELF = fileURLToPath(import.meta.url)

function seconds(name: string, fallback: number, minimum: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value < minimum) {
    process.stderr.write(`bench: ${name} must be a number of seconds >= ${minimum}\n`)
    process.exit(64)
  }
  return value
}

const DURATION = seconds('BENCH_DURATION', 10, 1)
const WARMUP = seconds('BENCH_WARMUP', 3, 0)
/** argon2id is slow and steady: half the time is plenty. */
const LOGIN_DURATION = Math.max(1, Math.round(DURATION / 2))
const CONNECTIONS = 16
const CHAINS = 16
const LOGIN_CONNECTIONS = 4
/**
 * The login flood. The hasher runs ARGON2_CONCURRENCY hashes (1 on two cores, about 45 a second)
 * and the other logins wait at most ARGON2_QUEUE_TIMEOUT (2 s) for their turn
 * (src/domain/password-hasher.ts): a flood of more than about 90 connections reaches the 503 path.
 */
const FLOOD_CONNECTIONS = 128
/** Seeded accounts the flood tries wrong passwords on (the GET /v1/me user is another one). */
const FLOOD_USERS = 8
/**
 * BENCH_ONLY=me,refresh: only these scenarios (bare, verify, sign, me, flood, flood-paced,
 * refresh, refresh-es256, refresh-eddsa, rotate, peer,
 * in-process, login), for working on one path; the targets need the whole run.
 */
const ONLY = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',').map((s) => s.trim())) : null
const wanted = (scenario: string) => ONLY === null || ONLY.has(scenario)
const ADMIN_DATABASE_URL = process.env.BENCH_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres'
const REDIS_URL = process.env.BENCH_REDIS_URL || 'redis://127.0.0.1:6379'

const log = (message: string) => process.stderr.write(`bench: ${message}\n`)

/** Other work on the machine skews every number: it is printed with the results. */
const startLoad = loadavg()[0] ?? 0

// ---------------------------------------------------------------------------------------------
// Child servers

interface ReadyLine {
  port: number
  token?: string
  emails?: string[]
  refreshTokens?: string[]
  clientId?: string
}

interface Server {
  ready: ReadyLine
  pid: number
  /** Quiet servers only: the log lines written since the ready line, and the first of them. */
  logs(): { lines: number; first?: string }
  stop(): Promise<void>
}

/**
 * Calls `onLine` for each line of a child's stdout. Not readline: a server that logs every
 * request (the flood's 503s) writes megabytes per second, and this runs in the process that
 * measures latency.
 */
function eachLine(child: ChildProcess, onLine: (line: string) => void): void {
  let pending = ''
  child.stdout!.setEncoding('utf8')
  child.stdout!.on('data', (chunk: string) => {
    pending += chunk
    let start = 0
    for (let end = pending.indexOf('\n'); end !== -1; end = pending.indexOf('\n', start)) {
      onLine(pending.slice(start, end))
      start = end + 1
    }
    pending = pending.slice(start)
  })
}

const children = new Set<ChildProcess>()

/**
 * Starts `bench/server.ts <kind>` and waits for its `{"bench":"ready"}` line. Its later stdout
 * lines are its log: passed on to stderr, or only counted when `quiet`.
 */
function startServer(kind: string, env: Record<string, string> = {}, quiet = false): Promise<Server> {
  // `node --import tsx` is what the tsx CLI does, minus its extra supervising process: the pid
  // we signal is the server itself.
  // BENCH_CPU_PROF=<dir>: each server writes a V8 CPU profile there when it stops.
  const profile = process.env.BENCH_CPU_PROF
    ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`]
    : []
  const child = spawn(process.execPath, [...profile, '--import', 'tsx', SERVER, kind], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  children.add(child)
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      children.delete(child)
      resolve()
    })
  })
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(timer)
  }
  const logs: { lines: number; first?: string } = { lines: 0 }
  return new Promise<Server>((resolve, reject) => {
    let ready = false
    const timer = setTimeout(() => {
      void stop()
      reject(new Error(`server "${kind}" did not become ready within 60 s`))
    }, 60_000)
    eachLine(child, (line) => {
      if (ready && quiet) {
        if (logs.lines++ === 0) logs.first = line
        return
      }
      let parsed: unknown
      try {
        parsed = JSON.parse(line)
      } catch {
        parsed = undefined
      }
      if (
        !ready &&
        parsed &&
        typeof parsed === 'object' &&
        (parsed as { bench?: unknown }).bench === 'ready'
      ) {
        ready = true
        clearTimeout(timer)
        resolve({ ready: parsed as ReadyLine, pid: child.pid!, logs: () => ({ ...logs }), stop })
        return
      }
      // Anything else on stdout is the server's log (LOG_LEVEL=warn): pass it on.
      process.stderr.write(`[${kind}] ${line}\n`)
    })
    child.once('exit', (code, signal) => {
      if (ready) return
      clearTimeout(timer)
      reject(new Error(`server "${kind}" exited before it was ready (${signal ?? `code ${code}`})`))
    })
  })
}

// ---------------------------------------------------------------------------------------------
// Load

interface Load {
  path: string
  method?: 'GET' | 'POST'
  headers?: Record<string, string>
  body?: string
  connections: number
  /** Called once per autocannon client (connection) before its first request. */
  setupClient?: (client: autocannon.Client) => void
}

/** Every answer of one status code (or `all`), at full resolution. */
interface StatusLatency {
  count: number
  p50: number
  p99: number
}

interface Measurement {
  seconds: number
  connections: number
  requestsPerSecond: number
  p50: number
  p99: number
  total: number
  non2xx: number
  errors: number
  timeouts: number
  statusCodes: Record<string, number>
  /** Latency per status code and for `all` answers (p50/p99 above are 2xx only). */
  latency: Record<string, StatusLatency>
  /**
   * CPU time per answer, µs: the server process (all its threads), its main thread alone (the
   * event loop), and this load generator.
   */
  cpu?: { server: number; serverMainThread?: number; load: number }
}

/** One autocannon run; latencies are kept at full (sub-millisecond) resolution here. */
function fire(port: number, load: Load, duration: number): Promise<Measurement> {
  const byStatus = new Map<number, number[]>()
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: `http://127.0.0.1:${port}`,
        connections: load.connections,
        duration,
        requests: [
          {
            method: load.method ?? 'GET',
            path: load.path,
            ...(load.headers ? { headers: load.headers } : {}),
            ...(load.body !== undefined ? { body: load.body } : {}),
          },
        ],
        ...(load.setupClient ? { setupClient: load.setupClient } : {}),
      },
      (error, result) => {
        if (error) return reject(error)
        const ok = [...byStatus].filter(([code]) => code >= 200 && code < 300).flatMap(([, times]) => times)
        const sorted = Float64Array.from(ok).sort()
        const latency: Record<string, StatusLatency> = {}
        for (const [code, times] of byStatus) latency[code] = summarise(times)
        latency.all = summarise([...byStatus.values()].flat())
        const statusCodes = Object.fromEntries(
          Object.entries(result.statusCodeStats ?? {}).map(([code, stat]) => [code, stat.count ?? 0]),
        )
        resolve({
          seconds: duration,
          connections: load.connections,
          requestsPerSecond: result.requests.average,
          p50: percentile(sorted, 0.5),
          p99: percentile(sorted, 0.99),
          total: result.requests.total,
          non2xx: result.non2xx,
          errors: result.errors,
          timeouts: result.timeouts,
          statusCodes,
          latency,
        })
      },
    )
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      const times = byStatus.get(statusCode)
      if (times) times.push(responseTime)
      else byStatus.set(statusCode, [responseTime])
    })
  })
}

function summarise(times: number[]): StatusLatency {
  const sorted = Float64Array.from(times).sort()
  return { count: sorted.length, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99) }
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!
}

// ---------------------------------------------------------------------------------------------
// Scenarios

interface Outcome {
  name: string
  measurement: Measurement
  /** Non-2xx answers and connection errors during the warm-up (they fail the run too). */
  warmupFailures: number
  /** Refresh only: chains that got a non-200 answer, of how many. */
  brokenChains?: { broken: number; of: number; firstError?: string }
  /** GET /v1/me under a login flood only: what the flood saw. */
  flood?: FloodResult
}

/**
 * CPU time used so far, µs (utime + stime of /proc/<pid>/stat; Linux only): the whole process,
 * or with `thread`, one of its threads (the main thread's id is the pid).
 */
async function processCpu(pid: number, thread?: number): Promise<number | undefined> {
  try {
    const stat = await readFile(
      thread === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${thread}/stat`,
      'utf8',
    )
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return ((Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS) * 1e6
  } catch {
    return undefined
  }
}
/** USER_HZ: 100 on every Linux build that matters. */
const CLOCK_TICKS = 100

async function scenario(
  name: string,
  server: Server,
  load: () => Load,
  duration = DURATION,
): Promise<Outcome> {
  const port = server.ready.port
  let warmupFailures = 0
  if (WARMUP > 0) {
    log(`${name}: warm-up ${WARMUP} s`)
    const warm = await fire(port, load(), WARMUP)
    warmupFailures = warm.non2xx + warm.errors
  }
  log(`${name}: measuring ${duration} s`)
  const serverBefore = await processCpu(server.pid)
  const mainBefore = await processCpu(server.pid, server.pid)
  const loadBefore = process.cpuUsage()
  const measurement = await fire(port, load(), duration)
  const loadUsed = process.cpuUsage(loadBefore)
  const serverAfter = await processCpu(server.pid)
  const mainAfter = await processCpu(server.pid, server.pid)
  if (serverBefore !== undefined && serverAfter !== undefined && measurement.total > 0) {
    measurement.cpu = {
      server: (serverAfter - serverBefore) / measurement.total,
      ...(mainBefore !== undefined && mainAfter !== undefined
        ? { serverMainThread: (mainAfter - mainBefore) / measurement.total }
        : {}),
      load: (loadUsed.user + loadUsed.system) / measurement.total,
    }
  }
  return { name, measurement, warmupFailures }
}

async function post(port: number, path: string, body: unknown): Promise<Record<string, unknown>> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  const json = (await response.json()) as Record<string, unknown>
  if (response.status !== 200) throw new Error(`POST ${path}: ${response.status} ${JSON.stringify(json)}`)
  return json
}

interface Chain {
  token: string
  rotations: number
  failures: number
}

/**
 * N refresh-token chains: each autocannon client (one connection) owns one chain and always
 * presents the refresh token its previous answer returned. autocannon's per-request `context`
 * is reset before every request when `requests` has one entry, so the chain lives in the
 * closures given to each client through `setupClient` → `client.setRequests`.
 */
function refreshLoad(
  chains: Chain[],
  onFailure: (message: string) => void,
  endpoint: { path: string; extra: string } = { path: '/v1/auth/token', extra: '' },
): Load {
  const unclaimed = [...chains]
  return {
    path: endpoint.path,
    method: 'POST',
    connections: chains.length,
    setupClient(client) {
      const chain = unclaimed.shift()
      if (!chain) throw new Error('more autocannon clients than refresh chains')
      client.setRequests([
        {
          method: 'POST',
          path: endpoint.path,
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          setupRequest: (request) => ({
            ...request,
            body: `grant_type=refresh_token&refresh_token=${encodeURIComponent(chain.token)}${endpoint.extra}`,
          }),
          onResponse: (status, body) => {
            let next: unknown
            try {
              next = (JSON.parse(body) as { refresh_token?: unknown }).refresh_token
            } catch {
              next = undefined
            }
            if (status === 200 && typeof next === 'string') {
              chain.token = next
              chain.rotations++
            } else {
              chain.failures++
              onFailure(`${status} ${body.slice(0, 200)}`)
            }
          },
        },
      ])
    },
  }
}

// ---------------------------------------------------------------------------------------------
// Login flood: a second autocannon in its own process (`bench/run.ts flood`), so that handling
// its hundreds of answers per second does not delay the event loop that times GET /v1/me.

const FLOODED = 'GET /v1/me (login flood)'
/**
 * BENCH_ONLY group, scenario name, flood connections. With 128 connections about half the logins
 * wait out their 2 s and get 503; 32 keep argon2 at full throughput, every login served in time.
 */
const FLOODS = [
  ['flood', FLOODED, FLOOD_CONNECTIONS],
  ['flood-paced', 'GET /v1/me (login flood at argon2 pace)', 32],
] as const
const REFRESH = 'POST /v1/auth/token (refresh)'
/** BENCH_ONLY group, SIGNING_ALG, scenario name. */
const ALG_VARIANTS = [
  ['refresh-es256', 'ES256', 'POST /v1/auth/token (refresh, ES256)'],
  ['refresh-eddsa', 'EdDSA', 'POST /v1/auth/token (refresh, EdDSA)'],
] as const
const PEER_REFRESH = 'oidc-provider refresh (peer)'
const BARE_ROTATION = 'bare rotation (Redis + jose sign)'
const SIGN_IN_PROCESS = 'jose RS256 sign, in-process'
/** In flight at once for the in-process signing ceiling. */
const SIGN_IN_FLIGHT = 8

/**
 * The signing ceiling: jose signs access-token claims with RS256 (RSA 2048, a WebCrypto key as
 * the key ring uses) in this process, SIGN_IN_FLIGHT at a time, no HTTP. What a refresh can at
 * most approach, since each one signs an access token.
 */
async function signInProcess(): Promise<Outcome> {
  const { SignJWT, generateKeyPair } = await import('jose')
  const { privateKey } = await generateKeyPair('RS256', { modulusLength: 2048 })
  const sign = () =>
    new SignJWT({ scope: 'profile sessions', roles: ['user'], sid: 'bench', amr: ['pwd'] })
      .setProtectedHeader({ alg: 'RS256', kid: 'bench', typ: 'at+jwt' })
      .setIssuer('http://latchkey.bench')
      .setSubject('bench')
      .setAudience('http://latchkey.bench')
      .setIssuedAt()
      .setExpirationTime('15m')
      .setJti('bench')
      .sign(privateKey)
  const run = async (seconds: number) => {
    let count = 0
    const deadline = performance.now() + seconds * 1000
    await Promise.all(
      Array.from({ length: SIGN_IN_FLIGHT }, async () => {
        while (performance.now() < deadline) {
          await sign()
          count++
        }
      }),
    )
    return count
  }
  log(`${SIGN_IN_PROCESS}: warming up ${WARMUP} s, measuring ${DURATION} s`)
  if (WARMUP > 0) await run(WARMUP)
  const before = process.cpuUsage()
  const count = await run(DURATION)
  const used = process.cpuUsage(before)
  return {
    name: SIGN_IN_PROCESS,
    warmupFailures: 0,
    measurement: {
      seconds: DURATION,
      connections: SIGN_IN_FLIGHT,
      requestsPerSecond: count / DURATION,
      p50: Number.NaN,
      p99: Number.NaN,
      total: count,
      non2xx: 0,
      errors: 0,
      timeouts: 0,
      statusCodes: {},
      latency: {},
      // All of it is the signing process's own (its main thread and libuv's pool).
      cpu: { server: (used.user + used.system) / count, load: 0 },
    },
  }
}
/** The flood's answers that are its point: verified (401 wrong password, 200) or shed (503). */
const FLOOD_EXPECTED = new Set(['200', '401', '503'])

interface FloodPlan {
  port: number
  connections: number
  warmup: number
  duration: number
  /** Login bodies, handed to the connections in turn. */
  bodies: string[]
}

interface FloodResult {
  warm?: Measurement
  measured: Measurement
  /** Added by the parent: the flood's connections. */
  connections?: number
  /** 503 answers (warm-up included) that came without a Retry-After header. */
  missingRetryAfter: number
  /** Added by the parent: the server's log lines while flooded, and the first one. */
  serverLog?: { lines: number; first?: string }
}

function deferred<T>() {
  let resolve!: (value: T) => void
  let reject!: (error: Error) => void
  const promise = new Promise<T>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

/** Starts the flood process; `started` when its autocannon is about to connect, `done` with its result. */
function startFlood(plan: FloodPlan): { started: Promise<void>; done: Promise<FloodResult> } {
  const child = spawn(process.execPath, ['--import', 'tsx', SELF, 'flood'], {
    cwd: ROOT,
    env: { ...process.env, BENCH_FLOOD_PLAN: JSON.stringify(plan) },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  children.add(child)
  const started = deferred<void>()
  const done = deferred<FloodResult>()
  // Awaited later (or never, when the scenario fails first): no unhandled rejection meanwhile.
  done.promise.catch(() => {})
  eachLine(child, (line) => {
    let message: { flood?: unknown; result?: FloodResult } = {}
    try {
      message = JSON.parse(line) ?? {}
    } catch {}
    if (message.flood === 'started') started.resolve()
    else if (message.flood === 'done' && message.result) done.resolve(message.result)
    else process.stderr.write(`[flood] ${line}\n`)
  })
  child.once('exit', (code, signal) => {
    children.delete(child)
    // No-ops for whichever already settled.
    const error = new Error(`the login flood exited (${signal ?? `code ${code}`}) before reporting`)
    started.reject(error)
    done.reject(error)
  })
  return { started: started.promise, done: done.promise }
}

/** `bench/run.ts flood`: fires the plan in BENCH_FLOOD_PLAN, warm-up then measurement, and prints the result. */
async function floodMain(): Promise<number> {
  const plan = JSON.parse(process.env.BENCH_FLOOD_PLAN ?? '') as FloodPlan
  let missingRetryAfter = 0
  const load = (): Load => {
    let next = 0
    return {
      path: '/v1/auth/login',
      method: 'POST',
      connections: plan.connections,
      setupClient(client) {
        client.setRequests([
          {
            method: 'POST',
            path: '/v1/auth/login',
            headers: { 'content-type': 'application/json' },
            body: plan.bodies[next++ % plan.bodies.length]!,
            onResponse: (status, _body, _context, headers) => {
              if (status !== 503) return
              if (!Object.keys(headers ?? {}).some((name) => name.toLowerCase() === 'retry-after'))
                missingRetryAfter++
            },
          },
        ])
      },
    }
  }
  process.stdout.write(`${JSON.stringify({ flood: 'started' })}\n`)
  const warm = plan.warmup > 0 ? await fire(plan.port, load(), plan.warmup) : undefined
  const measured = await fire(plan.port, load(), plan.duration)
  const result: FloodResult = { ...(warm ? { warm } : {}), measured, missingRetryAfter }
  process.stdout.write(`${JSON.stringify({ flood: 'done', result })}\n`)
  return 0
}

// ---------------------------------------------------------------------------------------------
// The run

interface Resources {
  /** More databases made during the run (dropped with the main one). */
  extraDatabases: string[]
  databaseName: string
  databaseUrl: string
  redisPrefix: string
  dataDir: string
}

async function createResources(): Promise<Resources> {
  const databaseName = `latchkey_bench_${randomBytes(6).toString('hex')}`
  const admin = postgres(ADMIN_DATABASE_URL, { max: 1, onnotice: () => {} })
  try {
    await admin.unsafe(`create database ${databaseName}`)
  } finally {
    await admin.end()
  }
  const url = new URL(ADMIN_DATABASE_URL)
  url.pathname = `/${databaseName}`
  return {
    extraDatabases: [],
    databaseName,
    databaseUrl: url.toString(),
    redisPrefix: `lkbench:${randomBytes(6).toString('hex')}:`,
    dataDir: await mkdtemp(join(tmpdir(), 'latchkey-bench-')),
  }
}

/** Another database for this run, `<main>_<suffix>`; answers its URL. */
async function extraDatabase(resources: Resources, suffix: string): Promise<string> {
  const name = `${resources.databaseName}_${suffix}`
  const admin = postgres(ADMIN_DATABASE_URL, { max: 1, onnotice: () => {} })
  try {
    await admin.unsafe(`create database ${name}`)
  } finally {
    await admin.end()
  }
  resources.extraDatabases.push(name)
  const url = new URL(ADMIN_DATABASE_URL)
  url.pathname = `/${name}`
  return url.toString()
}

async function removeResources(resources: Resources): Promise<void> {
  const admin = postgres(ADMIN_DATABASE_URL, { max: 1, onnotice: () => {} })
  for (const name of [resources.databaseName, ...resources.extraDatabases]) {
    await admin
      .unsafe(`drop database if exists ${name} with (force)`)
      .catch((error: unknown) => log(`could not drop ${name}: ${error}`))
  }
  await admin.end()
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 })
  try {
    await redis.connect()
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${resources.redisPrefix}*`, 'COUNT', 1000)
      cursor = next
      if (keys.length > 0) await redis.del(...keys)
    } while (cursor !== '0')
  } catch (error) {
    log(`could not clean Redis prefix ${resources.redisPrefix}: ${error}`)
  } finally {
    redis.disconnect()
  }
  await rm(resources.dataDir, { recursive: true, force: true })
}

async function stopAllChildren(): Promise<void> {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
  }
  const deadline = Date.now() + 10_000
  while (children.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
  for (const child of children) child.kill('SIGKILL')
}

async function runAll(resources: Resources): Promise<Outcome[]> {
  const outcomes: Outcome[] = []
  const password = randomBytes(18).toString('base64url')
  // One key-encryption key for every product child: they share the signing-key table.
  const kek = randomBytes(32).toString('hex')
  const productEnv = (users: number) => ({
    BENCH_DATABASE_URL: resources.databaseUrl,
    BENCH_REDIS_URL: REDIS_URL,
    BENCH_REDIS_PREFIX: resources.redisPrefix,
    BENCH_KEY_ENCRYPTION_KEY: kek,
    BENCH_DATA_DIR: resources.dataDir,
    BENCH_PASSWORD: password,
    BENCH_USERS: String(users),
  })

  const withServer = async (
    kind: string,
    env: Record<string, string>,
    body: (s: Server) => Promise<void>,
    quiet = false,
  ) => {
    const server = await startServer(kind, env, quiet)
    try {
      await body(server)
      // autocannon drops its sockets at the deadline; let the requests still in the server
      // finish before SIGTERM closes the pools under them (else they log as failed queries).
      await new Promise((resolve) => setTimeout(resolve, 1000))
    } finally {
      await server.stop()
    }
  }

  if (wanted('bare'))
    await withServer('bare', {}, async (server) => {
      outcomes.push(await scenario('bare GET /', server, () => ({ path: '/', connections: CONNECTIONS })))
    })

  if (wanted('verify'))
    await withServer('jose-verify', {}, async (server) => {
      const { ready } = server
      const headers = { authorization: `Bearer ${ready.token}` }
      outcomes.push(
        await scenario('jose RS256 verify', server, () => ({
          path: '/verify',
          headers,
          connections: CONNECTIONS,
        })),
      )
    })

  if (wanted('sign'))
    await withServer('jose-sign', {}, async (server) => {
      outcomes.push(
        await scenario('jose RS256 sign', server, () => ({ path: '/sign', connections: CONNECTIONS })),
      )
    })

  if (wanted('me'))
    await withServer('product', productEnv(1), async (server) => {
      const { ready } = server
      const email = ready.emails![0]!
      const tokens = await post(ready.port, '/v1/auth/login', { email, password })
      const headers = { authorization: `Bearer ${tokens.access_token}` }
      outcomes.push(
        await scenario('GET /v1/me', server, () => ({
          path: '/v1/me',
          headers,
          connections: CONNECTIONS,
        })),
      )
    })

  // The same GET /v1/me while a second load generator floods login with wrong passwords. The
  // flood's 401s and 503s are its expected answers; GET /v1/me must still answer 2xx only.
  // The server's log is counted, not echoed: every shed login may log a line.
  const floodScenario = (name: string, connections: number) =>
    withServer(
      'product',
      productEnv(1 + FLOOD_USERS),
      async (server) => {
        const { port, emails } = server.ready
        const [email, ...targets] = emails!
        const tokens = await post(port, '/v1/auth/login', { email, password })
        const headers = { authorization: `Bearer ${tokens.access_token}` }
        const wrong = `${password}-wrong`
        const flood = startFlood({
          port,
          connections,
          warmup: WARMUP,
          // A second longer: GET /v1/me's measurement must not outlast the flood.
          duration: DURATION + 1,
          bodies: targets.map((target) => JSON.stringify({ email: target, password: wrong })),
        })
        await flood.started
        log(`login flood: ${connections} connections, wrong passwords for ${targets.length} users`)
        const outcome = await scenario(name, server, () => ({
          path: '/v1/me',
          headers,
          connections: CONNECTIONS,
        }))
        log('login flood: waiting for its last second')
        outcome.flood = { ...(await flood.done), connections, serverLog: server.logs() }
        outcomes.push(outcome)
      },
      true,
    )

  for (const [group, name, connections] of FLOODS) if (wanted(group)) await floodScenario(name, connections)

  /** Refresh rotation on 16 independent chains, with the signing algorithm of `env`. */
  const refreshScenario = (name: string, env: Record<string, string>) =>
    withServer('product', { ...productEnv(CHAINS), ...env }, async (server) => {
      const { ready } = server
      const emails = ready.emails!
      // Two sessions per user: one chain set for the warm-up, a fresh one for the measurement,
      // so a token spent by a request cut off at the end of the warm-up cannot break a chain.
      log(`refresh: logging in ${emails.length * (WARMUP > 0 ? 2 : 1)} sessions`)
      const login = async (email: string): Promise<Chain> => {
        const tokens = await post(ready.port, '/v1/auth/login', { email, password })
        return { token: tokens.refresh_token as string, rotations: 0, failures: 0 }
      }
      const warmChains = WARMUP > 0 ? await Promise.all(emails.map(login)) : []
      const chains = await Promise.all(emails.map(login))
      let firstError: string | undefined
      const noteFailure = (message: string) => {
        firstError ??= message
      }
      const sets = WARMUP > 0 ? [warmChains, chains] : [chains]
      const outcome = await scenario(name, server, () => refreshLoad(sets.shift() ?? [], noteFailure))
      // Broken: any non-200 answer, or (measured chains) not a single rotation.
      const broken = [
        ...warmChains.filter((chain) => chain.failures > 0),
        ...chains.filter((chain) => chain.failures > 0 || chain.rotations === 0),
      ]
      if (broken.some((chain) => chain.rotations === 0 && chain.failures === 0))
        noteFailure('a chain never rotated')
      outcome.brokenChains = {
        broken: broken.length,
        of: warmChains.length + chains.length,
        ...(firstError ? { firstError } : {}),
      }
      outcomes.push(outcome)
    })

  if (wanted('refresh')) await refreshScenario(REFRESH, {})
  // SIGNING_ALG=ES256 and EdDSA, each on a database of its own: the key table decides what
  // signs, and the first key is made with the configured algorithm.
  for (const [group, alg, name] of ALG_VARIANTS) {
    if (!wanted(group)) continue
    const databaseUrl = await extraDatabase(resources, alg.toLowerCase())
    await refreshScenario(name, { BENCH_DATABASE_URL: databaseUrl, BENCH_SIGNING_ALG: alg })
  }

  /** Refresh chains on a target that seeds its own refresh tokens (BENCH_USERS of them). */
  const seededChains = (name: string, kind: string, env: Record<string, string>) =>
    withServer(kind, { ...env, BENCH_USERS: String(CHAINS * 2) }, async (server) => {
      const { ready } = server
      const tokens = ready.refreshTokens!
      const chainsOf = (list: string[]): Chain[] =>
        list.map((token) => ({ token, rotations: 0, failures: 0 }))
      const warmChains = WARMUP > 0 ? chainsOf(tokens.slice(0, CHAINS)) : []
      const chains = chainsOf(tokens.slice(CHAINS, CHAINS * 2))
      let firstError: string | undefined
      const sets = WARMUP > 0 ? [warmChains, chains] : [chains]
      const outcome = await scenario(name, server, () =>
        refreshLoad(
          sets.shift() ?? [],
          (message) => {
            firstError ??= message
          },
          { path: '/token', extra: ready.clientId ? `&client_id=${ready.clientId}` : '' },
        ),
      )
      const broken = chains.filter((chain) => chain.failures > 0 || chain.rotations === 0)
      outcome.brokenChains = {
        broken: broken.length,
        of: chains.length,
        ...(firstError ? { firstError } : {}),
      }
      outcomes.push(outcome)
    })

  // The least a rotating refresh grant does (one Redis script, one jose signature), same load.
  if (wanted('rotate'))
    await seededChains(BARE_ROTATION, 'jose-rotate', {
      BENCH_REDIS_URL: REDIS_URL,
      BENCH_REDIS_PREFIX: resources.redisPrefix,
    })

  // The peer: oidc-provider's refresh grant (rotation, RS256 JWT access tokens), same load.
  if (wanted('peer')) await seededChains(PEER_REFRESH, 'oidc-provider', {})

  if (wanted('in-process')) outcomes.push(await signInProcess())

  if (wanted('login'))
    await withServer('product', productEnv(LOGIN_CONNECTIONS), async (server) => {
      const { ready } = server
      const bodies = ready.emails!.map((email) => JSON.stringify({ email, password }))
      outcomes.push(
        await scenario(
          'POST /v1/auth/login (argon2id)',
          server,
          () => {
            let next = 0
            return {
              path: '/v1/auth/login',
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: bodies[0]!,
              connections: LOGIN_CONNECTIONS,
              // One user per connection.
              setupClient: (client) => client.setBody(bodies[next++ % bodies.length]!),
            }
          },
          LOGIN_DURATION,
        ),
      )
    })

  return outcomes
}

// ---------------------------------------------------------------------------------------------
// Report

const RATIOS: Record<string, string[]> = {
  'jose RS256 verify': ['bare GET /'],
  'jose RS256 sign': ['bare GET /'],
  'GET /v1/me': ['bare GET /', 'jose RS256 verify'],
  ...Object.fromEntries(FLOODS.map(([, name]) => [name, ['GET /v1/me']])),
  [REFRESH]: [BARE_ROTATION, SIGN_IN_PROCESS, PEER_REFRESH],
  [BARE_ROTATION]: ['jose RS256 sign', SIGN_IN_PROCESS, PEER_REFRESH],
  ...Object.fromEntries(ALG_VARIANTS.map(([, , name]) => [name, [REFRESH, PEER_REFRESH]])),
  [PEER_REFRESH]: [SIGN_IN_PROCESS],
  'POST /v1/auth/login (argon2id)': ['bare GET /'],
}

const SHORT: Record<string, string> = {
  'bare GET /': 'bare',
  'jose RS256 verify': 'jose verify',
  'jose RS256 sign': 'jose sign',
  'GET /v1/me': 'idle',
  [SIGN_IN_PROCESS]: 'in-process sign',
  [PEER_REFRESH]: 'oidc-provider',
  [BARE_ROTATION]: 'bare rotation',
  [REFRESH]: 'RS256 refresh',
}

function ratios(outcome: Outcome, all: Outcome[]): string {
  const against = RATIOS[outcome.name]
  if (!against) return 'baseline'
  return against
    .map((name) => {
      const base = all.find((other) => other.name === name)
      if (!base) return `n/a vs ${SHORT[name]}`
      const ratio = outcome.measurement.requestsPerSecond / base.measurement.requestsPerSecond
      return `${ratio < 0.01 ? ratio.toFixed(4) : ratio.toFixed(3)}× ${SHORT[name]}`
    })
    .join(', ')
}

const fmt = {
  rps: (value: number) => Math.round(value).toLocaleString('en-US'),
  // Not finite: NaN, or null once a measurement has crossed JSON (the flood's).
  ms: (value: number) => (!Number.isFinite(value) ? 'n/a' : value < 10 ? value.toFixed(2) : value.toFixed(1)),
  count: (value: number) => value.toLocaleString('en-US'),
  ratio: (value: number) => (Number.isFinite(value) ? `${value.toFixed(2)}×` : 'n/a'),
  percent: (value: number) => `${(100 * value).toFixed(1)} %`,
}

function failures(outcome: Outcome): string[] {
  const m = outcome.measurement
  const problems: string[] = []
  if (m.non2xx > 0) {
    const codes = Object.entries(m.statusCodes)
      .filter(([code]) => !code.startsWith('2'))
      .map(([code, count]) => `${code}×${count}`)
      .join(' ')
    problems.push(`${m.non2xx} non-2xx (${codes})`)
  }
  if (m.errors > 0) problems.push(`${m.errors} connection errors (${m.timeouts} timeouts)`)
  if (outcome.warmupFailures > 0) problems.push(`${outcome.warmupFailures} failures during warm-up`)
  if (m.total === 0) problems.push('no answers at all')
  const chains = outcome.brokenChains
  if (chains && chains.broken > 0) {
    problems.push(
      `${chains.broken}/${chains.of} refresh chains broken${chains.firstError ? ` (first: ${chains.firstError})` : ''}`,
    )
  }
  if (outcome.flood) problems.push(...floodFailures(outcome.flood))
  return problems
}

/** 401 and 503 are what a flood should get; anything else (a 429, a 500), or no answer in time, is not. */
function floodFailures(flood: FloodResult): string[] {
  const phases = flood.warm ? [flood.warm, flood.measured] : [flood.measured]
  const problems: string[] = []
  const unexpected = new Map<string, number>()
  for (const m of phases) {
    for (const [code, count] of Object.entries(m.statusCodes)) {
      if (!FLOOD_EXPECTED.has(code)) unexpected.set(code, (unexpected.get(code) ?? 0) + count)
    }
  }
  if (unexpected.size > 0) {
    const codes = [...unexpected].map(([code, count]) => `${code}×${count}`).join(' ')
    problems.push(`login flood: answers other than 200/401/503 (${codes})`)
  }
  const errors = phases.reduce((sum, m) => sum + m.errors, 0)
  const timeouts = phases.reduce((sum, m) => sum + m.timeouts, 0)
  if (errors > 0) problems.push(`login flood: ${errors} connection errors (${timeouts} timeouts)`)
  if (flood.missingRetryAfter > 0)
    problems.push(`login flood: ${flood.missingRetryAfter} 503 answers without Retry-After`)
  if (flood.measured.total === 0) problems.push('login flood: no answers at all')
  return problems
}

const FLOOD_LABELS: Record<string, string> = {
  '200': '200 (logged in)',
  '401': '401 invalid_credentials (hashed)',
  '503': '503 service_unavailable (shed)',
  all: 'all answers',
}

/** The flood's answers by status, then all of them: [label, count, req/s, p50, p99]. */
function floodRows(flood: FloodResult): string[][] {
  const m = flood.measured
  const codes = Object.keys(m.latency)
    .filter((code) => code !== 'all')
    .sort()
  return [...codes, 'all'].map((code) => {
    const stat = m.latency[code]!
    return [
      FLOOD_LABELS[code] ?? code,
      fmt.count(stat.count),
      fmt.rps(stat.count / m.seconds),
      fmt.ms(stat.p50),
      fmt.ms(stat.p99),
    ]
  })
}

function floodSummary(flood: FloodResult): string {
  const m = flood.measured
  const shed = m.latency['503']?.count ?? 0
  const total = m.latency.all?.count ?? 0
  const log = flood.serverLog
  let first = ''
  if (log?.first) {
    try {
      const entry = JSON.parse(log.first) as { level?: unknown; msg?: unknown }
      first = ` (first: level ${entry.level} "${entry.msg}")`
    } catch {
      first = ` (first: ${log.first.slice(0, 100)})`
    }
  }
  return [
    `shed: ${fmt.percent(total > 0 ? shed / total : Number.NaN)} of the flood's answers`,
    shed > 0
      ? flood.missingRetryAfter === 0
        ? 'every 503 with Retry-After'
        : `${flood.missingRetryAfter} 503s without Retry-After`
      : undefined,
    log ? `server log lines while flooded: ${fmt.count(log.lines)}${first}` : undefined,
  ]
    .filter(Boolean)
    .join('; ')
}

/** The performance targets, each a ratio between two measurements of this run. */
function targets(outcomes: Outcome[]): string[][] {
  const rps = (name: string) =>
    outcomes.find((o) => o.name === name)?.measurement.requestsPerSecond ?? Number.NaN
  const idle = outcomes.find((o) => o.name === 'GET /v1/me')?.measurement
  const rows: [string, number, string, boolean][] = [
    [
      `refresh / in-process RS256 sign (${SIGN_IN_FLIGHT} in flight)`,
      rps(REFRESH) / rps(SIGN_IN_PROCESS),
      '>= 0.75',
      rps(REFRESH) / rps(SIGN_IN_PROCESS) >= 0.75,
    ],
    [
      'refresh / oidc-provider refresh',
      rps(REFRESH) / rps(PEER_REFRESH),
      '>= 2',
      rps(REFRESH) / rps(PEER_REFRESH) >= 2,
    ],
    [
      'GET /v1/me / bare Fastify + jose verify',
      rps('GET /v1/me') / rps('jose RS256 verify'),
      '>= 0.7',
      rps('GET /v1/me') / rps('jose RS256 verify') >= 0.7,
    ],
  ]
  for (const flooded of outcomes.filter((o) => o.flood)) {
    if (!idle) break
    const under = flooded.measurement
    const throughput = under.requestsPerSecond / idle.requestsPerSecond
    const p99 = under.p99 / idle.p99
    const label = `GET /v1/me under a ${flooded.flood?.connections}-connection login flood / idle`
    rows.push([`${label}, req/s`, throughput, '>= 0.5', throughput >= 0.5])
    rows.push([`${label}, p99`, p99, '<= 3', p99 <= 3])
  }
  return rows.map(([name, value, goal, met]) => [
    name,
    fmt.ratio(value),
    goal,
    Number.isFinite(value) && met ? 'yes' : 'no',
  ])
}

function table(header: string[], rows: string[][], align: ('l' | 'r')[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)))
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (align[i] === 'r' ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
      .join('  ')
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

function report(outcomes: Outcome[]): number {
  const out = (text = '') => process.stdout.write(`${text}\n`)
  out()
  out(
    table(
      [
        'scenario',
        'conns',
        'secs',
        'req/s',
        'p50 ms',
        'p99 ms',
        'CPU µs',
        'main µs',
        'load µs',
        'non-2xx',
        'req/s vs baseline',
      ],
      outcomes.map((o) => [
        o.name,
        String(o.measurement.connections),
        String(o.measurement.seconds),
        fmt.rps(o.measurement.requestsPerSecond),
        fmt.ms(o.measurement.p50),
        fmt.ms(o.measurement.p99),
        o.measurement.cpu ? fmt.rps(o.measurement.cpu.server) : 'n/a',
        o.measurement.cpu?.serverMainThread !== undefined
          ? fmt.rps(o.measurement.cpu.serverMainThread)
          : 'n/a',
        o.measurement.cpu ? fmt.rps(o.measurement.cpu.load) : 'n/a',
        String(o.measurement.non2xx + o.warmupFailures),
        ratios(o, outcomes),
      ]),
      ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'l'],
    ),
  )
  for (const refresh of outcomes.filter((o) => o.brokenChains)) {
    if (!refresh.brokenChains) continue
    out()
    out(
      `${refresh.name}: chains ${refresh.brokenChains.of - refresh.brokenChains.broken}/${refresh.brokenChains.of} intact`,
    )
  }
  out()
  out('targets (ratios measured in this run):')
  out(table(['target', 'measured', 'goal', 'met'], targets(outcomes), ['l', 'r', 'r', 'l']))
  // What the refresh targets are worth on this machine: the same ratios for the bare routes
  // that sign one RS256 token per answer and nothing else, or that also rotate in Redis.
  const rps = (name: string) => outcomes.find((o) => o.name === name)?.measurement.requestsPerSecond
  for (const [name, what] of [
    ['jose RS256 sign', 'bare Fastify + jose sign (one RS256 signature per answer, nothing else)'],
    [BARE_ROTATION, 'bare rotation (one Redis script and one RS256 signature per answer)'],
  ] as const) {
    const route = rps(name)
    if (route === undefined) continue
    const bound = (base: string) => {
      const against = rps(base)
      return against === undefined ? 'n/a' : fmt.ratio(route / against)
    }
    out(`for scale, ${what}: ${bound(SIGN_IN_PROCESS)} in-process sign, ${bound(PEER_REFRESH)} oidc-provider`)
  }
  const floods = outcomes.filter((o) => o.flood)
  const idle = outcomes.find((o) => o.name === 'GET /v1/me')
  for (const flooded of floods) {
    if (!flooded.flood) continue
    const connections = flooded.flood.connections ?? FLOOD_CONNECTIONS
    const under = flooded.measurement
    out()
    out(`GET /v1/me (${CONNECTIONS} connections), idle and under a ${connections}-connection login flood:`)
    if (idle) {
      const was = idle.measurement
      out(
        table(
          ['', 'req/s', 'p50 ms', 'p99 ms'],
          [
            ['idle', fmt.rps(was.requestsPerSecond), fmt.ms(was.p50), fmt.ms(was.p99)],
            ['under flood', fmt.rps(under.requestsPerSecond), fmt.ms(under.p50), fmt.ms(under.p99)],
            [
              'flood / idle',
              fmt.ratio(under.requestsPerSecond / was.requestsPerSecond),
              fmt.ratio(under.p50 / was.p50),
              fmt.ratio(under.p99 / was.p99),
            ],
          ],
          ['l', 'r', 'r', 'r'],
        ),
      )
    }
    out()
    out(
      `login flood (${connections} connections, wrong passwords for ${FLOOD_USERS} users, its own process), ${flooded.flood.measured.seconds} s measured:`,
    )
    out(
      table(['answer', 'count', 'req/s', 'p50 ms', 'p99 ms'], floodRows(flooded.flood), [
        'l',
        'r',
        'r',
        'r',
        'r',
      ]),
    )
    out(floodSummary(flooded.flood))
  }

  const cpu = cpus()
  out()
  out('| scenario | connections | req/s | p50 ms | p99 ms | server CPU µs/answer |')
  out('| --- | ---: | ---: | ---: | ---: | ---: |')
  for (const o of outcomes) {
    const m = o.measurement
    out(
      `| ${o.name} | ${m.connections} | ${fmt.rps(m.requestsPerSecond)} | ${fmt.ms(m.p50)} | ${fmt.ms(m.p99)} | ${m.cpu ? fmt.rps(m.cpu.server) : 'n/a'} |`,
    )
  }
  for (const flooded of floods) {
    if (!flooded.flood) continue
    out()
    out(`| login flood (${flooded.flood.connections} connections) | answers | req/s | p50 ms | p99 ms |`)
    out('| --- | ---: | ---: | ---: | ---: |')
    for (const row of floodRows(flooded.flood)) out(`| ${row.join(' | ')} |`)
  }
  out()
  out(
    `_Node ${process.version}, ${cpu.length} × ${cpu[0]?.model.trim() ?? 'unknown CPU'}; ${DURATION} s per scenario (login ${LOGIN_DURATION} s) after a ${WARMUP} s warm-up; login floods: ${FLOODS.map(([, , n]) => n).join(' and ')} connections of wrong passwords from a second autocannon process; autocannon, PostgreSQL and Redis on the same machine; 1-minute load average ${startLoad.toFixed(2)} before the run._`,
  )

  const problems = outcomes.flatMap((o) => failures(o).map((problem) => `${o.name}: ${problem}`))
  if (problems.length > 0) {
    out()
    out('FAILED:')
    for (const problem of problems) out(`  ${problem}`)
    return 1
  }
  return 0
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  log(
    `${DURATION} s per scenario (login ${LOGIN_DURATION} s), ${WARMUP} s warm-up; PostgreSQL ${new URL(ADMIN_DATABASE_URL).host}, Redis ${new URL(REDIS_URL).host}`,
  )
  if (startLoad > cpus().length / 2) {
    log(`warning: load average is ${startLoad.toFixed(2)} on ${cpus().length} CPUs; numbers will be noisy`)
  }
  const resources = await createResources()
  let cleaned: Promise<void> | undefined
  const cleanup = () => {
    cleaned ??= (async () => {
      await stopAllChildren()
      await removeResources(resources)
    })()
    return cleaned
  }
  const onSignal = (signal: NodeJS.Signals) => {
    log(`${signal}: stopping servers and removing ${resources.databaseName}`)
    void cleanup().finally(() => process.exit(130))
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    const outcomes = await runAll(resources)
    return report(outcomes)
  } finally {
    await cleanup()
  }
}

const entry = process.argv[2] === 'flood' ? floodMain : main
entry().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`bench: ${error instanceof Error ? (error.stack ?? error.message) : error}\n`)
    process.exit(1)
  },
)
