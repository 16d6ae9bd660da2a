/**
 * Reconnect delays: exponential growth with full jitter, so that regions which
 * lost each other at the same moment do not all redial in lockstep.
 */

export interface BackoffOptions {
  /** Delay of the first retry, and the floor of every later one. */
  minMs: number;
  /** Cap of the delay. */
  maxMs: number;
}

/**
 * Delay before retry number `attempt` (0 for the first): uniformly random in
 * `[minMs, min(maxMs, minMs * 2^attempt)]`. The floor keeps an unlucky draw
 * from turning into a tight reconnect loop.
 */
export function backoffDelay(attempt: number, { minMs, maxMs }: BackoffOptions, random: () => number = Math.random): number {
  if (!(minMs >= 0) || !(maxMs >= minMs) || !Number.isFinite(maxMs)) {
    throw new RangeError(`backoff needs 0 <= minMs <= maxMs < Infinity, got ${minMs} and ${maxMs}`);
  }
  // 2^64 exceeds any sane cap; clamping keeps the arithmetic finite for huge attempts.
  const exponent = Math.min(Math.max(0, Math.floor(attempt)), 64);
  const ceiling = Math.min(maxMs, minMs * 2 ** exponent);
  const r = Math.min(Math.max(random(), 0), 1);
  return minMs + r * (ceiling - minMs);
}
