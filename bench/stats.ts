/**
 * Latency recording for the benchmarks: HDR histograms in microseconds,
 * summarised in milliseconds.
 */
import hdr from 'hdr-histogram-js';

/** Percentiles of one latency distribution, in milliseconds. */
export interface LatencySummary {
  count: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

/** 1 µs resolution, 3 significant digits, up to one hour. */
const HIGHEST_US = 3_600_000_000;

/** A latency recorder; values are given in milliseconds and stored in microseconds. */
export class Latency {
  private readonly h = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: HIGHEST_US,
    numberOfSignificantValueDigits: 3,
    useWebAssembly: false,
  });

  record(ms: number): void {
    this.h.recordValue(Math.min(HIGHEST_US, Math.max(1, Math.round(ms * 1000))));
  }

  get count(): number {
    return this.h.totalCount;
  }

  summary(): LatencySummary {
    const at = (p: number): number => round(this.h.getValueAtPercentile(p) / 1000);
    if (this.h.totalCount === 0) return { count: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };
    return {
      count: this.h.totalCount,
      mean: round(this.h.mean / 1000),
      p50: at(50),
      p90: at(90),
      p99: at(99),
      p999: at(99.9),
      max: round(this.h.maxValue / 1000),
    };
  }
}

/** Rounds to three significant decimals at most, so reports stay readable. */
export function round(x: number, digits = 3): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** `a / b`, or null when `b` is zero. */
export function ratio(a: number, b: number): number | null {
  return b === 0 ? null : round(a / b, 2);
}

/** The summary of latencies given in milliseconds. */
export function latencyOf(values: Iterable<number>): LatencySummary {
  const l = new Latency();
  for (const v of values) l.record(v);
  return l.summary();
}
