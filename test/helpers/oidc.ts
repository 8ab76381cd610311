import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT } from 'jose'
import Provider from 'oidc-provider'
import type { Test } from 'tap'

/** The test app's public base URL (ISSUER in test/helpers/app.ts). */
export const APP_BASE = 'http://latchkey.test'
export const CLIENT_ID = 'latchkey-test-client'
export const CLIENT_SECRET = 'latchkey-test-secret-0123456789abcdef'

/** An RSA signing key the test owns: given to a provider, and used by the test to sign ID tokens. */
type PrivateKey = Awaited<ReturnType<typeof generateKeyPair>>['privateKey']

export interface TestSigningKey {
  kid: string
  privateKey: PrivateKey
  privateJwk: JWK
  publicJwk: JWK
}

export async function createSigningKey(kid: string): Promise<TestSigningKey> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true })
  const privateJwk = { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' }
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' }
  return { kid, privateKey, privateJwk, publicJwk }
}

/** Signs an ID token with `key` (or with a given header, e.g. to forge one). */
export async function signIdToken(
  key: TestSigningKey,
  claims: JWTPayload,
  header: Record<string, unknown> = {},
): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'RS256', kid: key.kid, typ: 'JWT', ...header })
    .sign(key.privateKey)
}

/** An unsigned token (`alg: none`). */
export function unsignedIdToken(claims: JWTPayload): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
  return `${part({ alg: 'none', typ: 'JWT' })}.${part(claims)}.`
}

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Server> {
  const server = createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return server
}

const origin = (server: Server) => `http://127.0.0.1:${(server.address() as AddressInfo).port}`

export interface ProviderAccount {
  email?: string
  email_verified?: boolean
  hd?: string
}

/** A real OpenID Provider (panva's oidc-provider) on loopback, with the test's signing key. */
export interface TestOpenIdProvider {
  issuer: string
  key: TestSigningKey
  /** The account the next interaction signs in as. */
  signInAs(subject: string, account: ProviderAccount): void
  /** How often each provider endpoint was called. */
  calls: { token: number; jwks: number }
}

/**
 * Starts oidc-provider with one confidential client whose redirect URIs are the test app's
 * callbacks for `providerIds`. Its interactions finish at once as the account set by `signInAs`.
 */
export async function startOpenIdProvider(
  t: Test,
  providerIds: string[],
  options: { appBase?: string } = {},
): Promise<TestOpenIdProvider> {
  const appBase = options.appBase ?? APP_BASE
  const key = await createSigningKey('op-key-1')
  const accounts = new Map<string, ProviderAccount>()
  let current = ''
  const calls = { token: 0, jwks: 0 }
  let provider: Provider | undefined
  const server = await listen((req, res) => {
    if (!provider) {
      res.end()
    } else if (req.url?.startsWith('/interaction/')) {
      void finishInteraction(provider, req, res, current).catch((error: unknown) => {
        res.statusCode = 500
        res.end(String(error))
      })
    } else {
      provider.callback()(req, res)
    }
  })
  const issuer = origin(server)
  provider = new Provider(issuer, {
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        redirect_uris: providerIds.map((id) => `${appBase}/v1/auth/oidc/${id}/callback`),
        grant_types: ['authorization_code'],
        response_types: ['code'],
        // oidc-provider's default, as most providers register clients: client_secret_basic.
      },
    ],
    jwks: { keys: [key.privateJwk] },
    // Basic only, as some providers (Okta) enforce; the scripted provider below is post only.
    clientAuthMethods: ['client_secret_basic'],
    findAccount: (_ctx, sub) => {
      const account = accounts.get(sub)
      if (!account) return undefined
      return { accountId: sub, claims: () => ({ sub, ...account }) }
    },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['hd'] },
    conformIdTokenClaims: false,
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    features: { devInteractions: { enabled: false } },
    pkce: { required: () => true },
    cookies: { keys: ['oidc-provider-test-cookie-key'] },
  })
  provider.use(async (ctx, next) => {
    if (ctx.path === '/token') calls.token += 1
    if (ctx.path === '/jwks') calls.jwks += 1
    await next()
  })
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return {
    issuer,
    key,
    calls,
    signInAs(subject, account) {
      accounts.set(subject, account)
      current = subject
    },
  }
}

async function finishInteraction(
  provider: Provider,
  req: IncomingMessage,
  res: ServerResponse,
  accountId: string,
): Promise<void> {
  const details = await provider.interactionDetails(req, res)
  const grant = new provider.Grant({ accountId, clientId: String(details.params.client_id) })
  grant.addOIDCScope(String(details.params.scope))
  const grantId = await grant.save()
  await provider.interactionFinished(
    req,
    res,
    { login: { accountId }, consent: { grantId } },
    { mergeWithLastSubmission: false },
  )
}

/**
 * A provider whose token endpoint answers whatever ID token the test scripts, to prove that the
 * callback refuses each kind of bad one. Discovery, keys and a token endpoint that checks PKCE.
 */
export interface ScriptedProvider {
  issuer: string
  key: TestSigningKey
  /**
   * Builds the token answer's ID token. Tests send the authorization request's nonce as the
   * `code`, so the token endpoint receives it back here.
   */
  nextIdToken: (nonce: string) => Promise<string>
  calls: { token: number }
}

export async function startScriptedProvider(t: Test): Promise<ScriptedProvider> {
  const key = await createSigningKey('scripted-key-1')
  const scripted: ScriptedProvider = {
    issuer: '',
    key,
    calls: { token: 0 },
    nextIdToken: async () => {
      throw new Error('no ID token scripted')
    },
  }
  const server = await listen((req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' })
      res.end(JSON.stringify(body))
    }
    const url = new URL(req.url ?? '/', scripted.issuer)
    if (url.pathname === '/.well-known/openid-configuration') {
      return send(200, {
        issuer: scripted.issuer,
        authorization_endpoint: `${scripted.issuer}/authorize`,
        token_endpoint: `${scripted.issuer}/token`,
        jwks_uri: `${scripted.issuer}/jwks`,
        response_types_supported: ['code'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256'],
        code_challenge_methods_supported: ['S256'],
        token_endpoint_auth_methods_supported: ['client_secret_post'],
      })
    }
    if (url.pathname === '/jwks') return send(200, { keys: [key.publicJwk] })
    if (url.pathname === '/token' && req.method === 'POST') {
      scripted.calls.token += 1
      let body = ''
      req.on('data', (chunk: Buffer) => {
        body += chunk.toString()
      })
      req.on('end', () => {
        const form = new URLSearchParams(body)
        // This provider offers client_secret_post only: the secret must come in the body.
        if (form.get('client_secret') !== CLIENT_SECRET || req.headers.authorization) {
          send(401, { error: 'invalid_client' })
          return
        }
        const nonce = form.get('code') ?? ''
        scripted.nextIdToken(nonce).then(
          (idToken) =>
            send(200, { access_token: 'opaque', token_type: 'Bearer', expires_in: 60, id_token: idToken }),
          (error: unknown) => send(500, { error: String(error) }),
        )
      })
      return
    }
    send(404, { error: 'not_found' })
  })
  scripted.issuer = origin(server)
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return scripted
}

/** The cookies a browser keeps for one origin, enough to follow a provider's redirects. */
class CookieJar {
  readonly #cookies = new Map<string, string>()
  store(headers: Headers): void {
    for (const line of headers.getSetCookie()) {
      const [pair] = line.split(';')
      const index = pair?.indexOf('=') ?? -1
      if (!pair || index < 1) continue
      const name = pair.slice(0, index).trim()
      const value = pair.slice(index + 1).trim()
      if (value === '' || /max-age=0|expires=thu, 01 jan 1970/i.test(line)) this.#cookies.delete(name)
      else this.#cookies.set(name, value)
    }
  }
  header(): string {
    return [...this.#cookies].map(([name, value]) => `${name}=${value}`).join('; ')
  }
}

/** The value of `name` in an inject response's Set-Cookie headers. */
export function cookieFrom(setCookie: string | string[] | undefined, name: string): string | undefined {
  const lines = Array.isArray(setCookie) ? setCookie : setCookie ? [setCookie] : []
  for (const line of lines) {
    const [pair] = line.split(';')
    if (pair?.startsWith(`${name}=`)) return pair.slice(name.length + 1)
  }
  return undefined
}

/** Starts a web sign-in at the app: the provider URL and the browser-binding cookie. */
export async function startSignIn(
  app: FastifyInstance,
  providerId: string,
  query: Record<string, string>,
): Promise<{ providerUrl: URL; binding: string }> {
  const response = await app.inject({
    method: 'GET',
    url: `/v1/auth/oidc/${providerId}/authorize?${new URLSearchParams(query)}`,
  })
  if (response.statusCode !== 302)
    throw new Error(`authorize answered ${response.statusCode}: ${response.body}`)
  const binding = cookieFrom(response.headers['set-cookie'], '__Host-oidc_binding')
  if (!binding) throw new Error('authorize set no binding cookie')
  return { providerUrl: new URL(String(response.headers.location)), binding }
}

/**
 * Follows the provider's redirects as a browser would (keeping its cookies) until it sends the
 * browser back to the app; answers the callback URL (path and query at the app).
 */
export async function followProvider(providerUrl: URL): Promise<string> {
  const back = await walkProvider(providerUrl)
  if (typeof back !== 'string') throw new Error('the provider answered with a form post')
  return back
}

/** Like followProvider, for response_mode=form_post: the form the provider's page would post. */
export async function followProviderToForm(
  providerUrl: URL,
): Promise<{ path: string; form: URLSearchParams }> {
  const back = await walkProvider(providerUrl)
  if (typeof back === 'string') throw new Error('the provider redirected instead of posting a form')
  return back
}

async function walkProvider(providerUrl: URL): Promise<string | { path: string; form: URLSearchParams }> {
  const jar = new CookieJar()
  let next = providerUrl.href
  for (let hop = 0; hop < 12; hop += 1) {
    if (next.startsWith(APP_BASE)) return next.slice(APP_BASE.length)
    const response = await fetch(next, { redirect: 'manual', headers: { cookie: jar.header() } })
    jar.store(response.headers)
    const location = response.headers.get('location')
    if (location) {
      next = new URL(location, next).href
      continue
    }
    const html = await response.text()
    const action = html.match(/<form method="post" action="([^"]+)"/)?.[1]
    if (!action?.startsWith(APP_BASE))
      throw new Error(`the provider answered ${response.status} without a redirect: ${html}`)
    const form = new URLSearchParams()
    for (const [, name, value] of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"\/>/g))
      form.set(name ?? '', (value ?? '').replaceAll('&amp;', '&').replaceAll('&quot;', '"'))
    return { path: action.slice(APP_BASE.length), form }
  }
  throw new Error('too many redirects at the provider')
}

/** Calls the app's callback as the browser that holds `binding`. */
export function callback(app: FastifyInstance, path: string, binding: string | undefined) {
  return app.inject({
    method: 'GET',
    url: path,
    headers: binding ? { cookie: `__Host-oidc_binding=${binding}` } : {},
  })
}
