/**
 * The recent past of a region's replication status, for the dashboard's
 * charts: one sample a second of what the charts draw (per peer: link state,
 * outbound lag and pending updates), in a fixed-size ring, so memory stays
 * bounded however long the region runs (900 samples: 15 minutes).
 *
 * Kept in memory only: a restarted region starts a new history, which is
 * what an operator watching an outage expects to see.
 */
import type { PeerState, SyncStatus } from '../replication/types.js';

/** One peer in one sample. */
export interface PeerSample {
  region: string;
  state: PeerState;
  /** `outbound.lagMs` of `/v1/sync`. */
  lagMs: number;
  /** `outbound.pendingUpdates` of `/v1/sync`. */
  pendingUpdates: number;
}

/** The status at one moment, reduced to what the charts need. */
export interface StatusSample {
  /** Wall-clock time of the sample, ms since the epoch. */
  t: number;
  peers: PeerSample[];
}

/** 15 minutes at one sample a second. */
export const HISTORY_SAMPLES = 900;
export const SAMPLE_INTERVAL_MS = 1000;

/** A ring of the last `capacity` samples, oldest first. */
export class StatusHistory {
  private readonly ring: (StatusSample | undefined)[];
  private next = 0;
  private count = 0;

  constructor(readonly capacity: number = HISTORY_SAMPLES) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('capacity must be a positive integer');
    this.ring = new Array<StatusSample | undefined>(capacity);
  }

  /** Adds a sample, dropping the oldest when full. */
  add(sample: StatusSample): void {
    this.ring[this.next] = sample;
    this.next = (this.next + 1) % this.capacity;
    this.count = Math.min(this.count + 1, this.capacity);
  }

  /** Samples taken after `since` (ms since the epoch; all of them when omitted), oldest first. */
  since(since = -Infinity): StatusSample[] {
    const out: StatusSample[] = [];
    const first = (this.next - this.count + this.capacity) % this.capacity;
    for (let i = 0; i < this.count; i++) {
      const sample = this.ring[(first + i) % this.capacity];
      if (sample !== undefined && sample.t > since) out.push(sample);
    }
    return out;
  }

  get size(): number {
    return this.count;
  }
}

/** The chart fields of a status. */
export function sampleOf(status: Pick<SyncStatus, 'peers'>, t: number): StatusSample {
  return {
    t,
    peers: status.peers.map((p) => ({
      region: p.region, state: p.state, lagMs: p.outbound.lagMs, pendingUpdates: p.outbound.pendingUpdates,
    })),
  };
}

/** A running sampler; `stop` is idempotent. */
export interface Sampler {
  stop(): void;
}

/**
 * Samples `status()` into `history` every `intervalMs`. A status that throws
 * is skipped (the chart shows a gap): the sampler must never stop the region.
 * Only the first failure of a run of them goes to `onError`, so a lasting
 * fault logs once, not once a second. The timer does not keep the process alive.
 */
export function startSampler(opts: {
  history: StatusHistory;
  /** The links' states; no more is sampled (the region digest may cost document walks). */
  status: () => Pick<SyncStatus, 'peers'> | Promise<Pick<SyncStatus, 'peers'>>;
  onError: (err: unknown) => void;
  intervalMs?: number;
  now?: () => number;
}): Sampler {
  const now = opts.now ?? Date.now;
  let failing = false;
  const failed = (err: unknown): void => {
    if (!failing) opts.onError(err);
    failing = true;
  };
  const add = (status: Pick<SyncStatus, 'peers'>): void => {
    try {
      opts.history.add(sampleOf(status, now()));
      failing = false;
    } catch (err) {
      failed(err);
    }
  };
  const sample = (): void => {
    try {
      const status = opts.status();
      if (status instanceof Promise) status.then(add, failed);
      else add(status);
    } catch (err) {
      failed(err);
    }
  };
  const timer = setInterval(sample, opts.intervalMs ?? SAMPLE_INTERVAL_MS);
  timer.unref();
  sample();
  return { stop: () => clearInterval(timer) };
}
