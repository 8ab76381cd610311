import type { FastifyReply, FastifyRequest } from 'fastify'
import type { RequestContext } from '../domain/audit.js'

/** Who is asking, for audit events and session list entries. */
export function requestContext(request: FastifyRequest): RequestContext {
  const userAgent = request.headers['user-agent']
  return {
    ip: request.ip,
    userAgent: typeof userAgent === 'string' ? userAgent : undefined,
    requestId: request.id,
  }
}

/** Token answers and personal data must not be kept by any cache (RFC 6749 §5.1). */
export function noStore(reply: FastifyReply): void {
  reply.header('cache-control', 'no-store')
  reply.header('pragma', 'no-cache')
}
