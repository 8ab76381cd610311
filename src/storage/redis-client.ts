import { Cluster, Redis, type RedisOptions } from 'ioredis'

/** A single node or Sentinel-managed primary (Redis), or a Redis Cluster. */
export type RedisClient = Redis | Cluster

export interface RedisSettings {
  REDIS_URL?: string | undefined
  /** `host:port` of each Sentinel; the primary is REDIS_SENTINEL_NAME. */
  REDIS_SENTINELS: readonly string[]
  REDIS_SENTINEL_NAME: string
  /** `host:port` of some Cluster nodes; the rest are discovered. */
  REDIS_CLUSTER_NODES: readonly string[]
  REDIS_PASSWORD?: string | undefined
}

/**
 * Fail fast: bounded connect and command timeouts and no offline queue, so an outage answers
 * 503 at once instead of holding requests; the client reconnects by itself.
 */
const FAIL_FAST: RedisOptions = {
  connectTimeout: 2000,
  commandTimeout: 2000,
  maxRetriesPerRequest: 1,
  enableOfflineQueue: false,
  lazyConnect: false,
  retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
  // Commands issued in one tick of the event loop (concurrent requests) go out in one write.
  enableAutoPipelining: true,
}

function hostPort(entry: string): { host: string; port: number } {
  const index = entry.lastIndexOf(':')
  const host = index > 0 ? entry.slice(0, index).replace(/^\[|\]$/g, '') : entry
  const port = index > 0 ? Number(entry.slice(index + 1)) : 6379
  return { host, port }
}

/**
 * The Redis client for the configuration: a Cluster when REDIS_CLUSTER_NODES is set, a
 * Sentinel-managed primary when REDIS_SENTINELS is set, else the single node of REDIS_URL.
 * Every key a Lua script touches shares one hash tag, so each script stays in one slot.
 */
export function createRedisClient(settings: RedisSettings): RedisClient {
  const password = settings.REDIS_PASSWORD ? { password: settings.REDIS_PASSWORD } : {}
  let client: RedisClient
  if (settings.REDIS_CLUSTER_NODES.length > 0) {
    client = new Cluster(settings.REDIS_CLUSTER_NODES.map(hostPort), {
      redisOptions: { ...FAIL_FAST, ...password },
      enableOfflineQueue: false,
      enableAutoPipelining: true,
      clusterRetryStrategy: (attempt) => Math.min(attempt * 200, 2000),
      slotsRefreshTimeout: 2000,
    })
  } else if (settings.REDIS_SENTINELS.length > 0) {
    client = new Redis({
      ...FAIL_FAST,
      ...password,
      sentinels: settings.REDIS_SENTINELS.map(hostPort),
      name: settings.REDIS_SENTINEL_NAME,
      sentinelRetryStrategy: (attempt) => Math.min(attempt * 200, 2000),
    })
  } else if (settings.REDIS_URL) {
    client = new Redis(settings.REDIS_URL, { ...FAIL_FAST, ...password })
  } else {
    throw new Error('no Redis configured')
  }
  client.on('error', () => {
    // Connection errors surface through the commands that fail; readiness reports them.
  })
  return client
}

/** Whether the configuration names a Redis deployment (else the in-process stores serve). */
export function redisConfigured(settings: RedisSettings): boolean {
  return (
    Boolean(settings.REDIS_URL) ||
    settings.REDIS_SENTINELS.length > 0 ||
    settings.REDIS_CLUSTER_NODES.length > 0
  )
}

/** Resolves once the client is ready; fails after 10 s. */
export async function waitForRedis(client: RedisClient): Promise<void> {
  if (client.status === 'ready') return
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup()
      reject(new Error('Redis is not reachable (REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES)'))
    }, 10_000)
    const onReady = () => {
      cleanup()
      resolve()
    }
    const cleanup = () => {
      clearTimeout(timer)
      client.off('ready', onReady)
    }
    client.on('ready', onReady)
  })
}
