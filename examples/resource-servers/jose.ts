/**
 * A resource server that verifies Latchkey access tokens with jose alone (node:http, no
 * framework). Run: LATCHKEY_ISSUER=http://localhost:3000 npx tsx examples/resource-servers/jose.ts
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createRemoteJWKSet, errors, jwtVerify } from 'jose'

export interface ResourceServerOptions {
  /** Latchkey's ISSUER. */
  issuer: string
  /** Latchkey's ACCESS_TOKEN_AUDIENCE (default: the issuer). */
  audience?: string
  port?: number
}

export async function start(options: ResourceServerOptions) {
  const audience = options.audience ?? options.issuer
  // Fetched once, cached, refetched on an unknown kid (a rotation) at most every 30 s.
  const jwks = createRemoteJWKSet(new URL(`${options.issuer}/.well-known/jwks.json`))

  const send = (
    response: ServerResponse,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
  ) => {
    response.writeHead(status, { 'content-type': 'application/json', ...headers })
    response.end(JSON.stringify(body))
  }

  async function handle(request: IncomingMessage, response: ServerResponse) {
    if (request.url !== '/notes') return send(response, 404, { error: 'not_found' })
    const token = /^Bearer (\S+)$/i.exec(request.headers.authorization ?? '')?.[1]
    if (!token) return send(response, 401, { error: 'unauthenticated' }, { 'www-authenticate': 'Bearer' })
    try {
      const { payload } = await jwtVerify(token, jwks, {
        issuer: options.issuer,
        audience,
        typ: 'at+jwt', // RFC 9068: an ID token or another JWT is not an access token
        algorithms: ['RS256', 'ES256', 'EdDSA'],
      })
      const scopes = String(payload.scope ?? '').split(' ')
      if (!scopes.includes('profile')) {
        return send(
          response,
          403,
          { error: 'insufficient_scope' },
          {
            'www-authenticate': 'Bearer error="insufficient_scope", scope="profile"',
          },
        )
      }
      return send(response, 200, { sub: payload.sub, scope: payload.scope })
    } catch (error) {
      const description = error instanceof errors.JOSEError ? error.code : 'invalid'
      return send(
        response,
        401,
        { error: 'invalid_token', error_description: description },
        {
          'www-authenticate': 'Bearer error="invalid_token"',
        },
      )
    }
  }

  const server = createServer((request, response) => {
    void handle(request, response)
  })
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const issuer = process.env.LATCHKEY_ISSUER ?? 'http://localhost:3000'
  const { url } = await start({
    issuer,
    audience: process.env.LATCHKEY_AUDIENCE,
    port: Number(process.env.PORT ?? 4000),
  })
  console.log(`GET ${url}/notes with Authorization: Bearer <access token>`)
}
