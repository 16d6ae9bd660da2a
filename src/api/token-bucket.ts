/**
 * A token bucket: `burst` tokens at most, refilled at `rate` per second. Pure
 * apart from the clock it is given.
 */

export interface TokenBucket {
  /** Takes one token: 0 when taken, else the seconds until one will be there (nothing taken). */
  take(): number;
}

/** A full bucket; `now` is a monotonic clock in ms. */
export function createTokenBucket(rate: number, burst: number, now: () => number): TokenBucket {
  let tokens = burst;
  let at = now();
  return {
    take() {
      const t = now();
      tokens = Math.min(burst, tokens + ((t - at) / 1000) * rate);
      at = t;
      if (tokens >= 1) {
        tokens -= 1;
        return 0;
      }
      return (1 - tokens) / rate;
    },
  };
}
