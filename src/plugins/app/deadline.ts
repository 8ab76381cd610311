import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { ProblemError } from '../../errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Resolves once no request is in flight, or after `limitMs`; answers how many still were.
     * A request is in flight from onRequest until its answer is produced (onSend) or sent
     * (onResponse), also when its client has gone away: its handler still uses the pools.
     */
    drainRequests(limitMs: number): Promise<number>
  }
}

interface InFlight {
  reply: FastifyReply
  startedAt: number
  /** The deadline answer was sent, or the client had gone: only the handler is left. */
  answered: boolean
  /** The preHandler hooks ran: the request reached its handler (and may use the pools). */
  handling: boolean
}

/**
 * Nothing waits forever: a request still unanswered after REQUEST_TIMEOUT seconds gets 503
 * service_unavailable with Retry-After (through the error handler, so the token endpoint answers
 * in its OAuth shape). Timeouts of the drivers bound almost every wait already; this catches the
 * rest, e.g. a database proxy that accepts connections and closes them during the handshake,
 * where postgres.js keeps reconnecting with the query queued.
 *
 * One sweep over the requests in flight (in arrival order) runs a few times per timeout, rather
 * than a timer and an abort listener per request: those cost more than a whole GET /healthz.
 * The same register lets shutdown wait for handlers whose clients left (`drainRequests`).
 */
export default fp(
  async function deadline(app: FastifyInstance) {
    const ms = app.config.REQUEST_TIMEOUT * 1000
    const inFlight = new Map<FastifyRequest, InFlight>()
    const whenIdle = new Set<() => void>()

    const finish = (request: FastifyRequest) => {
      if (!inFlight.delete(request) || inFlight.size > 0) return
      for (const resolve of whenIdle) resolve()
    }
    app.addHook('onRequest', (request, reply, done) => {
      inFlight.set(request, { reply, startedAt: Date.now(), answered: false, handling: false })
      done()
    })
    app.addHook('preHandler', (request, _reply, done) => {
      const entry = inFlight.get(request)
      if (entry) entry.handling = true
      done()
    })
    app.addHook('onSend', (request, _reply, payload, done) => {
      finish(request)
      done(null, payload)
    })
    app.addHook('onResponse', (request, _reply, done) => {
      finish(request)
      done()
    })

    /**
     * A request whose client went away before it reached its handler may never get further
     * (a body stream destroyed before it was read ends neither with 'end' nor with 'error'):
     * nothing of it is left to wait for.
     */
    const forgetAbandoned = () => {
      for (const [request, entry] of inFlight) if (request.raw.destroyed && !entry.handling) finish(request)
    }

    const sweep = () => {
      const now = Date.now()
      forgetAbandoned()
      for (const [request, entry] of inFlight) {
        const age = now - entry.startedAt
        if (age < ms) break // arrival order: the rest are younger
        if (entry.answered) {
          // A handler that never ends must not be waited for forever either.
          if (age >= 2 * ms) finish(request)
          continue
        }
        entry.answered = true
        const { reply } = entry
        if (reply.sent || reply.raw.headersSent || request.raw.destroyed) continue
        request.log.error({ timeoutSeconds: app.config.REQUEST_TIMEOUT }, 'request deadline passed')
        reply.send(
          new ProblemError('service_unavailable', {
            detail: 'The request took too long; try again',
            headers: { 'retry-after': '5' },
          }),
        )
      }
    }
    const timer = setInterval(sweep, Math.max(50, Math.min(1000, ms / 8)))
    timer.unref()
    app.addHook('onClose', async () => clearInterval(timer))

    app.decorate('drainRequests', async (limitMs: number) => {
      forgetAbandoned()
      if (inFlight.size === 0) return 0
      app.log.info({ requests: inFlight.size }, 'waiting for requests whose clients left')
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(limit)
          clearInterval(check)
          whenIdle.delete(done)
          resolve()
        }
        const limit = setTimeout(done, limitMs)
        const check = setInterval(forgetAbandoned, 50)
        whenIdle.add(done)
      })
      return inFlight.size
    })
  },
  { name: 'deadline', dependencies: ['error-handler'] },
)
