import type { FastifyPluginAsync } from 'fastify'
import adminRoutes from './admin.js'
import loginRoutes from './auth/login.js'
import logoutRoutes from './auth/logout.js'
import mfaVerifyRoutes from './auth/mfa.js'
import oidcRoutes from './auth/oidc.js'
import passwordRoutes from './auth/password.js'
import reauthenticateRoutes from './auth/reauthenticate.js'
import signupRoutes from './auth/signup.js'
import tokenRoutes from './auth/token.js'
import healthRoutes from './health.js'
import meRoutes from './me/index.js'
import mfaRoutes from './me/mfa.js'
import pageRoutes from './pages.js'
import wellKnownRoutes from './well-known.js'

/** Every route, mounted under the URL tree the files mirror. */
const routes: FastifyPluginAsync = async (app) => {
  await app.register(wellKnownRoutes)
  await app.register(healthRoutes)
  await app.register(
    async (auth) => {
      await auth.register(signupRoutes)
      await auth.register(loginRoutes)
      await auth.register(logoutRoutes)
      await auth.register(tokenRoutes)
      await auth.register(passwordRoutes)
      await auth.register(reauthenticateRoutes)
      await auth.register(mfaVerifyRoutes)
      await auth.register(oidcRoutes)
    },
    { prefix: '/v1/auth' },
  )
  await app.register(meRoutes, { prefix: '/v1/me' })
  await app.register(mfaRoutes, { prefix: '/v1/me/mfa' })
  await app.register(adminRoutes, { prefix: '/v1/admin' })
  await app.register(pageRoutes)
}

export default routes
