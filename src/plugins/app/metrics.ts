import { timingSafeEqual } from 'node:crypto'
import { Type } from '@sinclair/typebox'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { ProblemError } from '../../errors.js'
import { problems } from '../../schemas/common.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the sign-in endpoints (password, mfa, oidc, oidc_native): the answer counts as a login. */
    loginMethod: string | null
  }
}

/**
 * Prometheus metrics: a latency histogram per route template (never per raw URL, so ids do not
 * explode the series), logins by method and outcome, and what src/metrics.ts collects. GET
 * /metrics serves them; with METRICS_TOKEN set it needs `Authorization: Bearer <METRICS_TOKEN>`.
 */
export default fp(
  async function metricsPlugin(app: FastifyInstance) {
    const { metrics } = app.services
    const token = app.config.METRICS_TOKEN
    app.decorateRequest('loginMethod', null)

    app.addHook('onResponse', async (request, reply) => {
      const route = request.routeOptions.url ?? 'unmatched'
      metrics.httpDuration.observe(
        { method: request.method, route, status_code: String(reply.statusCode) },
        reply.elapsedTime / 1000,
      )
      if (request.loginMethod) {
        metrics.logins.inc({
          method: request.loginMethod,
          outcome: reply.statusCode < 400 ? 'success' : (request.errorCode ?? String(reply.statusCode)),
        })
      }
    })

    const authorized = (request: FastifyRequest) => {
      if (!token) return true
      const presented = Buffer.from(request.headers.authorization ?? '')
      const expected = Buffer.from(`Bearer ${token}`)
      return presented.length === expected.length && timingSafeEqual(presented, expected)
    }

    app.get(
      '/metrics',
      {
        schema: {
          tags: ['operations'],
          summary: 'Prometheus metrics',
          description:
            'Prometheus text format. When METRICS_TOKEN is set, send `Authorization: Bearer <METRICS_TOKEN>` (else 401).',
          produces: ['text/plain'],
          security: [{ metricsToken: [] }],
          response: {
            200: Type.String({ description: 'Prometheus text exposition format 0.0.4' }),
            ...problems(401),
          },
        },
      },
      async (request, reply) => {
        if (!authorized(request)) {
          throw new ProblemError('unauthenticated', {
            detail: 'Send Authorization: Bearer <METRICS_TOKEN>',
            headers: { 'www-authenticate': 'Bearer realm="metrics"' },
          })
        }
        reply.header('cache-control', 'no-store').type(metrics.registry.contentType)
        return metrics.registry.metrics()
      },
    )
  },
  { name: 'metrics', dependencies: ['error-handler'] },
)
