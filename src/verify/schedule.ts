/**
 * The fault schedule of a verification run: which fault strikes which region
 * or link, when, and for how long. Pure: the same seed, regions and options
 * always give the same schedule.
 */
import { linkKey } from '../faults/cluster.js';
import type { Fault } from '../faults/proxy.js';
import { Random } from './random.js';

/** Every kind of fault a run can inject. */
export const FAULT_KINDS = [
  'isolate', 'bridge', 'oneway', 'blackhole', 'stall', 'latency', 'slicer', 'bandwidth', 'wan', 'kill', 'pause', 'wipe', 'flap',
] as const;

export type VerifyFaultKind = (typeof FAULT_KINDS)[number];

/** Kinds that need at least two regions (they act on links, or rebuild from peers). */
const NEEDS_PEERS: ReadonlySet<VerifyFaultKind> = new Set(FAULT_KINDS.filter((k) => !['kill', 'pause'].includes(k)));

const ALIASES: Record<string, VerifyFaultKind> = {
  partition: 'isolate', cut: 'bridge', 'one-way': 'oneway', sigkill: 'kill', restart: 'kill', sigstop: 'pause',
  flapping: 'flap', slice: 'slicer', slicing: 'slicer', 'wipe-and-rebuild': 'wipe', loss: 'wan',
};

/** One fault of the schedule. Times are milliseconds from the start of the workload. */
export interface PlannedFault {
  id: number;
  kind: VerifyFaultKind;
  startMs: number;
  endMs: number;
  /** The region whose process, or all of whose links, the fault strikes. */
  region?: string;
  /** The one link the fault strikes, as its two region names in sorted order. */
  link?: [string, string];
  /** What the proxies of the affected links do (link faults only). */
  fault?: Fault;
  /** For `flap`: offsets from `startMs` at which the link goes down, then up, then down... */
  toggles?: number[];
  /** Short human description, e.g. `isolate us-east` or `latency eu-west~us-east`. */
  label: string;
}

export interface ScheduleOptions {
  seed: number;
  durationMs: number;
  regions: readonly string[];
  kinds: readonly VerifyFaultKind[];
  /** The regions' dead timeout: pauses last longer than this. */
  deadAfterMs: number;
  /** Faults active at once, at most. Default 2. */
  maxConcurrent?: number;
  /** Quiet time before the first fault and after the last one. Defaults 1500 and 1000 ms. */
  warmupMs?: number;
  cooldownMs?: number;
  /** Bounds of a fault's length. Defaults 2000 and 6000 ms. */
  minFaultMs?: number;
  maxFaultMs?: number;
}

/** Parses a comma-separated list of fault kinds (aliases allowed; `none` for no faults, `all` for all). */
export function parseFaultKinds(list: string): VerifyFaultKind[] {
  const words = list.split(',').map((w) => w.trim().toLowerCase()).filter(Boolean);
  if (words.length === 1 && words[0] === 'none') return [];
  if (words.length === 1 && words[0] === 'all') return [...FAULT_KINDS];
  const out: VerifyFaultKind[] = [];
  for (const w of words) {
    const kind = (FAULT_KINDS as readonly string[]).includes(w) ? (w as VerifyFaultKind) : ALIASES[w];
    if (!kind) throw new Error(`unknown fault kind '${w}': use any of ${FAULT_KINDS.join(', ')}, 'all' or 'none'`);
    if (!out.includes(kind)) out.push(kind);
  }
  return out;
}

/**
 * What a fault holds exclusively while it is active: `process:<region>` and
 * `link:<a->b>`. Two faults sharing a resource never overlap.
 */
export function resourcesOf(f: Pick<PlannedFault, 'kind' | 'region' | 'link'>, regions: readonly string[]): string[] {
  const linksOf = (r: string) => regions.filter((o) => o !== r).map((o) => `link:${linkKey(r, o)}`);
  if (f.link) return [`link:${linkKey(f.link[0], f.link[1])}`];
  if (!f.region) return [];
  switch (f.kind) {
    case 'kill':
    case 'pause':
      return [`process:${f.region}`];
    case 'wipe':
      // Draining before the wipe needs every peer up and every link of the region intact.
      return [...regions.map((r) => `process:${r}`), ...linksOf(f.region)];
    default:
      return linksOf(f.region);
  }
}

/** Generates the schedule of a run from its seed. Kinds are used in a shuffled cycle, so each appears given time. */
export function generateSchedule(o: ScheduleOptions): PlannedFault[] {
  const rng = new Random(o.seed).fork('schedule');
  const kinds = o.kinds.filter((k) => o.regions.length >= 2 || !NEEDS_PEERS.has(k));
  const maxConcurrent = o.maxConcurrent ?? 2;
  const [minMs, maxMs] = [o.minFaultMs ?? 2000, o.maxFaultMs ?? 6000];
  const lastEnd = o.durationMs - (o.cooldownMs ?? 1000);
  const out: PlannedFault[] = [];
  const queue: VerifyFaultKind[] = [];
  let t = o.warmupMs ?? 1500;
  while (kinds.length > 0 && t < lastEnd) {
    if (queue.length === 0) queue.push(...rng.shuffle(kinds));
    const kind = queue[0] as VerifyFaultKind;
    const shortest = kind === 'pause' ? o.deadAfterMs + 500 : Math.min(minMs, 1000);
    let length = rng.int(minMs, maxMs);
    if (kind === 'pause') length = Math.max(length, o.deadAfterMs + rng.int(500, 2500));
    length = Math.min(length, lastEnd - t);
    if (length < shortest) break;
    const active = out.filter((f) => f.endMs > t);
    const target = active.length < maxConcurrent ? pickTarget(rng, kind, o.regions, active) : null;
    if (!target) {
      // Wait for the earliest active fault to end, then try the same kind again.
      t = Math.min(...active.map((f) => f.endMs)) + 100;
      continue;
    }
    queue.shift();
    out.push(plan(rng, out.length + 1, kind, t, t + length, target));
    const overlap = length > 1500 && rng.chance(0.35);
    t = overlap ? t + rng.int(500, length - 500) : t + length + rng.int(500, 2500);
  }
  return out;
}

/**
 * The fixed schedule of `--quick`: an isolated region, a SIGKILL and restart,
 * and a black-holed link, one after the other (at least two regions).
 */
export function quickSchedule(regions: readonly string[]): { durationMs: number; faults: PlannedFault[] } {
  const [a, b] = [regions[0] as string, regions[1] as string];
  const c = regions[2] ?? a;
  const link = [c, a === c ? b : a].sort() as [string, string];
  return {
    durationMs: 12_000,
    faults: [
      { id: 1, kind: 'isolate', startMs: 1500, endMs: 4500, region: a, fault: { kind: 'down' }, label: `isolate ${a}` },
      { id: 2, kind: 'kill', startMs: 5500, endMs: 7500, region: b, label: `kill ${b}` },
      {
        id: 3, kind: 'blackhole', startMs: 8000, endMs: 10_500, link, fault: { kind: 'blackhole' },
        label: `blackhole ${link[0]}~${link[1]}`,
      },
    ],
  };
}

type Target = { region: string } | { link: [string, string] };

/** A region or link for `kind` that no active fault holds, or null after a few tries. */
function pickTarget(rng: Random, kind: VerifyFaultKind, regions: readonly string[], active: PlannedFault[]): Target | null {
  const busy = new Set(active.flatMap((f) => resourcesOf(f, regions)));
  for (let attempt = 0; attempt < 8; attempt++) {
    const target = drawTarget(rng, kind, regions);
    const needs = resourcesOf({ kind, ...target }, regions);
    if (needs.every((r) => !busy.has(r))) return target;
  }
  return null;
}

function drawTarget(rng: Random, kind: VerifyFaultKind, regions: readonly string[]): Target {
  const region = (): Target => ({ region: rng.pick(regions) });
  const link = (): Target => {
    const [a, b] = rng.shuffle(regions);
    return { link: [a as string, b as string].sort() as [string, string] };
  };
  switch (kind) {
    case 'isolate':
    case 'kill':
    case 'pause':
    case 'wipe':
      return region();
    case 'bridge':
    case 'oneway':
    case 'stall':
    case 'bandwidth':
      return link();
    default:
      return rng.chance(0.5) ? region() : link();
  }
}

function plan(rng: Random, id: number, kind: VerifyFaultKind, startMs: number, endMs: number, target: Target): PlannedFault {
  const where = 'region' in target ? target.region : `${target.link[0]}~${target.link[1]}`;
  const base = { id, kind, startMs, endMs, ...target };
  const fault = linkFault(rng, kind);
  if (kind === 'flap') {
    const count = 2 * rng.int(2, 4);
    const offsets = Array.from({ length: count }, () => rng.int(0, endMs - startMs - 200)).sort((x, y) => x - y);
    return { ...base, fault, toggles: offsets, label: `flap ${where} x${count / 2}` };
  }
  const detail = fault ? faultDetail(fault) : '';
  return { ...base, ...(fault ? { fault } : {}), label: `${kind} ${where}${detail ? ` ${detail}` : ''}` };
}

/** The proxy fault a link fault sets, or undefined for process faults. */
function linkFault(rng: Random, kind: VerifyFaultKind): Fault | undefined {
  switch (kind) {
    case 'isolate':
    case 'bridge':
    case 'flap':
      return { kind: 'down' };
    case 'oneway':
      return { kind: 'blackhole', direction: rng.pick(['upstream', 'downstream'] as const) };
    case 'blackhole':
      return { kind: 'blackhole' };
    case 'stall':
      return { kind: 'stall' };
    case 'latency':
      return { kind: 'latency', ms: rng.int(50, 400), jitterMs: rng.int(0, 100) };
    case 'slicer':
      return { kind: 'slicer', maxBytes: rng.int(1, 64), delayMs: rng.int(0, 5) };
    case 'bandwidth':
      return { kind: 'bandwidth', bytesPerSecond: rng.int(2, 64) * 1024 };
    case 'wan':
      return { kind: 'wan', latencyMs: rng.int(20, 150), jitterMs: rng.int(0, 30), lossPercent: rng.int(1, 10), bytesPerSecond: rng.int(32, 512) * 1024 };
    default:
      return undefined;
  }
}

function faultDetail(f: Fault): string {
  switch (f.kind) {
    case 'latency':
      return `${f.ms}ms±${f.jitterMs ?? 0}ms`;
    case 'slicer':
      return `${f.maxBytes}B/${f.delayMs ?? 0}ms`;
    case 'bandwidth':
      return `${Math.round(f.bytesPerSecond / 1024)}KiB/s`;
    case 'wan':
      return `${f.latencyMs}ms±${f.jitterMs ?? 0}ms ${f.lossPercent ?? 0}% ${Math.round((f.bytesPerSecond ?? 0) / 1024)}KiB/s`;
    case 'blackhole':
      return f.direction && f.direction !== 'both' ? f.direction : '';
    default:
      return '';
  }
}
