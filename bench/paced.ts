/**
 * An open-loop load that runs until stopped and keeps every request: when it
 * was due, how long it took from then, and whether it succeeded. The
 * catch-up scenario needs this where `openLoop` (load.ts) is not enough: the
 * end of the run is only known once the cluster has converged, and latency
 * must be read per window of send time rather than as one distribution.
 * Latency counts from the scheduled start, as in `openLoop`, so a stalled
 * region is not hidden by requests that were never sent.
 */
import type { Operation } from './load.js';

/** One request of a {@link PacedLoad}. */
export interface TimedRequest {
  /** Its index, as passed to the operation. */
  i: number;
  /** When it was due, on the `performance.now()` clock. */
  dueAt: number;
  /** Due time → answer, ms. */
  ms: number;
  /** How late it left against its schedule (this process busy, or the cap reached), ms. */
  sendDelayMs: number;
  ok: boolean;
}

export interface PacedLoad {
  /** Requests answered so far, in order of answer. */
  readonly done: TimedRequest[];
  /** Failure messages and how often each occurred. */
  readonly errors: Record<string, number>;
  /** Stops starting requests; resolves once every request in flight has been answered. */
  stop(): Promise<void>;
}

/**
 * Starts `rate` requests per second from now until {@link PacedLoad.stop},
 * each at its scheduled time (checked every `tickMs`), with at most
 * `maxInFlight` outstanding; requests held back by that cap keep their time.
 */
export function pacedLoad(o: { rate: number; op: Operation; maxInFlight?: number; tickMs?: number }): PacedLoad {
  const interval = 1000 / o.rate;
  const cap = o.maxInFlight ?? 4096;
  const start = performance.now();
  const done: TimedRequest[] = [];
  const errors: Record<string, number> = {};
  const running = new Set<Promise<void>>();
  let next = 0;
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;

  const run = async (i: number, dueAt: number): Promise<void> => {
    const sendDelayMs = performance.now() - dueAt;
    let ok = true;
    try {
      await o.op(i);
    } catch (err) {
      ok = false;
      const key = (err instanceof Error ? err.message : String(err)).slice(0, 100);
      errors[key] = (errors[key] ?? 0) + 1;
    }
    done.push({ i, dueAt, ms: performance.now() - dueAt, sendDelayMs, ok });
  };
  const tick = (): void => {
    const due = Math.floor((performance.now() - start) / interval) + 1;
    while (next < due && running.size < cap) {
      const i = next++;
      const p = run(i, start + i * interval).finally(() => running.delete(p));
      running.add(p);
    }
    if (!stopped) timer = setTimeout(tick, o.tickMs ?? 1);
  };
  tick();
  return {
    done,
    errors,
    stop: async () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      while (running.size > 0) await Promise.all([...running]);
    },
  };
}
