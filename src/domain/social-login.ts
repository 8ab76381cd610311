import { createHash, timingSafeEqual } from 'node:crypto'
import * as client from 'openid-client'
import { OAuthError, ProblemError } from '../errors.js'
import type { EphemeralStore } from '../storage/ephemeral-store.js'
import type { IdentityRepository } from '../storage/identity-repository.js'
import type { UserRepository, UserRow } from '../storage/user-repository.js'
import type { AuditLog, RequestContext } from './audit.js'
import type { Clock } from './clock.js'
import { hashToken, randomToken } from './crypto.js'
import { type IdTokenClaims, nonceMatches, type OidcProvider, type OidcProviders } from './oidc-providers.js'
import { grantScope } from './policy.js'
import type { IssuedTokens, SessionService } from './sessions.js'
import type { SignInGate } from './sign-in.js'

/** How long a browser has to come back from the provider. */
const STATE_TTL_MS = 10 * 60 * 1000
/** The hand-off code's lifetime: 60 s, single use. */
const HANDOFF_CODE_TTL_MS = 60 * 1000
/** Issuers whose users may belong to a hosted domain asserted by `hd` (Google Workspace). */
const HOSTED_DOMAIN_ISSUERS = new Set(['https://accounts.google.com'])

const S256_CHALLENGE = /^[A-Za-z0-9_-]{43}$/
const PKCE_VERIFIER = /^[A-Za-z0-9._~-]{43,128}$/

export interface SocialLoginDeps {
  providers: OidcProviders
  ephemeral: EphemeralStore
  users: UserRepository
  identities: IdentityRepository
  signIn: SignInGate
  /** Told when an identity is linked or unlinked (GET /v1/me lists them). */
  sessions: Pick<SessionService, 'userChanged'>
  audit: AuditLog
  clock: Clock
  settings: {
    /** ISSUER: the callback URLs registered at the providers hang off it. */
    baseUrl: string
    redirectAllowlist: readonly string[]
  }
}

/** What the server keeps between the redirect to the provider and the browser's return. */
interface PendingAuthorization {
  provider: string
  nonce: string
  codeVerifier: string
  redirectTo: string
  /** SHA-256 of the value in the browser's binding cookie. */
  browser: string
  codeChallenge: string | null
  scope: string | null
  remember: boolean
}

/** What a hand-off code stands for until the app exchanges it. */
interface HandOff {
  userId: string
  provider: string
  codeChallenge: string | null
  scope: string | null
  remember: boolean
}

export interface AuthorizeInput {
  redirectTo: string
  codeChallenge?: string | undefined
  codeChallengeMethod?: string | undefined
  scope?: string | undefined
  remember?: boolean | undefined
}

/** Where a callback sends the browser: the app's redirect target with `code` or `error`. */
export interface CallbackOutcome {
  location: string
}

/** The problem a failed callback is, and whether it may be told to the app via its redirect target. */
export class CallbackError extends Error {
  constructor(
    readonly problem: ProblemError,
    /** The app's redirect target when the state was valid; errors then go there as `?error=`. */
    readonly redirectTo: string | null,
    /** The `error` value for the redirect (default: the problem's code). */
    readonly redirectError: string = problem.code,
  ) {
    super(problem.message, { cause: problem })
  }
}

/**
 * Sign-in through OpenID Providers: the web flow (Authorization Code + PKCE with a server-side
 * state bound to the browser, then a one-time hand-off code for the app) and native ID tokens.
 * Identities are keyed on (`iss`, `sub`); every sign-in ends in the SignInGate, so MFA applies.
 */
export class SocialLogin {
  constructor(private readonly deps: SocialLoginDeps) {}

  /** The callback URL to register at the provider. */
  callbackUrl(providerId: string): string {
    return `${this.deps.settings.baseUrl}/v1/auth/oidc/${encodeURIComponent(providerId)}/callback`
  }

  /** Whether `target` is exactly an allowlisted redirect target. */
  isAllowedRedirect(target: string): boolean {
    return this.deps.settings.redirectAllowlist.includes(target)
  }

  /**
   * Starts the web flow: stores the pending authorization and answers the provider URL and the
   * browser-binding value the route sets as a cookie.
   */
  async authorize(
    providerId: string,
    input: AuthorizeInput,
  ): Promise<{ url: string; binding: string; responseMode: 'query' | 'form_post' }> {
    const provider = this.deps.providers.get(providerId)
    if (!this.isAllowedRedirect(input.redirectTo))
      throw new ProblemError('invalid_redirect', { detail: 'redirect_to is not an allowed redirect target' })
    if (input.codeChallenge !== undefined) {
      if ((input.codeChallengeMethod ?? 'S256') !== 'S256')
        throw validation('/code_challenge_method', 'must be S256')
      if (!S256_CHALLENGE.test(input.codeChallenge))
        throw validation('/code_challenge', 'must be a base64url SHA-256 (43 characters)')
    } else if (input.codeChallengeMethod !== undefined) {
      throw validation('/code_challenge', 'is required with code_challenge_method')
    }
    const configuration = await this.deps.providers.configuration(provider)
    const state = randomToken(32)
    const nonce = randomToken(32)
    const binding = randomToken(32)
    const codeVerifier = client.randomPKCECodeVerifier()
    const pending: PendingAuthorization = {
      provider: provider.id,
      nonce,
      codeVerifier,
      redirectTo: input.redirectTo,
      browser: hashToken(binding),
      codeChallenge: input.codeChallenge ?? null,
      scope: input.scope ?? null,
      remember: input.remember ?? false,
    }
    await this.deps.ephemeral.setIfAbsent(stateKey(state), JSON.stringify(pending), STATE_TTL_MS)
    const url = client.buildAuthorizationUrl(configuration, {
      response_type: 'code',
      redirect_uri: this.callbackUrl(provider.id),
      scope: provider.scopes.join(' '),
      state,
      nonce,
      code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
      ...(provider.responseMode === 'form_post' ? { response_mode: 'form_post' } : {}),
    })
    return { url: url.href, binding, responseMode: provider.responseMode }
  }

  /**
   * Finishes the web flow. The state is taken (single use) and must belong to this provider and
   * this browser before the provider's token endpoint is called; then the code is exchanged with
   * the PKCE verifier and the ID token validated by openid-client (signature, `iss`, `aud`, `azp`,
   * `exp`, `iat`, `nonce`, and RFC 9207's `iss` response parameter). Answers the app's redirect
   * target with a one-time hand-off code.
   */
  async callback(
    providerId: string,
    query: URLSearchParams,
    binding: string | undefined,
    context: RequestContext,
  ): Promise<CallbackOutcome> {
    const provider = this.deps.providers.get(providerId)
    // The authorization response's parameters: the query, or the body of a form_post.
    const state = query.get('state')
    const raw = state ? await this.deps.ephemeral.take(stateKey(state)) : null
    const pending = raw ? (JSON.parse(raw) as PendingAuthorization) : null
    const fail = (detail: string) =>
      new CallbackError(new ProblemError('invalid_token', { status: 400, detail }), null)
    if (!state || !pending) throw fail('The sign-in state is missing, unknown, expired or already used')
    if (pending.provider !== provider.id) throw fail('The sign-in was started with another identity provider')
    if (!binding || !sameSecret(hashToken(binding), pending.browser))
      throw fail('The sign-in was started in another browser')

    const toApp = (problem: ProblemError) => new CallbackError(problem, pending.redirectTo)
    const providerError = query.get('error')
    if (providerError) {
      await this.#failed(null, provider, context, `provider_error:${providerError.slice(0, 64)}`)
      const denied = providerError === 'access_denied'
      throw new CallbackError(
        new ProblemError('forbidden', {
          detail: denied
            ? 'The user declined at the identity provider'
            : 'The identity provider answered an error',
        }),
        pending.redirectTo,
        denied ? 'access_denied' : 'provider_error',
      )
    }
    const configuration = await this.deps.providers.configuration(provider).catch((error: unknown) => {
      throw toApp(error as ProblemError)
    })
    const currentUrl = new URL(this.callbackUrl(provider.id))
    currentUrl.search = query.toString()
    let claims: IdTokenClaims
    try {
      const tokens = await client.authorizationCodeGrant(configuration, currentUrl, {
        pkceCodeVerifier: pending.codeVerifier,
        expectedState: state,
        expectedNonce: pending.nonce,
        idTokenExpected: true,
      })
      // openid-client trusts TLS for an ID token from the token endpoint (Core §3.1.3.7 step 6
      // allows it); the signature is checked here anyway, with the same rules as native tokens.
      claims = await this.deps.providers.verifyIdToken(provider, tokens.id_token ?? '', { strictAzp: true })
    } catch (error) {
      if (error instanceof ProblemError) {
        await this.#failed(null, provider, context, 'invalid_id_token')
        throw toApp(error)
      }
      const unreachable = isNetworkFailure(error)
      await this.#failed(null, provider, context, unreachable ? 'provider_unreachable' : 'invalid_id_token')
      throw toApp(
        unreachable
          ? new ProblemError('service_unavailable', {
              detail: 'The identity provider could not be reached',
              cause: error,
            })
          : new ProblemError('invalid_token', {
              status: 401,
              detail: describeClientError(error, provider, this.deps.providers),
              cause: error,
            }),
      )
    }
    let user: UserRow
    try {
      user = await this.resolveUser(provider, claims, context)
    } catch (error) {
      if (error instanceof ProblemError) throw toApp(error)
      throw error
    }
    const code = randomToken(32)
    const handOff: HandOff = {
      userId: user.id,
      provider: provider.id,
      codeChallenge: pending.codeChallenge,
      scope: pending.scope,
      remember: pending.remember,
    }
    await this.deps.ephemeral.setIfAbsent(handOffKey(code), JSON.stringify(handOff), HANDOFF_CODE_TTL_MS)
    return { location: withParams(pending.redirectTo, { code }) }
  }

  /**
   * The token endpoint's `authorization_code` grant: spends the hand-off code (with the PKCE
   * verifier when the app gave a challenge) and signs the user in with `amr: ["fed"]`; a user
   * with MFA gets the challenge instead.
   */
  async exchange(
    code: string,
    codeVerifier: string | undefined,
    options: { useCookie: boolean; context: RequestContext },
  ): Promise<IssuedTokens> {
    const raw = await this.deps.ephemeral.take(handOffKey(code))
    if (!raw) throw new OAuthError('invalid_grant', 'The code is invalid, expired or already used')
    const handOff = JSON.parse(raw) as HandOff
    if (handOff.codeChallenge !== null) {
      if (codeVerifier === undefined) throw new OAuthError('invalid_grant', 'code_verifier is required')
      if (!PKCE_VERIFIER.test(codeVerifier) || !sameSecret(s256(codeVerifier), handOff.codeChallenge))
        throw new OAuthError('invalid_grant', 'code_verifier does not match the code_challenge')
    } else if (codeVerifier !== undefined) {
      // RFC 9700 §2.1.1: a verifier for a code issued without a challenge is a downgrade attempt.
      throw new OAuthError('invalid_grant', 'The code was issued without a code_challenge')
    }
    const user = await this.deps.users.findById(handOff.userId)
    if (!user) throw new OAuthError('invalid_grant', 'The account no longer exists')
    if (user.disabledAt) throw new OAuthError('invalid_grant', 'The account is disabled')
    const provider = this.deps.providers.get(handOff.provider)
    return this.#signIn(user, provider, {
      scope: handOff.scope,
      remember: handOff.remember,
      useCookie: options.useCookie,
      context: options.context,
      onInvalidScope: () =>
        new OAuthError('invalid_scope', 'The requested scope exceeds what the account is granted'),
    })
  }

  /**
   * Native apps: an ID token a platform SDK obtained, validated like the web flow's (audience: the
   * provider's configured client id), refused when replayed, then signed in.
   */
  async nativeSignIn(
    providerId: string,
    input: {
      idToken: string
      nonce?: string | undefined
      scope?: string | undefined
      remember?: boolean | undefined
      context: RequestContext
    },
  ): Promise<IssuedTokens> {
    const provider = this.deps.providers.get(providerId)
    let claims: IdTokenClaims
    try {
      claims = await this.deps.providers.verifyIdToken(provider, input.idToken)
      this.#checkNonce(provider, claims, input.nonce)
      await this.#refuseReplay(claims, input.idToken)
    } catch (error) {
      if (error instanceof ProblemError && error.code === 'invalid_token')
        await this.#failed(null, provider, input.context, 'invalid_id_token')
      throw error
    }
    const user = await this.resolveUser(provider, claims, input.context)
    return this.#signIn(user, provider, {
      scope: input.scope ?? null,
      remember: input.remember ?? false,
      useCookie: false,
      context: input.context,
      onInvalidScope: () =>
        new ProblemError('invalid_scope', {
          detail: 'The requested scope exceeds what the account is granted',
        }),
    })
  }

  /**
   * The account for a validated ID token: the one linked to (`iss`, `sub`); else an existing
   * account with the same email, linked only when the provider asserts `email_verified` and the
   * account's email is verified (otherwise 409 account_exists); else a new account with a verified
   * email and no password. A provider's `allowed_domains` (and Google's `hd`) apply first.
   */
  async resolveUser(
    provider: OidcProvider,
    claims: IdTokenClaims,
    context: RequestContext,
  ): Promise<UserRow> {
    const { users, identities, audit, clock } = this.deps
    const email = typeof claims.email === 'string' ? claims.email.trim().toLowerCase() : null
    const emailVerified = isEmailVerified(claims)
    this.#checkDomain(provider, claims, email, emailVerified)

    const linked = await identities.find(claims.iss, claims.sub)
    if (linked) {
      const user = await users.findById(linked.userId)
      if (!user)
        throw new ProblemError('invalid_token', { status: 401, detail: 'The account no longer exists' })
      if (user.disabledAt) throw new ProblemError('account_disabled')
      await identities.touch(linked.id, new Date(clock.now()))
      return user
    }
    if (!email || email.length > 254 || !email.includes('@'))
      throw new ProblemError('email_not_verified', {
        detail: 'The identity provider shared no email address',
      })
    const identity = { provider: provider.id, issuer: claims.iss, subject: claims.sub, email }
    const existing = await users.findByEmail(email)
    if (existing) {
      if (!emailVerified || !existing.emailVerifiedAt) {
        await this.#failed(existing.id, provider, context, 'link_refused_unverified_email')
        throw new ProblemError('account_exists', {
          detail:
            'An account with this email exists. Sign in to it; the identity can be linked only when both the provider and the account have verified the email.',
        })
      }
      if (existing.disabledAt) throw new ProblemError('account_disabled')
      if (!(await identities.link(existing.id, identity))) {
        throw new ProblemError('account_exists', {
          detail: 'The account is already linked to another identity at this provider',
        })
      }
      await this.deps.sessions.userChanged(existing.id)
      await audit.record({
        type: 'identity.linked',
        outcome: 'success',
        actorId: existing.id,
        userId: existing.id,
        context,
        details: { provider: provider.id, reason: 'verified_email_match' },
      })
      return existing
    }
    if (!emailVerified)
      throw new ProblemError('email_not_verified', {
        detail: 'The identity provider has not verified this email address',
      })
    const created = await identities.createUser(email, new Date(clock.now()), identity)
    if (!created) throw new ProblemError('account_exists', { detail: 'An account with this email exists' })
    await audit.record({
      type: 'user.signed_up',
      outcome: 'success',
      actorId: created.id,
      userId: created.id,
      context,
      details: { method: 'oidc', provider: provider.id },
    })
    return created
  }

  /** Unlinks the user's identity at a provider when another way in remains (password or identity). */
  async unlink(userId: string, providerId: string, context: RequestContext): Promise<void> {
    const outcome = await this.deps.identities.unlinkUnlessLast(userId, providerId)
    if (outcome === 'unlinked') await this.deps.sessions.userChanged(userId)
    if (outcome === 'not_found')
      throw new ProblemError('not_found', {
        detail: `No identity at "${providerId}" is linked to the account`,
      })
    if (outcome === 'last_way_in') {
      throw new ProblemError('forbidden', {
        detail:
          'This identity is the only way into the account: set a password (POST /v1/auth/password/forgot) or link another provider first',
      })
    }
    await this.deps.audit.record({
      type: 'identity.unlinked',
      outcome: 'success',
      actorId: userId,
      userId,
      context,
      details: { provider: providerId },
    })
  }

  async #signIn(
    user: UserRow,
    provider: OidcProvider,
    options: {
      scope: string | null
      remember: boolean
      useCookie: boolean
      context: RequestContext
      onInvalidScope: () => Error
    },
  ): Promise<IssuedTokens> {
    const scope = grantScope(user.roles, options.scope ?? undefined)
    if (scope === null) throw options.onInvalidScope()
    const tokens = await this.deps.signIn.complete(user, {
      amr: ['fed'],
      scope,
      remember: options.remember,
      useCookie: options.useCookie,
      context: options.context,
    })
    const now = new Date(this.deps.clock.now())
    await this.deps.users.update(user.id, { lastLoginAt: now })
    await this.deps.audit.record({
      type: 'auth.login_succeeded',
      outcome: 'success',
      actorId: user.id,
      userId: user.id,
      context: options.context,
      details: { method: 'oidc', provider: provider.id, remember: options.remember },
    })
    return tokens
  }

  #checkDomain(provider: OidcProvider, claims: IdTokenClaims, email: string | null, verified: boolean): void {
    const allowed = provider.allowedDomains
    if (!allowed) return
    const refuse = (detail: string) => new ProblemError('domain_not_allowed', { detail })
    // An unverified address proves nothing about who the user is.
    if (!email || !verified) throw refuse('The provider did not assert a verified email address')
    const domain = email.slice(email.lastIndexOf('@') + 1)
    if (!allowed.includes(domain)) throw refuse(`Sign-in with ${domain} addresses is not allowed`)
    // Google: an address at a company domain is no proof of membership of its Workspace; `hd` is.
    const hostedDomain = typeof claims.hd === 'string' ? claims.hd.toLowerCase() : undefined
    if (hostedDomain !== undefined ? !allowed.includes(hostedDomain) : HOSTED_DOMAIN_ISSUERS.has(claims.iss))
      throw refuse('The account does not belong to an allowed hosted domain')
  }

  #checkNonce(provider: OidcProvider, claims: IdTokenClaims, nonce: string | undefined): void {
    const invalid = (detail: string) => new ProblemError('invalid_token', { status: 401, detail })
    if (claims.nonce === undefined) {
      if (provider.requireNonce) throw invalid('The ID token has no nonce; this provider requires one')
      if (nonce !== undefined) throw invalid('The ID token has no nonce but one was given')
      return
    }
    if (nonce === undefined) throw invalid('The ID token has a nonce; send it as "nonce"')
    if (!nonceMatches(claims.nonce, nonce)) throw invalid('The nonce does not match the ID token')
  }

  /** An ID token signs in once: its `jti` (or its hash) is remembered until it expires. */
  async #refuseReplay(claims: IdTokenClaims, idToken: string): Promise<void> {
    const id = typeof claims.jti === 'string' ? `${claims.iss} ${claims.jti}` : idToken
    const expiresInMs = Math.max(1000, ((claims.exp ?? 0) + 60) * 1000 - Date.now())
    const fresh = await this.deps.ephemeral.setIfAbsent(`oidc:seen:${hashToken(id)}`, '1', expiresInMs)
    if (!fresh)
      throw new ProblemError('invalid_token', { status: 401, detail: 'The ID token was already used' })
  }

  async #failed(
    userId: string | null,
    provider: OidcProvider,
    context: RequestContext,
    reason: string,
  ): Promise<void> {
    await this.deps.audit.record({
      type: 'auth.login_failed',
      outcome: 'failure',
      userId,
      context,
      details: { method: 'oidc', provider: provider.id, reason },
    })
  }
}

/**
 * Whether the provider vouches for the email: `email_verified` true (Apple sends the string
 * "true"), or Microsoft Entra's `xms_edov` (the domain owner verified it), since Entra never sends
 * `email_verified` and its `email` claim alone is not proof (the "nOAuth" takeover).
 */
export function isEmailVerified(claims: IdTokenClaims): boolean {
  return claims.email_verified === true || claims.email_verified === 'true' || claims.xms_edov === true
}

const stateKey = (state: string) => `oidc:state:${hashToken(state)}`
const handOffKey = (code: string) => `oidc:code:${hashToken(code)}`

function s256(verifier: string): string {
  return createHash('sha256').update(verifier).digest('base64url')
}

function sameSecret(a: string, b: string): boolean {
  const left = Buffer.from(a)
  const right = Buffer.from(b)
  return left.length === right.length && timingSafeEqual(left, right)
}

function validation(path: string, message: string): ProblemError {
  return new ProblemError('validation_failed', { errors: [{ path: `/querystring${path}`, message }] })
}

/** `target` with `params` added to its query (custom schemes such as `app://callback` included). */
export function withParams(target: string, params: Record<string, string>): string {
  const url = new URL(target)
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value)
  return url.href
}

function isNetworkFailure(error: unknown): boolean {
  if (!(error instanceof Error)) return false
  if (error.name === 'TimeoutError' || error.name === 'AbortError') return true
  const cause = (error as { cause?: unknown }).cause
  return (
    (error.name === 'TypeError' && error.message === 'fetch failed') ||
    (cause instanceof Error && (cause.name === 'TimeoutError' || cause.name === 'AbortError'))
  )
}

/** A safe description of why openid-client refused the provider's answer. */
function describeClientError(error: unknown, provider: OidcProvider, providers: OidcProviders): string {
  if (error instanceof client.ResponseBodyError) return `The provider refused the code (${error.error})`
  if (error instanceof client.AuthorizationResponseError) return `The provider answered ${error.error}`
  // openid-client wraps oauth4webapi's error, whose cause holds the claims or parameters compared.
  let message = error instanceof Error ? error.message : 'not valid'
  let current: unknown = error
  for (let depth = 0; depth < 4 && current && typeof current === 'object'; depth += 1) {
    const { claims, parameters } = current as { claims?: { iss?: unknown }; parameters?: unknown }
    // Mix-up (RFC 9700 §4.4): an ID token or an RFC 9207 `iss` parameter of another provider.
    const iss = claims?.iss ?? (parameters instanceof URLSearchParams ? parameters.get('iss') : undefined)
    const other = typeof iss === 'string' && iss !== provider.issuer ? providers.idForIssuer(iss) : undefined
    if (other) return `The answer was issued by another configured provider ("${other}")`
    if (current instanceof Error && depth > 0) message = current.message
    current = (current as { cause?: unknown }).cause
  }
  return `The provider's answer is not valid: ${message}`
}
