import { ProblemError } from '../errors.js'
import type { UserRow } from '../storage/user-repository.js'
import type { RequestContext } from './audit.js'
import { hasMfa, type MfaService } from './mfa.js'
import type { IssuedTokens, SessionService } from './sessions.js'

export interface FirstFactor {
  /** RFC 8176 methods of the first factor, e.g. ["pwd"] or ["fed"]. */
  amr: string[]
  scope: string
  remember: boolean
  useCookie: boolean
  context: RequestContext
}

/**
 * The one place that decides what a successful first factor leads to. Every way in (password
 * login, social login, native ID tokens) ends here, so none can skip the second factor: a user
 * with an active factor gets `403 mfa_required` with an `mfa_token`, everyone else a session.
 * Password reset never signs in, so it never reaches this point.
 */
export class SignInGate {
  constructor(
    private readonly mfa: MfaService,
    private readonly sessions: SessionService,
  ) {}

  /** A session for `user`, or the MFA challenge when the user has a second factor. */
  async complete(user: UserRow, factor: FirstFactor): Promise<IssuedTokens> {
    if (hasMfa(user)) {
      const challenge = await this.mfa.challenge({
        userId: user.id,
        amr: factor.amr,
        remember: factor.remember,
        scope: factor.scope,
        useCookie: factor.useCookie,
      })
      throw new ProblemError('mfa_required', {
        detail: 'Enter a code from your authenticator app or a recovery code',
        extensions: challenge,
      })
    }
    return this.sessions.start({
      user,
      scope: factor.scope,
      amr: factor.amr,
      remember: factor.remember,
      context: factor.context,
    })
  }
}
