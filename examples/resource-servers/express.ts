/**
 * An Express resource server with express-oauth2-jwt-bearer in strict mode (RFC 9068 access
 * tokens: `typ` at+jwt and the claims the profile requires).
 * Run: LATCHKEY_ISSUER=http://localhost:3000 npx tsx examples/resource-servers/express.ts
 */
import type { AddressInfo } from 'node:net'
import express from 'express'
import { auth, requiredScopes } from 'express-oauth2-jwt-bearer'
import type { ResourceServerOptions } from './jose.js'

export async function start(options: ResourceServerOptions) {
  const app = express()
  app.use(
    auth({
      issuer: options.issuer,
      jwksUri: `${options.issuer}/.well-known/jwks.json`,
      audience: options.audience ?? options.issuer,
      tokenSigningAlg: 'RS256',
      strict: true,
    }),
  )
  app.get('/notes', requiredScopes('profile'), (request, response) => {
    const payload = request.auth?.payload
    response.json({ sub: payload?.sub, scope: payload?.scope })
  })
  // The middleware's errors carry the status and the WWW-Authenticate challenge.
  app.use(
    (
      error: { status?: number; headers?: Record<string, string>; code?: string },
      _request: express.Request,
      response: express.Response,
      _next: express.NextFunction,
    ) => {
      response
        .status(error.status ?? 500)
        .set(error.headers ?? {})
        .json({ error: error.code ?? 'server_error' })
    },
  )
  const server = app.listen(options.port ?? 0, '127.0.0.1')
  await new Promise<void>((resolve) => server.once('listening', () => resolve()))
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
    port: Number(process.env.PORT ?? 4002),
  })
  console.log(`GET ${url}/notes with Authorization: Bearer <access token>`)
}
