/**
 * A Fastify resource server: @fastify/jwt verifies, get-jwks finds the key by kid in Latchkey's
 * JWKS (cached; a rotation's new kid is fetched when first seen).
 * Run: LATCHKEY_ISSUER=http://localhost:3000 npx tsx examples/resource-servers/fastify.ts
 */
import fastifyJwt from '@fastify/jwt'
import Fastify from 'fastify'
import buildGetJwks from 'get-jwks'
import type { ResourceServerOptions } from './jose.js'

export async function start(options: ResourceServerOptions) {
  const audience = options.audience ?? options.issuer
  const getJwks = buildGetJwks({
    issuersWhitelist: [options.issuer],
    providerDiscovery: false,
    jwksPath: '/.well-known/jwks.json',
  })
  const app = Fastify()
  await app.register(fastifyJwt, {
    decode: { complete: true },
    secret: (_request: unknown, token: unknown) => {
      const { header } = token as { header: { kid: string; alg: string } }
      return getJwks.getPublicKey({ kid: header.kid, alg: header.alg, domain: options.issuer })
    },
    verify: {
      allowedIss: options.issuer,
      allowedAud: audience,
      algorithms: ['RS256', 'ES256', 'EdDSA'],
    },
  })

  app.get('/notes', async (request, reply) => {
    try {
      await request.jwtVerify()
    } catch {
      return reply
        .code(401)
        .header('www-authenticate', 'Bearer error="invalid_token"')
        .send({ error: 'invalid_token' })
    }
    const claims = request.user as { sub: string; scope: string; typ?: string }
    if (!claims.scope.split(' ').includes('profile')) {
      return reply
        .code(403)
        .header('www-authenticate', 'Bearer error="insufficient_scope", scope="profile"')
        .send({ error: 'insufficient_scope' })
    }
    return { sub: claims.sub, scope: claims.scope }
  })

  const url = await app.listen({ port: options.port ?? 0, host: '127.0.0.1' })
  return { url, close: () => app.close() }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const issuer = process.env.LATCHKEY_ISSUER ?? 'http://localhost:3000'
  const { url } = await start({
    issuer,
    audience: process.env.LATCHKEY_AUDIENCE,
    port: Number(process.env.PORT ?? 4001),
  })
  console.log(`GET ${url}/notes with Authorization: Bearer <access token>`)
}
