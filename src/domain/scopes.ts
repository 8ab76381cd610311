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
 * The scope a sign-in gets: everything the roles grant, or the narrower `requested` set.
 * Returns null when `requested` asks for anything the roles do not grant (never widen).
 */
export function grantScope(roles: readonly string[], requested?: string): string | null {
  const granted = scopesForRoles(roles)
  if (requested === undefined) return granted.join(' ')
  const asked = parseScope(requested)
  if (asked.length === 0 || asked.some((scope) => !granted.includes(scope))) return null
  return granted.filter((scope) => asked.includes(scope)).join(' ')
}

/** On refresh: the session's scope, less whatever the user's current roles no longer grant. */
export function narrowToRoles(scope: string, roles: readonly string[]): string {
  const granted = scopesForRoles(roles)
  return parseScope(scope)
    .filter((item) => granted.includes(item))
    .join(' ')
}
