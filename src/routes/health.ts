import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { problemBody } from '../plugins/app/error-handler.js'

const Status = Type.Object({ status: Type.Literal('ok') })
const Readiness = Type.Object(
  {
    status: Type.Union([Type.Literal('ok'), Type.Literal('unavailable')]),
    checks: Type.Object({
      database: Type.Union([Type.Literal('up'), Type.Literal('down')]),
      redis: Type.Union([Type.Literal('up'), Type.Literal('down')]),
    }),
  },
  { additionalProperties: true },
)

/** Liveness (the process answers) and readiness (its dependencies answer). */
const healthRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/healthz',
    {
      schema: {
        tags: ['operations'],
        summary: 'Liveness',
        description: 'Answers 200 while the process runs; it checks nothing else.',
        response: { 200: Status },
      },
    },
    async () => ({ status: 'ok' as const }),
  )

  app.get(
    '/readyz',
    {
      schema: {
        tags: ['operations'],
        summary: 'Readiness: database and Redis',
        description:
          'Checks PostgreSQL and Redis. 200 when both answer; 503 with Retry-After naming the one that is down (take the instance out of the load balancer).',
        response: { 200: Readiness, 503: Type.Ref('Problem') },
      },
    },
    async (request, reply) => {
      reply.header('cache-control', 'no-store')
      const result = await app.services.readiness()
      const checks = {
        database: result.database ? ('up' as const) : ('down' as const),
        redis: result.redis ? ('up' as const) : ('down' as const),
      }
      if (result.database && result.redis) return { status: 'ok' as const, checks }
      const failing = Object.entries(checks)
        .filter(([, state]) => state === 'down')
        .map(([name]) => name)
      return reply
        .code(503)
        .header('retry-after', '5')
        .type('application/problem+json')
        .send({
          ...problemBody('service_unavailable', 503, request.id, {
            detail: `Unavailable: ${failing.join(', ')}`,
          }),
          checks,
        })
    },
  )
}

export default healthRoutes
