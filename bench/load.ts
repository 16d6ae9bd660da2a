/**
 * Load generators. A closed loop keeps N requests in flight (it measures
 * capacity). An open loop starts requests on a fixed schedule whatever the
 * answers (it measures latency at an offered load); its latencies are taken
 * from each request's scheduled start, so a stalled server is not hidden by
 * requests that were never sent (coordinated omission).
 */
import { Latency, round, type LatencySummary } from './stats.js';

/** One request; resolves on success, throws (with a short message) on failure. */
export type Operation = (i: number) => Promise<void>;

export interface LoadResult {
  mode: 'open' | 'closed';
  /** Offered requests per second (open loop). */
  offered: number | null;
  /** Requests kept in flight (closed loop). */
  clients: number | null;
  /** Seconds from the first start to the last answer. */
  elapsedS: number;
  ok: number;
  failed: number;
  /** Successful requests per second over `elapsedS`. */
  throughput: number;
  latency: LatencySummary;
  /** Failure messages and how often each occurred. */
  errors: Record<string, number>;
  /**
   * Open loop: how late requests left against their schedule (this process
   * busy, or `maxInFlight` reached). Large values mean the generator, not
   * only the server, fell behind.
   */
  sendDelay: LatencySummary | null;
}

class Tally {
  readonly latency = new Latency();
  readonly sendDelay = new Latency();
  ok = 0;
  failed = 0;
  readonly errors: Record<string, number> = {};

  async run(op: Operation, i: number, from: number): Promise<void> {
    this.sendDelay.record(performance.now() - from);
    try {
      await op(i);
      this.ok++;
      this.latency.record(performance.now() - from);
    } catch (err) {
      this.failed++;
      const key = (err instanceof Error ? err.message : String(err)).slice(0, 100);
      this.errors[key] = (this.errors[key] ?? 0) + 1;
    }
  }

  result(mode: 'open' | 'closed', offered: number | null, clients: number | null, elapsedMs: number): LoadResult {
    const elapsedS = elapsedMs / 1000;
    return {
      mode, offered, clients, elapsedS: round(elapsedS), ok: this.ok, failed: this.failed,
      throughput: round(this.ok / Math.max(elapsedS, 1e-9), 1), latency: this.latency.summary(), errors: this.errors,
      sendDelay: mode === 'open' ? this.sendDelay.summary() : null,
    };
  }
}

/** `clients` loops, each issuing its next request when the previous one is answered. */
export async function closedLoop(o: { clients: number; durationMs: number; maxRequests?: number; op: Operation }): Promise<LoadResult> {
  const tally = new Tally();
  const start = performance.now();
  const deadline = start + o.durationMs;
  const max = o.maxRequests ?? Number.MAX_SAFE_INTEGER;
  let issued = 0;
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline && issued < max) {
      const i = issued++;
      await tally.run(o.op, i, performance.now());
    }
  };
  await Promise.all(Array.from({ length: o.clients }, () => worker()));
  return tally.result('closed', null, o.clients, performance.now() - start);
}

/**
 * Starts `rate` requests per second for `durationMs`, each at its scheduled
 * time (checked every millisecond), with at most `maxInFlight` outstanding;
 * requests held back by that cap keep their scheduled time.
 */
export async function openLoop(o: { rate: number; durationMs: number; maxInFlight?: number; op: Operation }): Promise<LoadResult> {
  const tally = new Tally();
  const total = Math.max(1, Math.round((o.rate * o.durationMs) / 1000));
  const interval = 1000 / o.rate;
  const cap = o.maxInFlight ?? 4096;
  const start = performance.now();
  let next = 0;
  let inFlight = 0;
  const running = new Set<Promise<void>>();
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const due = Math.min(total, Math.floor((performance.now() - start) / interval) + 1);
      while (next < due && inFlight < cap) {
        const i = next++;
        inFlight++;
        const p = tally.run(o.op, i, start + i * interval).finally(() => {
          inFlight--;
          running.delete(p);
        });
        running.add(p);
      }
      if (next >= total) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  while (running.size > 0) await Promise.all([...running]);
  return tally.result('open', o.rate, null, performance.now() - start);
}
