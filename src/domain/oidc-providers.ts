import { createHash } from 'node:crypto'
import {
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors,
  type JWTPayload,
  jwtVerify,
} from 'jose'
import * as client from 'openid-client'
import type { OidcProviderConfig } from '../config.js'
import { ProblemError } from '../errors.js'

/** Re-read a provider's discovery document after this long (its keys have their own cache). */
const DISCOVERY_MAX_AGE_MS = 24 * 60 * 60 * 1000
/** A fetch of a provider's metadata or keys gives up after this long. */
const PROVIDER_TIMEOUT_SECONDS = 5
/** An unknown `kid` refetches the key set at most this often, so a flood of bad tokens fetches nothing. */
const JWKS_REFETCH_COOLDOWN_MS = 60_000
const JWKS_MAX_AGE_MS = 10 * 60 * 1000
/** Clock skew tolerated on `exp`, `iat` and `nbf`. */
export const ID_TOKEN_CLOCK_TOLERANCE_SECONDS = 60
/** A native ID token older than this (by `iat`) is refused even if its `exp` is later. */
const NATIVE_ID_TOKEN_MAX_AGE_SECONDS = 60 * 60

/** Algorithms accepted on ID tokens: asymmetric only (no `none`, no HMAC with the client secret). */
const ASYMMETRIC_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
]

/** A configured OpenID Provider. */
export interface OidcProvider {
  id: string
  issuer: string
  clientId: string
  clientSecret: string
  scopes: string[]
  allowedDomains: string[] | undefined
  requireNonce: boolean
  /** How the provider returns the browser: a GET with the query (default) or a form post (Apple). */
  responseMode: 'query' | 'form_post'
}

interface Discovered {
  configuration: client.Configuration
  jwks: ReturnType<typeof createRemoteJWKSet>
  algorithms: string[]
  at: number
}

/** The claims of a validated ID token that sign-in uses. */
export interface IdTokenClaims extends JWTPayload {
  iss: string
  sub: string
  email?: unknown
  email_verified?: unknown
  hd?: unknown
  xms_edov?: unknown
  nonce?: unknown
}

/**
 * The configured OpenID Providers: their metadata from discovery (cached, re-read daily, retried
 * after a failure) and their keys (jose's remote key set, refetched on an unknown `kid` at most
 * once a minute). openid-client does the web flow; native ID tokens are checked here with the same
 * rules.
 */
export class OidcProviders {
  readonly #providers = new Map<string, OidcProvider>()
  readonly #discovered = new Map<string, Discovered>()
  readonly #loading = new Map<string, Promise<Discovered>>()
  readonly #allowHttp: boolean

  constructor(configs: readonly OidcProviderConfig[], options: { allowHttp: boolean }) {
    this.#allowHttp = options.allowHttp
    for (const config of configs) {
      this.#providers.set(config.id, {
        id: config.id,
        issuer: config.issuer,
        clientId: config.client_id,
        clientSecret: config.client_secret,
        scopes: config.scopes ?? ['openid', 'email', 'profile'],
        allowedDomains: config.allowed_domains?.map((domain) => domain.toLowerCase()),
        requireNonce: config.require_nonce ?? false,
        responseMode: config.response_mode ?? 'query',
      })
    }
  }

  /** The provider with this id; 404 not_found when none is configured. */
  get(id: string): OidcProvider {
    const provider = this.#providers.get(id)
    if (!provider)
      throw new ProblemError('not_found', { detail: `No identity provider "${id}" is configured` })
    return provider
  }

  /** The id of the configured provider whose issuer is `issuer`, if any (mix-up detection). */
  idForIssuer(issuer: string): string | undefined {
    for (const provider of this.#providers.values()) if (provider.issuer === issuer) return provider.id
    return undefined
  }

  /** openid-client's configuration for the provider, from its discovery document. */
  async configuration(provider: OidcProvider): Promise<client.Configuration> {
    return (await this.#discover(provider)).configuration
  }

  /**
   * Validates an ID token a native SDK obtained (OpenID Connect Core §3.1.3.7): signature with an
   * asymmetric algorithm the provider uses, `iss` exactly the provider's, `aud` containing the
   * configured client id, `azp` equal to it when there are several audiences (with `strictAzp`:
   * whenever present; native SDKs of some platforms put their own client id there), `exp`, `iat`,
   * `sub`. Anything wrong is 401 invalid_token.
   */
  async verifyIdToken(
    provider: OidcProvider,
    idToken: string,
    options: { strictAzp?: boolean } = {},
  ): Promise<IdTokenClaims> {
    let header: ReturnType<typeof decodeProtectedHeader>
    let unverified: JWTPayload
    try {
      header = decodeProtectedHeader(idToken)
      unverified = decodeJwt(idToken)
    } catch {
      throw invalidIdToken('The ID token is not a signed JWT')
    }
    if (unverified.iss !== provider.issuer) {
      const other = typeof unverified.iss === 'string' ? this.idForIssuer(unverified.iss) : undefined
      throw invalidIdToken(
        other
          ? `The ID token was issued by another configured provider ("${other}")`
          : 'The ID token was not issued by this provider',
      )
    }
    const discovered = await this.#discover(provider)
    if (typeof header.alg !== 'string' || !discovered.algorithms.includes(header.alg))
      throw invalidIdToken(`The ID token algorithm "${String(header.alg)}" is not accepted`)
    let payload: JWTPayload
    try {
      ;({ payload } = await jwtVerify(idToken, discovered.jwks, {
        issuer: provider.issuer,
        audience: provider.clientId,
        algorithms: discovered.algorithms,
        requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat'],
        clockTolerance: ID_TOKEN_CLOCK_TOLERANCE_SECONDS,
        maxTokenAge: NATIVE_ID_TOKEN_MAX_AGE_SECONDS,
      }))
    } catch (error) {
      throw idTokenProblem(error)
    }
    if (typeof payload.sub !== 'string' || payload.sub.length === 0 || payload.sub.length > 255)
      throw invalidIdToken('The ID token has no valid "sub" claim')
    if (payload.azp !== undefined && payload.azp !== provider.clientId && options.strictAzp)
      throw invalidIdToken('The ID token "azp" claim is not this client')
    if (Array.isArray(payload.aud) && payload.aud.length > 1 && payload.azp !== provider.clientId)
      throw invalidIdToken('The ID token has several audiences and its "azp" is not this client')
    return payload as IdTokenClaims
  }

  /** Single-flight discovery; a stale document is re-read, and kept when the provider is down. */
  #discover(provider: OidcProvider): Promise<Discovered> {
    const found = this.#discovered.get(provider.id)
    if (found && Date.now() - found.at < DISCOVERY_MAX_AGE_MS) return Promise.resolve(found)
    let loading = this.#loading.get(provider.id)
    if (!loading) {
      loading = this.#load(provider)
        .then(
          (fresh) => {
            this.#discovered.set(provider.id, fresh)
            return fresh
          },
          (error: unknown) => {
            if (found) return found
            throw error
          },
        )
        .finally(() => this.#loading.delete(provider.id))
      this.#loading.set(provider.id, loading)
    }
    return loading
  }

  async #load(provider: OidcProvider): Promise<Discovered> {
    let configuration: client.Configuration
    try {
      configuration = await client.discovery(
        new URL(provider.issuer),
        provider.clientId,
        provider.clientSecret,
        undefined,
        {
          timeout: PROVIDER_TIMEOUT_SECONDS,
          ...(this.#allowHttp && provider.issuer.startsWith('http://')
            ? { execute: [client.allowInsecureRequests] }
            : {}),
        },
      )
    } catch (error) {
      throw new ProblemError('service_unavailable', {
        detail: `The identity provider "${provider.id}" could not be reached`,
        headers: { 'retry-after': '5' },
        cause: error,
      })
    }
    const metadata = configuration.serverMetadata()
    // client_secret_basic is OpenID Connect's default and what most providers register clients
    // with; client_secret_post only when the provider does not offer basic (Sign in with Apple).
    const methods = metadata.token_endpoint_auth_methods_supported ?? ['client_secret_basic']
    if (methods.includes('client_secret_basic')) {
      configuration = new client.Configuration(
        metadata,
        provider.clientId,
        provider.clientSecret,
        client.ClientSecretBasic(provider.clientSecret),
      )
      if (this.#allowHttp && provider.issuer.startsWith('http://'))
        client.allowInsecureRequests(configuration)
    }
    configuration.timeout = PROVIDER_TIMEOUT_SECONDS
    if (!metadata.jwks_uri) {
      throw new ProblemError('service_unavailable', {
        detail: `The identity provider "${provider.id}" publishes no keys`,
        cause: new Error('discovery document without jwks_uri'),
      })
    }
    const advertised = metadata.id_token_signing_alg_values_supported ?? ['RS256']
    return {
      configuration,
      jwks: createRemoteJWKSet(new URL(metadata.jwks_uri), {
        cooldownDuration: JWKS_REFETCH_COOLDOWN_MS,
        cacheMaxAge: JWKS_MAX_AGE_MS,
        timeoutDuration: PROVIDER_TIMEOUT_SECONDS * 1000,
      }),
      algorithms: advertised.filter((alg) => ASYMMETRIC_ALGORITHMS.includes(alg)),
      at: Date.now(),
    }
  }
}

function invalidIdToken(detail: string): ProblemError {
  return new ProblemError('invalid_token', { status: 401, detail })
}

/** jose's verdict as a client-facing problem; a provider that cannot be reached is a 503. */
function idTokenProblem(error: unknown): ProblemError {
  if (error instanceof errors.JWKSTimeout || (error instanceof Error && error.name === 'TypeError'))
    return new ProblemError('service_unavailable', {
      detail: 'The identity provider keys could not be fetched',
      headers: { 'retry-after': '5' },
      cause: error,
    })
  if (error instanceof errors.JWTExpired) return invalidIdToken('The ID token has expired')
  if (error instanceof errors.JWTClaimValidationFailed)
    return invalidIdToken(`The ID token "${error.claim}" claim is not valid (${error.reason})`)
  if (error instanceof errors.JWSSignatureVerificationFailed)
    return invalidIdToken('The ID token signature is not valid')
  if (error instanceof errors.JWKSNoMatchingKey)
    return invalidIdToken('No key of the provider matches the ID token')
  if (error instanceof errors.JOSEAlgNotAllowed)
    return invalidIdToken('The ID token algorithm is not accepted')
  return invalidIdToken('The ID token is not valid')
}

/**
 * Whether `expected` (the raw nonce a native app generated) matches the token's `nonce` claim:
 * either equal, or the claim is its SHA-256 in hex, as Sign in with Apple and others send it.
 */
export function nonceMatches(claim: unknown, expected: string): boolean {
  if (typeof claim !== 'string') return false
  if (claim === expected) return true
  return claim === createHash('sha256').update(expected).digest('hex')
}
