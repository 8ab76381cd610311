/** The time source every domain rule takes, so tests can move it. Milliseconds since the epoch. */
export interface Clock {
  now(): number
}

/** The real clock. */
export const systemClock: Clock = { now: () => Date.now() }

/** Whole seconds since the epoch, as JWT claims want them. */
export function epochSeconds(ms: number): number {
  return Math.floor(ms / 1000)
}
