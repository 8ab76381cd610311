import t from 'tap'
import {
  ALL_GRANTED,
  canActOnSession,
  canUpdateUser,
  effectiveScope,
  grantScope,
  hasRole,
  hasScopes,
  isUserAdmin,
  KNOWN_ROLES,
  narrowToRoles,
  normalizeRoles,
  scopesForRoles,
} from '../../src/domain/policy.js'

const ADMIN_SCOPE = 'profile sessions admin:users admin:audit admin:keys'
const admin = { userId: 'admin-1', roles: ['user', 'admin'], scope: ADMIN_SCOPE }
const otherAdmin = { userId: 'admin-2', roles: ['user', 'admin'], scope: ADMIN_SCOPE }
const user = { userId: 'user-1', roles: ['user'], scope: 'profile sessions' }

t.test('roles grant scopes', async (t) => {
  t.same(scopesForRoles(['user']), ['profile', 'sessions'])
  t.same(scopesForRoles(['user', 'admin']), [
    'profile',
    'sessions',
    'admin:users',
    'admin:audit',
    'admin:keys',
  ])
  t.same(scopesForRoles(['unknown']), [])
  t.same(KNOWN_ROLES, ['user', 'admin'])
})

t.test('a sign-in may narrow its scope, never widen it', async (t) => {
  t.equal(grantScope(['user']), ALL_GRANTED, 'no request: everything the roles grant, worked out later')
  t.equal(grantScope(['user', 'admin'], 'admin:audit profile'), 'profile admin:audit', 'in a stable order')
  t.equal(grantScope(['user'], 'admin:users'), null)
  t.equal(grantScope(['user'], 'profile admin:users'), null, 'one scope too many refuses the whole request')
  t.equal(grantScope(['user'], ''), null, 'an empty request asks for nothing usable')
  t.equal(grantScope(['user'], 'profile  profile'), 'profile')
})

t.test("a session's scope follows the roles at each refresh", async (t) => {
  t.equal(effectiveScope(ALL_GRANTED, ['user']), 'profile sessions')
  t.equal(
    effectiveScope(ALL_GRANTED, ['user', 'admin']),
    ADMIN_SCOPE,
    'a granted role widens a default session',
  )
  t.equal(effectiveScope('profile admin:users', ['user']), 'profile', 'a removed role narrows')
  t.equal(effectiveScope('profile', ['user', 'admin']), 'profile', 'an explicit narrow request stays narrow')
  t.equal(narrowToRoles('profile sessions admin:keys', ['user']), 'profile sessions')
})

t.test('scope and role checks', async (t) => {
  t.ok(hasScopes(admin, ['admin:users', 'profile']))
  t.notOk(hasScopes(user, ['admin:users']))
  t.ok(hasScopes(user, []), 'nothing required')
  t.notOk(hasScopes({ scope: 'admin:usersx' }, ['admin:users']), 'whole scopes, not prefixes')
  t.ok(hasRole(admin, ['admin']))
  t.notOk(hasRole(user, ['admin']))
  t.ok(isUserAdmin(admin))
  t.notOk(isUserAdmin(user))
  t.notOk(isUserAdmin({ ...admin, scope: 'profile sessions' }), 'the role without the scope')
  t.notOk(isUserAdmin({ ...user, scope: ADMIN_SCOPE }), 'the scope without the role')
})

t.test('sessions: owners and user administrators', async (t) => {
  t.ok(canActOnSession(user, { userId: 'user-1' }), 'my own')
  t.notOk(canActOnSession(user, { userId: 'user-2' }), "someone else's")
  t.ok(canActOnSession(admin, { userId: 'user-2' }), 'an administrator, anyone’s')
  t.notOk(
    canActOnSession({ ...admin, scope: 'profile sessions' }, { userId: 'user-2' }),
    'not with a narrowed token',
  )
})

t.test('roles an administrator sets', async (t) => {
  t.same(normalizeRoles(['admin']), ['user', 'admin'], 'user is always kept')
  t.same(normalizeRoles([]), ['user'])
  t.same(normalizeRoles(['admin', 'user', 'admin']), ['user', 'admin'], 'stable, no duplicates')
  t.equal(normalizeRoles(['root']), null)
})

t.test('what an administrator may change', async (t) => {
  t.same(canUpdateUser(admin, 'user-1', { disabled: true }), { allowed: true })
  t.same(canUpdateUser(admin, 'user-1', { roles: ['user', 'admin'] }), { allowed: true })
  t.same(canUpdateUser(admin, 'admin-2', { roles: ['user'] }), { allowed: true }, 'another admin’s role')
  t.same(canUpdateUser(otherAdmin, 'admin-1', { disabled: true }), { allowed: true }, 'another admin')
  t.equal(canUpdateUser(admin, 'admin-1', { disabled: true }).allowed, false, 'not myself')
  t.equal(canUpdateUser(admin, 'admin-1', { roles: ['user'] }).allowed, false, 'not my own admin role')
  t.same(canUpdateUser(admin, 'admin-1', { roles: ['user', 'admin'] }), { allowed: true }, 'keeping it')
  t.same(canUpdateUser(admin, 'admin-1', { disabled: false }), { allowed: true })
  t.equal(canUpdateUser(user, 'user-2', { disabled: true }).allowed, false, 'not a user')
  t.equal(canUpdateUser({ ...admin, scope: 'profile' }, 'user-1', {}).allowed, false, 'not without the scope')
})
