/**
 * A token bucket: `burst` tokens at most, refilled at `rate` per second. Pure
 * apart from the clock it is given.
 */

export interface TokenBucket {
  /** Takes `cost` tokens (default one): 0 when taken, else the seconds until they will be there (nothing taken). */
  take(cost?: number): number;
}

/** A full bucket; `now` is a monotonic clock in ms. */
export function createTokenBucket(rate: number, burst: number, now: () => number): TokenBucket {
  let tokens = burst;
  let at = now();
  return {
    take(cost = 1) {
      const t = now();
      tokens = Math.min(burst, tokens + ((t - at) / 1000) * rate);
      at = t;
      if (tokens >= cost) {
        tokens -= cost;
        return 0;
      }
      return (cost - tokens) / rate;
    },
  };
}
