import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'

export type RefreshOutcome = 'rotated' | 'grace_retry' | 'reuse_detected' | 'expired' | 'invalid'
export type Dependency = 'database' | 'redis'

/** What the gauges read when Prometheus scrapes. */
export interface MetricSources {
  argon2Waiting(): number
  argon2InFlight(): number
  signingKeyAgeSeconds(): number | undefined
}

/**
 * The Prometheus metrics of one instance (prom-client, a registry of its own so that several
 * apps in one process do not share counters). Served at GET /metrics.
 */
export class Metrics {
  readonly registry = new Registry()
  readonly httpDuration: Histogram<'method' | 'route' | 'status_code'>
  readonly logins: Counter<'method' | 'outcome'>
  readonly refreshes: Counter<'outcome'>
  readonly rateLimitHits: Counter<'limit'>
  readonly dependencyErrors: Counter<'dependency'>

  constructor() {
    const registers = [this.registry]
    collectDefaultMetrics({ register: this.registry, prefix: 'latchkey_' })
    this.httpDuration = new Histogram({
      name: 'latchkey_http_request_duration_seconds',
      help: 'Time to answer a request, by route template and status code',
      labelNames: ['method', 'route', 'status_code'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    })
    this.logins = new Counter({
      name: 'latchkey_logins_total',
      help: 'Sign-in attempts by method (password, mfa, oidc, oidc_native) and outcome (success or the error code)',
      labelNames: ['method', 'outcome'],
      registers,
    })
    this.refreshes = new Counter({
      name: 'latchkey_refreshes_total',
      help: 'Refresh grants by outcome: rotated, grace_retry, reuse_detected, expired, invalid',
      labelNames: ['outcome'],
      registers,
    })
    this.rateLimitHits = new Counter({
      name: 'latchkey_rate_limit_hits_total',
      help: 'Requests refused by a rate limit, by limit',
      labelNames: ['limit'],
      registers,
    })
    this.dependencyErrors = new Counter({
      name: 'latchkey_dependency_errors_total',
      help: 'Failed calls to PostgreSQL or Redis',
      labelNames: ['dependency'],
      registers,
    })
  }

  /** Registers the gauges that read live state at scrape time. */
  observe(sources: MetricSources): void {
    const registers = [this.registry]
    new Gauge({
      name: 'latchkey_argon2_queue_depth',
      help: 'Password hashes waiting for a slot',
      registers,
      collect() {
        this.set(sources.argon2Waiting())
      },
    })
    new Gauge({
      name: 'latchkey_argon2_in_flight',
      help: 'Password hashes running now',
      registers,
      collect() {
        this.set(sources.argon2InFlight())
      },
    })
    new Gauge({
      name: 'latchkey_signing_key_age_seconds',
      help: 'Seconds since the current signing key started signing',
      registers,
      collect() {
        const age = sources.signingKeyAgeSeconds()
        if (age !== undefined) this.set(age)
      },
    })
  }

  refresh(outcome: RefreshOutcome): void {
    this.refreshes.inc({ outcome })
  }

  dependencyError(dependency: Dependency): void {
    this.dependencyErrors.inc({ dependency })
  }
}
