/** Which scopes each role grants (the contract's "Scopes and roles"). */
export const ROLE_SCOPES: Readonly<Record<string, readonly string[]>> = Object.freeze({
  user: ['profile', 'sessions'],
  admin: ['profile', 'sessions', 'admin:users', 'admin:audit', 'admin:keys'],
})

/** Every scope `roles` grant, in a stable order. */
export function scopesForRoles(roles: readonly string[]): string[] {
  const granted = new Set<string>()
  for (const role of roles) for (const scope of ROLE_SCOPES[role] ?? []) granted.add(scope)
  return [...granted]
}

/** Splits a space-separated scope string into its distinct scopes. */
export function parseScope(scope: string): string[] {
  return [...new Set(scope.split(' ').filter((item) => item.length > 0))]
}

/**
 * A session's stored scope when the sign-in asked for none: "everything the roles grant", worked
 * out again at each refresh, so a role granted later widens the next access token.
 */
export const ALL_GRANTED = '*'

/**
 * The scope a session records at sign-in: ALL_GRANTED, or the narrower `requested` set.
 * Returns null when `requested` asks for anything the roles do not grant (never widen).
 */
export function grantScope(roles: readonly string[], requested?: string): string | null {
  const granted = scopesForRoles(roles)
  if (requested === undefined) return ALL_GRANTED
  const asked = parseScope(requested)
  if (asked.length === 0 || asked.some((scope) => !granted.includes(scope))) return null
  return granted.filter((scope) => asked.includes(scope)).join(' ')
}

/**
 * The scope of an access token issued for a session now: everything the current roles grant
 * (ALL_GRANTED), or the session's requested scopes less what the roles no longer grant.
 */
export function effectiveScope(sessionScope: string, roles: readonly string[]): string {
  return sessionScope === ALL_GRANTED ? scopesForRoles(roles).join(' ') : narrowToRoles(sessionScope, roles)
}

/** The session's scope, less whatever the user's current roles no longer grant. */
export function narrowToRoles(scope: string, roles: readonly string[]): string {
  const granted = scopesForRoles(roles)
  return parseScope(scope)
    .filter((item) => granted.includes(item))
    .join(' ')
}

/** Who is acting, as the access token says (roles and scope as of its issue). */
export interface Actor {
  userId: string
  roles: readonly string[]
  scope: string
}

/** The roles a user can have; `user` is everyone's. */
export const KNOWN_ROLES = Object.freeze(Object.keys(ROLE_SCOPES))

export type Decision = { allowed: true } | { allowed: false; reason: string }

const allow: Decision = { allowed: true }
const deny = (reason: string): Decision => ({ allowed: false, reason })

/** Whether the token carries every one of `required` scopes. */
export function hasScopes(actor: Pick<Actor, 'scope'>, required: readonly string[]): boolean {
  const granted = parseScope(actor.scope)
  return required.every((scope) => granted.includes(scope))
}

/** Whether the token's roles include one of `allowed`. */
export function hasRole(actor: Pick<Actor, 'roles'>, allowed: readonly string[]): boolean {
  return actor.roles.some((role) => allowed.includes(role))
}

/** Administrators of users: the `admin` role together with the `admin:users` scope. */
export function isUserAdmin(actor: Actor): boolean {
  return hasRole(actor, ['admin']) && hasScopes(actor, ['admin:users'])
}

/**
 * Ownership of a session: its user may read and end it; a user administrator may end anyone's.
 * Anyone else is told the session does not exist (404, not 403, so ids reveal nothing).
 */
export function canActOnSession(actor: Actor, session: { userId: string }): boolean {
  return session.userId === actor.userId || isUserAdmin(actor)
}

/**
 * The roles a user ends up with after an administrator sets `requested`: known roles only,
 * `user` always included, in a stable order. Null when a role is unknown.
 */
export function normalizeRoles(requested: readonly string[]): string[] | null {
  if (requested.some((role) => !KNOWN_ROLES.includes(role))) return null
  const wanted = new Set(['user', ...requested])
  return KNOWN_ROLES.filter((role) => wanted.has(role))
}

/**
 * Whether an administrator may change a user this way. Nobody locks themselves out: an
 * administrator cannot remove their own `admin` role or disable their own account (another
 * administrator can).
 */
export function canUpdateUser(
  actor: Actor,
  targetUserId: string,
  change: { roles?: readonly string[] | undefined; disabled?: boolean | undefined },
): Decision {
  if (!isUserAdmin(actor)) return deny('Only administrators may change users')
  if (targetUserId !== actor.userId) return allow
  if (change.disabled === true) return deny('Administrators cannot disable their own account')
  if (change.roles && !change.roles.includes('admin'))
    return deny('Administrators cannot remove their own admin role')
  return allow
}
