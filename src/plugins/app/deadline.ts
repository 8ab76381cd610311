import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { ProblemError } from '../../errors.js'

declare module 'fastify' {
  interface FastifyRequest {
    deadline: NodeJS.Timeout | null
  }
}

/**
 * Nothing waits forever: a request still unanswered after REQUEST_TIMEOUT seconds gets 503
 * service_unavailable with Retry-After (through the error handler, so the token endpoint answers
 * in its OAuth shape). Timeouts of the drivers bound almost every wait already; this catches the
 * rest, e.g. a database proxy that accepts connections and closes them during the handshake,
 * where postgres.js keeps reconnecting with the query queued.
 */
export default fp(
  async function deadline(app: FastifyInstance) {
    const ms = app.config.REQUEST_TIMEOUT * 1000
    app.decorateRequest('deadline', null)
    app.addHook('onRequest', async (request, reply) => {
      request.deadline = setTimeout(() => {
        if (reply.sent || reply.raw.headersSent) return
        request.log.error({ timeoutSeconds: app.config.REQUEST_TIMEOUT }, 'request deadline passed')
        reply.send(
          new ProblemError('service_unavailable', {
            detail: 'The request took too long; try again',
            headers: { 'retry-after': '5' },
          }),
        )
      }, ms)
      request.deadline.unref()
    })
    const clear = async (request: { deadline: NodeJS.Timeout | null }) => {
      if (request.deadline) clearTimeout(request.deadline)
    }
    app.addHook('onResponse', clear)
    app.addHook('onRequestAbort', clear)
  },
  { name: 'deadline', dependencies: ['error-handler'] },
)
