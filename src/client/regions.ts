/**
 * Which region to ask first. Every region is probed (`/readyz`) for its
 * round-trip time; healthy regions are ordered by it. A region that fails a
 * request or a probe is unhealthy: it is tried only after every healthy one,
 * and re-probed more often until it answers again, when it is sampled afresh
 * and takes its place by round-trip time.
 */

/** A region as the client is configured with it. */
export interface RegionEndpoint {
  name: string;
  /** Base URL of the region's HTTP API, e.g. `https://eu-west.example.com`. */
  url: string;
}

/** What the client knows about one region. */
export interface RegionStatus {
  name: string;
  url: string;
  /** null until the first probe has finished. */
  healthy: boolean | null;
  /** Smoothed round-trip time of `/readyz`, ms; null before a probe succeeded. */
  rttMs: number | null;
  /** Why the region was last marked unhealthy; null while healthy. */
  lastError: string | null;
}

/** Measures one round trip in ms; rejects when the region does not serve. */
export type Probe = (region: RegionEndpoint, signal: AbortSignal) => Promise<number>;

export interface RegionTableOptions {
  probe: Probe;
  /** How often a healthy region's round-trip time is measured again. */
  probeIntervalMs: number;
  /** How often an unhealthy region is probed until it answers. */
  recheckMs: number;
  /** Probes taken when a region is (re)discovered; their median starts the average. */
  samples: number;
}

interface RegionState extends RegionStatus {
  lastProbeAt: number;
  probing: boolean;
}

/** Weight of a new sample in the moving average. */
const EWMA_ALPHA = 0.3;
/** The region in use keeps first place unless the best is faster by more than this factor plus slack. */
const STICKY_FACTOR = 1.25;
const STICKY_SLACK_MS = 1;

export class RegionTable {
  private readonly states: RegionState[];
  private readonly timer: ReturnType<typeof setInterval>;
  private readonly stop = new AbortController();
  /** The region that served the last request; kept first while it is about as near as the best. */
  private inUse: string | null = null;
  /** Resolves once every region has been probed once. */
  readonly ready: Promise<void>;

  constructor(
    endpoints: readonly RegionEndpoint[],
    private readonly options: RegionTableOptions,
  ) {
    this.states = endpoints.map((e) => ({
      name: e.name, url: e.url, healthy: null, rttMs: null, lastError: null, lastProbeAt: 0, probing: false,
    }));
    this.ready = Promise.all(this.states.map((s) => this.discover(s))).then(() => undefined);
    this.timer = setInterval(() => this.tick(), options.recheckMs);
    // Probing alone must not keep a process alive.
    this.timer.unref();
  }

  /** Regions in the order to try them: healthy ones nearest first, then unhealthy ones as a last resort. */
  order(): RegionEndpoint[] {
    const byRtt = (a: RegionState, b: RegionState): number => (a.rttMs ?? Infinity) - (b.rttMs ?? Infinity);
    const usable = this.states.filter((s) => s.healthy !== false).sort(byRtt);
    const down = this.states.filter((s) => s.healthy === false).sort(byRtt);
    const best = usable[0];
    const current = usable.find((s) => s.name === this.inUse);
    if (best && current && current !== best && best.rttMs !== null && current.rttMs !== null) {
      // Switching regions on noise would cost connection reuse and session waits for nothing.
      if (current.rttMs <= best.rttMs * STICKY_FACTOR + STICKY_SLACK_MS) {
        usable.splice(usable.indexOf(current), 1);
        usable.unshift(current);
      }
    }
    return [...usable, ...down].map((s) => ({ name: s.name, url: s.url }));
  }

  /** Records that `name` served a request: it is healthy and in use. */
  served(name: string): void {
    const s = this.state(name);
    s.healthy = true;
    s.lastError = null;
    this.inUse = name;
  }

  /** Marks `name` unhealthy after a failed request or probe; it is re-probed in the background. */
  markDown(name: string, reason: string): void {
    const s = this.state(name);
    s.healthy = false;
    s.lastError = reason;
    if (this.inUse === name) this.inUse = null;
  }

  /** The region the next request goes to, the region last used, and every region's state. */
  status(): { current: string | null; inUse: string | null; regions: RegionStatus[] } {
    const order = this.order();
    const regions = order.map((e) => {
      const s = this.state(e.name);
      return { name: s.name, url: s.url, healthy: s.healthy, rttMs: s.rttMs, lastError: s.lastError };
    });
    return { current: order[0]?.name ?? null, inUse: this.inUse, regions };
  }

  /** Stops probing and aborts probes in flight. */
  close(): void {
    clearInterval(this.timer);
    this.stop.abort();
  }

  private state(name: string): RegionState {
    const s = this.states.find((x) => x.name === name);
    if (!s) throw new Error(`unknown region '${name}'`);
    return s;
  }

  private tick(): void {
    const now = Date.now();
    for (const s of this.states) {
      if (s.probing) continue;
      if (s.healthy === false) void this.discover(s);
      else if (now - s.lastProbeAt >= this.options.probeIntervalMs) void this.sample(s);
    }
  }

  /** Takes several samples; the region becomes healthy with their median, or stays unhealthy. */
  private async discover(s: RegionState): Promise<void> {
    s.probing = true;
    try {
      const samples: number[] = [];
      for (let i = 0; i < this.options.samples; i++) samples.push(await this.options.probe(s, this.stop.signal));
      samples.sort((a, b) => a - b);
      s.rttMs = samples[Math.floor(samples.length / 2)] ?? null;
      s.healthy = true;
      s.lastError = null;
    } catch (err) {
      if (!this.stop.signal.aborted) this.markDown(s.name, describe(err));
    } finally {
      s.lastProbeAt = Date.now();
      s.probing = false;
    }
  }

  /** One periodic sample of a healthy region, folded into its moving average. */
  private async sample(s: RegionState): Promise<void> {
    s.probing = true;
    try {
      const rtt = await this.options.probe(s, this.stop.signal);
      // A request failed meanwhile: recovery takes fresh samples, not this one.
      if (s.healthy === false) return;
      s.rttMs = s.rttMs === null ? rtt : s.rttMs + EWMA_ALPHA * (rtt - s.rttMs);
      s.healthy = true;
    } catch (err) {
      if (!this.stop.signal.aborted) this.markDown(s.name, describe(err));
    } finally {
      s.lastProbeAt = Date.now();
      s.probing = false;
    }
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
    return `${err.name === 'TimeoutError' ? 'probe timed out' : err.message}${cause}`;
  }
  return String(err);
}
