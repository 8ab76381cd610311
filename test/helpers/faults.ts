import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (!address || typeof address === 'string') throw new Error('no port')
  return address.port
}

/** A redis-server of the test's own, which the test may stop and start again (same port, same data). */
export interface OwnRedis {
  url: string
  stop(): Promise<void>
  start(): Promise<void>
}

export async function startOwnRedis(t: Test): Promise<OwnRedis> {
  const port = await freePort()
  // Not t.testdir(): that folder is the app's DATA_DIR too, and tap makes it afresh on each call.
  const dir = await mkdtemp(join(tmpdir(), 'latchkey-redis-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  let child: ChildProcess | undefined
  const start = async () => {
    // Append-only with fsync on every write: a restart keeps what was written.
    child = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--save',
        '',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    const started = child
    await new Promise<void>((resolve, reject) => {
      let output = ''
      const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${output}`)), 10_000)
      started.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString()
        if (/Ready to accept connections/.test(output)) {
          clearTimeout(timer)
          resolve()
        }
      })
      started.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`redis-server exited (${code}): ${output}`))
      })
    })
  }
  const stop = async () => {
    const running = child
    child = undefined
    if (!running || running.exitCode !== null) return
    const exited = new Promise((resolve) => running.once('exit', resolve))
    running.kill('SIGKILL')
    await exited
  }
  await start()
  t.teardown(stop)
  return { url: `redis://127.0.0.1:${port}`, stop, start }
}

/**
 * A TCP proxy the test can cut (every connection reset with an RST, new ones reset at once, as a
 * network failure or a stopped server looks) and restore.
 */
export interface CuttableProxy {
  port: number
  cut(): void
  /** Like cut, but new connections are accepted and then closed cleanly (FIN), as a proxy in
   * front of a dead server may do. */
  cutQuietly(): void
  restore(): void
}

export async function startProxy(t: Test, target: { host: string; port: number }): Promise<CuttableProxy> {
  const sockets = new Set<Socket>()
  let open = true
  let quiet = false
  const server: Server = createServer((client) => {
    if (!open) {
      // The peer may still write after we close: an EPIPE or reset on a socket with no 'error'
      // listener would be an uncaught exception in the test process.
      client.on('error', () => {})
      // Tracked too: a half-closed socket would keep server.close() waiting at teardown.
      sockets.add(client)
      client.on('close', () => sockets.delete(client))
      if (quiet) client.end()
      else client.resetAndDestroy()
      return
    }
    const upstream = connect(target.port, target.host)
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
      socket.on('error', () => {
        client.destroy()
        upstream.destroy()
      })
    }
    client.pipe(upstream)
    upstream.pipe(client)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  )
  const address = server.address()
  if (!address || typeof address === 'string') throw new Error('no port')
  return {
    port: address.port,
    cut() {
      open = false
      quiet = false
      for (const socket of sockets) socket.resetAndDestroy()
    },
    cutQuietly() {
      open = false
      quiet = true
      for (const socket of sockets) socket.resetAndDestroy()
    },
    restore() {
      open = true
    },
  }
}

/** Polls `check` until it holds or `ms` pass. */
export async function eventually(check: () => Promise<boolean>, ms = 15_000): Promise<boolean> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (await check()) return true
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  return false
}

/** Starts a redis-server (or sentinel) process with `args`, stopped at teardown. */
export async function spawnRedisProcess(t: Test, args: string[], cwd: string): Promise<ChildProcess> {
  const child = spawn('redis-server', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  await new Promise<void>((resolve, reject) => {
    let output = ''
    const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${output}`)), 10_000)
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      if (/Ready to accept connections|Sentinel ID is/.test(output)) {
        clearTimeout(timer)
        resolve()
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`redis-server exited (${code}): ${output}`))
    })
  })
  t.teardown(async () => {
    if (child.exitCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGKILL')
    await exited
  })
  return child
}

/** A fresh temporary folder, removed at teardown. */
export async function tempDir(t: Test, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}
