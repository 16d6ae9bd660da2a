/**
 * Per-source rate limiting of repeated warnings. Anyone who can reach a port
 * can make the node refuse something as often as they like; without a limit
 * each refusal would be a log line, and the log would drown (and fill the
 * disk) while saying the same thing. The first event of a source is logged;
 * later ones within `intervalMs` are only counted, and the next line after
 * the interval carries how many were left out (`suppressed`). Every left-out
 * line is also counted through `onSuppressed` (a metric), so nothing goes
 * unseen.
 */
import type { Logger } from 'pino';
import { setNewest } from './newest.js';

export interface LogLimiter {
  /**
   * Logs `msg` at warn for `event` from `source` (a client address, a token
   * name), unless a line for the same pair was logged less than an interval ago.
   */
  warn(event: string, source: string, fields: Record<string, unknown>, msg: string): void;
}

export interface LogLimiterOptions {
  /** Where lines go (a pino or fastify logger). */
  logger: Pick<Logger, 'warn'>;
  /** Called for every line left out, with its event. */
  onSuppressed?: (event: string) => void;
  /** Least time between two lines of one event and source, in ms; default 60000. */
  intervalMs?: number;
  /**
   * Pairs of event and source remembered at most; the least recently logged
   * are forgotten first, so many sources cannot grow memory. Default 10000.
   */
  maxSources?: number;
  /** A monotonic clock in ms. */
  now?: () => number;
}

interface SourceState {
  loggedAt: number;
  suppressed: number;
}

/** Creates a limiter; one per node (or per subsystem) is enough. */
export function createLogLimiter(opts: LogLimiterOptions): LogLimiter {
  const intervalMs = opts.intervalMs ?? 60_000;
  const maxSources = opts.maxSources ?? 10_000;
  const now = opts.now ?? (() => performance.now());
  // Map order is the order of the last logged line, so the stalest pair comes first.
  const sources = new Map<string, SourceState>();

  function remember(key: string, state: SourceState): void {
    setNewest(sources, key, state, maxSources);
  }

  return {
    warn(event, source, fields, msg) {
      const key = `${event}\u0000${source}`;
      const t = now();
      const state = sources.get(key);
      if (state !== undefined && t - state.loggedAt < intervalMs) {
        state.suppressed += 1;
        opts.onSuppressed?.(event);
        return;
      }
      const suppressed = state?.suppressed ?? 0;
      opts.logger.warn({ ...fields, event, source, ...(suppressed > 0 ? { suppressed } : {}) }, msg);
      remember(key, { loggedAt: t, suppressed: 0 });
    },
  };
}
