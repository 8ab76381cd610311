import formbody from '@fastify/formbody'
import type { FastifyPluginAsyncTypebox, TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { CallbackError, withParams } from '../../domain/social-login.js'
import { problems, TokenResponse } from '../../schemas/common.js'
import { answerTokens, countsAsLogin, noStore, requestContext } from '../context.js'

/** Binds a pending social sign-in to the browser that started it (RFC 9700 §4.7: CSRF on the callback). */
export const BINDING_COOKIE = '__Host-oidc_binding'
const BINDING_MAX_AGE_SECONDS = 600
// Lax, not Strict: the provider's redirect back is a cross-site top-level navigation. A provider
// that answers with a cross-site form post (response_mode=form_post, Apple) needs None; the cookie
// is still useless to anyone else, since it only matches the state it was issued with.
const bindingAttributes = { httpOnly: true, secure: true, sameSite: 'lax', path: '/' } as const
const formPostBindingAttributes = { ...bindingAttributes, sameSite: 'none' } as const

const ProviderParams = Type.Object({
  provider: Type.String({ pattern: '^[a-z0-9][a-z0-9_-]{0,31}$', description: 'OIDC_PROVIDERS[].id' }),
})

/** The authorization response (RFC 6749 §4.1.2, RFC 9207); providers may add their own parameters. */
const CallbackParameters = Type.Object(
  {
    code: Type.Optional(Type.String({ maxLength: 2048 })),
    state: Type.Optional(Type.String({ maxLength: 512 })),
    iss: Type.Optional(Type.String({ maxLength: 2048 })),
    error: Type.Optional(Type.String({ maxLength: 256 })),
    error_description: Type.Optional(Type.String({ maxLength: 2048 })),
  },
  { additionalProperties: true },
)

const Redirect = Type.Null({ description: 'Redirect; see the Location header' })

/**
 * Social login: this API as an OpenID Connect client of the configured providers. The web flow
 * (authorize → provider → callback → the app's redirect target with a one-time code for the token
 * endpoint) and the native flow (an ID token from a platform SDK).
 */
const oidcRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { socialLogin } = app.services

  app.get(
    '/oidc/:provider/authorize',
    {
      schema: {
        tags: ['social login'],
        summary: 'Start a social sign-in (browser)',
        description:
          'Redirects (302) to the provider with response_type=code, a fresh state and nonce and PKCE S256. redirect_to must exactly equal an entry of REDIRECT_ALLOWLIST (custom schemes such as latchkeyapp://callback included), else 400 invalid_redirect. An app that passes its own code_challenge (S256) must send the matching code_verifier when it exchanges the code. scope and remember apply to the session the code is exchanged for. The pending sign-in is bound to this browser by the __Host-oidc_binding cookie (HttpOnly, Secure, SameSite=Lax, 10 minutes).',
        params: ProviderParams,
        querystring: Type.Object(
          {
            redirect_to: Type.String({ minLength: 1, maxLength: 2048 }),
            code_challenge: Type.Optional(Type.String({ maxLength: 128 })),
            code_challenge_method: Type.Optional(Type.String({ maxLength: 16 })),
            scope: Type.Optional(Type.String({ maxLength: 512 })),
            remember: Type.Optional(Type.Boolean()),
          },
          { additionalProperties: false },
        ),
        response: { 302: Redirect, ...problems(400, 404, 429, 503) },
      },
    },
    async (request, reply) => {
      const query = request.query
      const { url, binding, responseMode } = await socialLogin.authorize(request.params.provider, {
        redirectTo: query.redirect_to,
        codeChallenge: query.code_challenge,
        codeChallengeMethod: query.code_challenge_method,
        scope: query.scope,
        remember: query.remember,
      })
      noStore(reply)
      reply.setCookie(BINDING_COOKIE, binding, {
        ...(responseMode === 'form_post' ? formPostBindingAttributes : bindingAttributes),
        maxAge: BINDING_MAX_AGE_SECONDS,
      })
      return reply.redirect(url, 302)
    },
  )

  app.get(
    '/oidc/:provider/callback',
    {
      onRequest: app.rateLimits.loginIp,
      schema: {
        tags: ['social login'],
        summary: 'The provider redirects the browser here',
        description:
          'Checks the state (missing, altered, replayed, for another provider or from another browser: 400 invalid_token, and the provider is not called), exchanges the code with the PKCE verifier, validates the ID token (signature, iss, aud, azp, exp, iat, nonce; an answer of another configured provider is refused), then finds, links or creates the user and redirects (302) to redirect_to?code=... with a one-time code (60 s) for POST /v1/auth/token (grant_type=authorization_code). Once the state is known, errors redirect to redirect_to?error=<code> (invalid_token, account_exists, domain_not_allowed, email_not_verified, account_disabled, access_denied, provider_error, service_unavailable).',
        params: ProviderParams,
        querystring: CallbackParameters,
        response: { 302: Redirect, ...problems(400, 404, 429, 503) },
      },
    },
    async (request, reply) =>
      finishCallback(
        request,
        reply,
        request.params.provider,
        new URL(request.url, 'http://callback.invalid').searchParams,
      ),
  )

  // response_mode=form_post: the same answer, posted by the browser as a form.
  await app.register(async (instance) => {
    const formPost = instance.withTypeProvider<TypeBoxTypeProvider>()
    await formPost.register(formbody, { bodyLimit: 16_384 })
    formPost.post(
      '/oidc/:provider/callback',
      {
        onRequest: app.rateLimits.loginIp,
        schema: {
          tags: ['social login'],
          summary: 'The provider posts the browser here (response_mode=form_post)',
          description:
            'For providers configured with response_mode "form_post" (Sign in with Apple asks for it when it shares the email). The same checks and answers as the GET callback.',
          params: ProviderParams,
          consumes: ['application/x-www-form-urlencoded'],
          body: CallbackParameters,
          response: { 302: Redirect, ...problems(400, 404, 415, 429, 503) },
        },
      },
      async (request, reply) =>
        finishCallback(
          request,
          reply,
          request.params.provider,
          new URLSearchParams(request.body as Record<string, string>),
        ),
    )
  })

  /** Finishes the web flow; errors go to the app's redirect target once the state is known. */
  async function finishCallback(
    request: FastifyRequest,
    reply: FastifyReply,
    providerId: string,
    parameters: URLSearchParams,
  ) {
    noStore(reply)
    const binding = request.cookies[BINDING_COOKIE]
    reply.clearCookie(BINDING_COOKIE, bindingAttributes)
    try {
      const { location } = await socialLogin.callback(
        providerId,
        parameters,
        binding,
        requestContext(request),
      )
      return reply.redirect(location, 302)
    } catch (error) {
      if (!(error instanceof CallbackError)) throw error
      // The cause's message only: openid-client errors may hold the provider's answer, tokens included.
      const cause = error.problem.cause
      request.log.info(
        {
          code: error.problem.code,
          reason: error.problem.detail,
          cause: cause instanceof Error ? `${cause.name}: ${cause.message}` : undefined,
        },
        'social sign-in refused',
      )
      if (error.redirectTo === null) throw error.problem
      return reply.redirect(withParams(error.redirectTo, { error: error.redirectError }), 302)
    }
  }

  app.post(
    '/oidc/:provider/id-token',
    {
      onRequest: [countsAsLogin('oidc_native'), app.rateLimits.loginIp],
      schema: {
        tags: ['social login'],
        summary: 'Sign in with an ID token from a native SDK',
        description:
          'For apps that sign in with the platform SDK (Sign in with Apple, Google Identity Services, MSAL). The ID token must be signed by the provider with an algorithm it advertises, carry iss exactly the provider issuer, aud containing its configured client_id (azp equal to it when there are several audiences), a valid exp and an iat within the last hour. When the token carries a nonce, send the raw nonce (the claim may be the nonce or its SHA-256 in hex); a provider configured with require_nonce refuses tokens without one. An ID token signs in once: a replay is 401 invalid_token. Linking rules as for the web flow; a user with MFA gets 403 mfa_required.',
        params: ProviderParams,
        body: Type.Object(
          {
            id_token: Type.String({ minLength: 1, maxLength: 8192 }),
            nonce: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
            remember: Type.Optional(Type.Boolean({ description: 'Remember me, as at login' })),
            scope: Type.Optional(
              Type.String({ maxLength: 512, description: 'Narrower than the roles grant' }),
            ),
          },
          {
            additionalProperties: false,
            examples: [
              {
                id_token: 'eyJhbGciOiJSUzI1NiIsImtpZCI6Ii4uLiJ9.eyJpc3MiOiIuLi4ifQ.c2ln',
                nonce: 'n-0S6_WzA2Mj',
              },
            ],
          },
        ),
        response: { 200: TokenResponse, ...problems(400, 401, 403, 404, 409, 415, 429, 503) },
      },
    },
    async (request, reply) => {
      const body = request.body
      const issued = await socialLogin.nativeSignIn(request.params.provider, {
        idToken: body.id_token,
        nonce: body.nonce,
        remember: body.remember,
        scope: body.scope,
        context: requestContext(request),
      })
      return answerTokens(app, reply, issued, false)
    },
  )
}

export default oidcRoutes
