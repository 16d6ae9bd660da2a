/**
 * Figures and verdicts of a run beyond the history check: availability of
 * each region while faults were active, crashes, memory and descriptor
 * growth, and convergence. Pure functions over what the run recorded.
 */
import type { FaultEvent, OpRecord } from './history.js';
import type { ProcSample } from './monitor.js';

/** One check of a run and whether it passed. */
export interface CheckVerdict {
  name: 'convergence' | 'lost' | 'unexpected' | 'availability' | 'crashes' | 'resources' | 'faults';
  ok: boolean;
  detail: string;
}

export interface Interval {
  fromMs: number;
  toMs: number;
}

/** A fault as it actually ran, from the history's start and end events. */
export interface FaultSpan extends Interval {
  faultId: number;
  label: string;
}

export interface RegionAvailability {
  region: string;
  /** Writes sent while the region's process was serving and some fault was active. */
  duringFaults: { attempted: number; ok: number; share: number | null };
  /** Writes sent while the region's process was serving, over the whole run. */
  overall: { attempted: number; ok: number; share: number | null };
}

export interface ResourceFigures {
  region: string;
  samples: number;
  rssFirstBytes: number;
  rssMaxBytes: number;
  fdsFirst: number;
  fdsMax: number;
}

/** Limits beyond which a process is flagged for unbounded growth. */
export const RESOURCE_LIMITS = { rssBytes: 1024 ** 3, fds: 1000 } as const;

/** Pairs the start and end events of each fault; a fault with no end lasts until `endMs`. */
export function faultSpans(events: readonly FaultEvent[], endMs: number): FaultSpan[] {
  const spans = new Map<number, FaultSpan>();
  for (const e of events) {
    if (e.phase === 'start') spans.set(e.faultId, { faultId: e.faultId, label: e.label, fromMs: e.atMs, toMs: endMs });
    const span = spans.get(e.faultId);
    if (e.phase === 'end' && span) span.toMs = e.atMs;
  }
  return [...spans.values()];
}

/**
 * Availability of each region: the share of writes it acknowledged among
 * those sent while its process was up for the whole request, even when the
 * region was cut off from its peers.
 */
export function availability(
  ops: readonly OpRecord[],
  regions: readonly string[],
  faults: readonly Interval[],
  upDuring: (region: string, fromMs: number, toMs: number) => boolean,
): RegionAvailability[] {
  const during = (ms: number) => faults.some((f) => f.fromMs <= ms && ms <= f.toMs);
  return regions.map((region) => {
    const all = { attempted: 0, ok: 0 };
    const inFault = { attempted: 0, ok: 0 };
    for (const op of ops) {
      if (op.region !== region || op.completeMs === undefined) continue;
      if (!upDuring(region, op.invokeMs, op.completeMs)) continue;
      const ok = op.outcome === 'ok' ? 1 : 0;
      all.attempted++;
      all.ok += ok;
      if (during(op.invokeMs)) {
        inFault.attempted++;
        inFault.ok += ok;
      }
    }
    const share = (x: { attempted: number; ok: number }) => ({ ...x, share: x.attempted === 0 ? null : x.ok / x.attempted });
    return { region, duringFaults: share(inFault), overall: share(all) };
  });
}

export function availabilityVerdict(rows: readonly RegionAvailability[], min: number): CheckVerdict {
  const low = rows.filter((r) => (r.duringFaults.share ?? r.overall.share ?? 1) < min);
  const fmt = (r: RegionAvailability) => `${r.region} ${pct(r.duringFaults.share ?? r.overall.share)}`;
  return {
    name: 'availability',
    ok: low.length === 0,
    detail: low.length === 0
      ? `every region acknowledged >= ${pct(min)} of writes while up: ${rows.map(fmt).join(', ')}`
      : `below ${pct(min)} of writes acknowledged while up: ${low.map(fmt).join(', ')}`,
  };
}

export function resourceFigures(samples: readonly ProcSample[], regions: readonly string[]): ResourceFigures[] {
  return regions.map((region) => {
    const mine = samples.filter((s) => s.region === region);
    return {
      region,
      samples: mine.length,
      rssFirstBytes: mine[0]?.rssBytes ?? 0,
      rssMaxBytes: Math.max(0, ...mine.map((s) => s.rssBytes)),
      fdsFirst: mine[0]?.fds ?? 0,
      fdsMax: Math.max(0, ...mine.map((s) => s.fds)),
    };
  });
}

export function resourceVerdict(rows: readonly ResourceFigures[]): CheckVerdict {
  const over = rows.filter((r) => r.rssMaxBytes > RESOURCE_LIMITS.rssBytes || r.fdsMax > RESOURCE_LIMITS.fds);
  const measured = rows.some((r) => r.samples > 0);
  const fmt = (r: ResourceFigures) => `${r.region} rss ${mib(r.rssFirstBytes)}->${mib(r.rssMaxBytes)} fds ${r.fdsFirst}->${r.fdsMax}`;
  return {
    name: 'resources',
    ok: over.length === 0,
    detail: measured ? `${over.length === 0 ? 'within' : 'beyond'} 1 GiB RSS / 1000 fds: ${(over.length ? over : rows).map(fmt).join(', ')}` : 'not measured (no /proc)',
  };
}

/** Ok/s of each region per whole second of the run. */
export function writeRates(ops: readonly OpRecord[], regions: readonly string[], endMs: number): Map<string, number[]> {
  const seconds = Math.max(1, Math.ceil(endMs / 1000));
  const out = new Map(regions.map((r) => [r, new Array<number>(seconds).fill(0)]));
  for (const op of ops) {
    if (op.outcome !== 'ok' || op.completeMs === undefined) continue;
    const row = out.get(op.region);
    const s = Math.min(seconds - 1, Math.floor(op.completeMs / 1000));
    if (row) row[s] = (row[s] ?? 0) + 1;
  }
  return out;
}

export function pct(share: number | null): string {
  return share === null ? 'n/a' : `${(share * 100).toFixed(1)}%`;
}

function mib(bytes: number): string {
  return `${Math.round(bytes / 1024 / 1024)}MiB`;
}
