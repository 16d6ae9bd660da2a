/**
 * Scenario 3 (c), local writes while a region catches up: every region takes
 * PUTs at a fixed rate (open loop, HTTP) for the whole run; one region is cut
 * off from every link, everyone keeps writing, then the links are healed.
 * Each write is kept with its send time, and latency is reported per region
 * in windows of one second from 5 s before the heal to 10 s after
 * convergence, beside the same region's steady state before the cut.
 */
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { VersionVector } from '../src/ids.js';
import { decodeVersion } from '../src/docs/token.js';
import { merged, missingCount } from '../src/vv.js';
import { sleep, type BenchCluster } from './cluster.js';
import { timeToVersion, watchPeers, type PeerView } from './catchup-watch.js';
import { pacedLoad, type PacedLoad, type TimedRequest } from './paced.js';
import type { Table } from './report.js';
import { latencyOf, round, type LatencySummary } from './stats.js';

export interface CatchUpLatencyOptions {
  isolated: string;
  /** PUTs per second at every region. */
  rate: number;
  /** Writes before the steady period, not counted (a fresh cluster's first seconds: see WARM_UP_MS in cluster.ts). */
  warmUpMs: number;
  steadyMs: number;
  cutMs: number;
  /** How long writes go on after convergence (and the windows reach). */
  afterMs: number;
  /** Give up waiting for convergence after this long from the heal. */
  timeoutMs: number;
}

/** Latency of the writes due in one window; `fromS` counts from the heal. */
export interface LatencyWindow {
  fromS: number;
  count: number;
  failed: number;
  p50: number;
  p99: number;
  max: number;
}

export interface RegionLatency {
  region: string;
  /** Writes due in the steady period before the cut (the successful ones), and those that failed. */
  steady: LatencySummary;
  steadyFailed: number;
  /** Writes due from the heal until convergence. */
  catchUp: LatencySummary;
  windows: LatencyWindow[];
  failed: number;
  errors: Record<string, number>;
  /** The slowest writes from 5 s before the heal on: due time (s from the heal) and ms. */
  slowest: { atS: number; ms: number }[];
  /** Largest delay of a request leaving this process against its schedule (the generator falling behind). */
  sendDelayMaxMs: number;
}

export interface CatchUpLatencyResult {
  isolated: string;
  rate: number;
  warmUpS: number;
  steadyS: number;
  cutS: number;
  /** Updates the cut-off region lacked at the heal. */
  missed: number;
  /** From the heal: first link of the cut-off region up; it holds what the others had at the heal; they hold what it had. */
  firstUpMs: number | null;
  caughtUpMs: number | null;
  deliveredMs: number | null;
  convergedMs: number | null;
  /** `missed` over first link up → caught up. */
  updatesPerS: number | null;
  peers: PeerView[];
  regions: RegionLatency[];
  /** Acknowledged writes missing from some region after the run. */
  lost: number;
  /** With writes lost: the folder holding every region's log, status and the missing ids. */
  evidence: string | null;
}

const COLLECTION = 'cl';

/** Runs the measurement on a started cluster whose links are up. */
export async function measureCatchUpLatency(bench: BenchCluster, o: CatchUpLatencyOptions): Promise<CatchUpLatencyResult> {
  const acked = new Map(bench.names.map((n) => [n, { vv: new Map() as VersionVector, ids: new Set<string>() }]));
  const loads = new Map(bench.names.map((n) => [n, writeLoad(bench, n, COLLECTION, o.rate, acked.get(n)!)]));
  // Not counted: a fresh cluster's first seconds (JIT compilation, connections opening) are not its steady state.
  await sleep(o.warmUpMs);
  const steadyFrom = performance.now();
  await sleep(o.steadyMs);
  const cutAt = performance.now();
  bench.cluster.isolate(o.isolated);
  await sleep(o.cutMs);
  const others = bench.names.filter((n) => n !== o.isolated);
  const target = others.reduce<VersionVector>((vv, n) => merged(vv, acked.get(n)!.vv), new Map());
  const cutVv = new Map(acked.get(o.isolated)!.vv);
  const missed = missingCount(target, cutVv);
  const healedAt = performance.now();
  bench.cluster.heal();
  const watch = watchPeers(bench, o.isolated, healedAt);
  const [caughtUpMs, ...delivered] = await Promise.all([
    timeToVersion(bench, o.isolated, target, healedAt, o.timeoutMs),
    ...others.map((n) => timeToVersion(bench, n, cutVv, healedAt, o.timeoutMs)),
  ]);
  const deliveredMs = delivered.some((d) => d === null) ? null : Math.max(...(delivered as number[]));
  const convergedMs = caughtUpMs === null || deliveredMs === null ? null : Math.max(caughtUpMs, deliveredMs);
  await sleep(o.afterMs);
  await Promise.all([...loads.values()].map((l) => l.stop()));
  const peers = await watch.stop();
  const firstUpMs = watch.firstUpMs();
  const endMs = (convergedMs ?? o.timeoutMs) + o.afterMs;
  return {
    isolated: o.isolated, rate: o.rate, warmUpS: o.warmUpMs / 1000, steadyS: o.steadyMs / 1000, cutS: o.cutMs / 1000, missed,
    firstUpMs, caughtUpMs, deliveredMs, convergedMs,
    updatesPerS: caughtUpMs !== null && firstUpMs !== null && caughtUpMs > firstUpMs
      ? round((missed / (caughtUpMs - firstUpMs)) * 1000, 0) : null,
    peers,
    regions: bench.names.map((n) => regionLatency(n, loads.get(n)!, { steadyFrom, cutAt, healedAt, convergedMs, endMs })),
    ...(await lostWithEvidence(bench, await listEverywhere(bench, COLLECTION), [...acked.values()])),
  };
}

/** PUTs of a fresh document each at `rate`/s; folds each acknowledged version into `acked`. */
function writeLoad(
  bench: BenchCluster, region: string, collection: string, rate: number, acked: { vv: VersionVector; ids: Set<string> },
): PacedLoad {
  const client = bench.client(region);
  return pacedLoad({
    rate,
    op: async (i) => {
      const id = `${region}-${i}`;
      const r = await client.request(`/v1/docs/${collection}/${id}`, { method: 'PUT', body: `{"i":${i}}`, timeoutMs: 30_000 });
      if (r.status !== 200) throw new Error(`HTTP ${r.status}`);
      acked.vv = merged(acked.vv, decodeVersion((JSON.parse(r.body) as { version: string }).version));
      acked.ids.add(id);
    },
  });
}

interface Marks {
  steadyFrom: number;
  cutAt: number;
  healedAt: number;
  convergedMs: number | null;
  /** Last window end, ms from the heal. */
  endMs: number;
}

function regionLatency(region: string, load: PacedLoad, m: Marks): RegionLatency {
  const since = (r: TimedRequest): number => r.dueAt - m.healedAt;
  const ok = load.done.filter((r) => r.ok);
  const inSteady = load.done.filter((r) => r.dueAt >= m.steadyFrom && r.dueAt < m.cutAt);
  const steady = inSteady.filter((r) => r.ok).map((r) => r.ms);
  const catchUpEnd = m.convergedMs ?? m.endMs;
  const catchUp = ok.filter((r) => since(r) >= 0 && since(r) < catchUpEnd).map((r) => r.ms);
  const windows: LatencyWindow[] = [];
  for (let from = -5000; from < m.endMs; from += 1000) {
    const inside = load.done.filter((r) => since(r) >= from && since(r) < from + 1000);
    const s = latencyOf(inside.filter((r) => r.ok).map((r) => r.ms));
    windows.push({ fromS: from / 1000, count: inside.length, failed: inside.filter((r) => !r.ok).length, p50: s.p50, p99: s.p99, max: s.max });
  }
  const slowest = load.done
    .filter((r) => since(r) >= -5000)
    .sort((a, b) => b.ms - a.ms)
    .slice(0, 10)
    .map((r) => ({ atS: round(since(r) / 1000, 2), ms: round(r.ms, 1) }));
  return {
    region, steady: latencyOf(steady), steadyFailed: inSteady.length - steady.length, catchUp: latencyOf(catchUp), windows,
    failed: load.done.filter((r) => !r.ok).length, errors: load.errors, slowest,
    sendDelayMaxMs: round(Math.max(0, ...load.done.map((r) => r.sendDelayMs)), 1),
  };
}

/** Waits for the cluster to settle, then lists `collection` at every region. */
async function listEverywhere(bench: BenchCluster, collection: string): Promise<Set<string>[]> {
  await bench.waitConverged(60_000, 200);
  const all: Set<string>[] = [];
  for (const name of bench.names) {
    const listed = new Set<string>();
    let after: string | null = null;
    do {
      const query: string = `limit=1000${after === null ? '' : `&after=${after}`}`;
      const page = await bench.client(name).json<{ ids: string[]; next: string | null }>(`/v1/docs/${collection}?${query}`);
      for (const id of page.ids) listed.add(id);
      after = page.next;
    } while (after !== null);
    all.push(listed);
  }
  return all;
}

/**
 * Acknowledged documents some region does not list, counted once per region
 * that lacks them; with any, what a diagnosis needs is kept before the
 * cluster's folder is removed: every region's log and `/v1/sync`, and the
 * missing ids by region (the first 1,000 of each).
 */
async function lostWithEvidence(
  bench: BenchCluster, listed: Set<string>[], acked: { ids: Iterable<string> }[],
): Promise<{ lost: number; evidence: string | null }> {
  const missing = listed.map((region) => {
    const ids: string[] = [];
    for (const { ids: acknowledged } of acked) for (const id of acknowledged) if (!region.has(id)) ids.push(id);
    return ids;
  });
  const lost = missing.reduce((n, ids) => n + ids.length, 0);
  if (lost === 0) return { lost, evidence: null };
  const evidence = mkdtempSync(join(tmpdir(), 'meridian-bench-lost-'));
  const byRegion: Record<string, { count: number; first: string[]; sync: unknown }> = {};
  for (const [i, name] of bench.names.entries()) {
    copyFileSync(bench.cluster.region(name).logPath, join(evidence, `${name}.log`));
    const sync = await bench.sync(name).catch((err: unknown) => String(err));
    byRegion[name] = { count: missing[i]!.length, first: missing[i]!.slice(0, 1000), sync };
  }
  writeFileSync(join(evidence, 'missing.json'), JSON.stringify(byRegion, null, 1));
  return { lost, evidence };
}

/**
 * For the report: the cut-off region's windows in full, one summary line per
 * region, and the catch-up figures (`floorPerS`: the in-process apply floor).
 */
export function latencyTables(r: CatchUpLatencyResult, floorPerS: number | null): Table[] {
  const cut = r.regions.find((g) => g.region === r.isolated);
  const phase = (fromS: number): string =>
    fromS < 0 ? 'cut off' : r.convergedMs === null || fromS * 1000 < r.convergedMs ? 'catching up' : 'after';
  const vsSteady = (p99: number, steady: LatencySummary): number | null => (steady.p99 > 0 ? round(p99 / steady.p99, 2) : null);
  const bad = (v: PeerView): number => (v.polls['suspect'] ?? 0) + (v.polls['down'] ?? 0);
  return [
    {
      title: `(c) writes at ${r.isolated} (cut off ${r.cutS} s, ${r.rate} PUTs/s at every region), 1 s windows by send time`,
      columns: ['s from heal', 'phase', 'writes', 'failed', 'p50', 'p99', 'max', 'p99 / steady p99'],
      rows: cut ? [
        [`steady (${r.steadyS} s before cut)`, 'steady', cut.steady.count, cut.steadyFailed, cut.steady.p50, cut.steady.p99, cut.steady.max, 1],
        ...cut.windows.map((w) => [w.fromS, phase(w.fromS), w.count, w.failed, w.p50, w.p99, w.max, vsSteady(w.p99, cut.steady)]),
      ] : [],
    },
    {
      title: '(c) every region: steady state before the cut, and writes sent from the heal to convergence',
      columns: [
        'region', 'steady p50', 'steady p99', 'steady max', 'catch-up writes', 'catch-up p50', 'catch-up p99',
        'catch-up max', 'p99 / steady p99', 'worst window p99', 'failed', 'generator late max',
      ],
      rows: r.regions.map((g) => [
        g.region === r.isolated ? `${g.region} (cut off)` : g.region, g.steady.p50, g.steady.p99, g.steady.max,
        g.catchUp.count, g.catchUp.p50, g.catchUp.p99, g.catchUp.max, vsSteady(g.catchUp.p99, g.steady),
        Math.max(0, ...g.windows.map((w) => w.p99)), g.failed, g.sendDelayMaxMs,
      ]),
    },
    {
      title: `(c) catch-up of ${r.isolated} under load`,
      columns: [
        'missed updates', 'first link up ms', 'caught up ms', 'peers hold its writes ms', 'converged ms', 'updates/s',
        'floor updates/s', 'rate / floor', 'peer polls suspect/down after up', 'longest peer silence ms', 'lost writes',
      ],
      rows: [[
        r.missed, r.firstUpMs, r.caughtUpMs, r.deliveredMs, r.convergedMs, r.updatesPerS, floorPerS,
        r.updatesPerS !== null && floorPerS ? round(r.updatesPerS / floorPerS, 2) : null,
        r.peers.map((v) => `${v.observer}: ${bad(v)}`).join(', '), Math.max(0, ...r.peers.map((v) => v.maxSilenceMs)), r.lost,
      ]],
    },
  ];
}

export interface RebuildLatencyOptions {
  wiped: string;
  /** PUTs per second at every region. */
  rate: number;
  steadyMs: number;
  afterMs: number;
  timeoutMs: number;
}

export interface RebuildLatencyResult {
  wiped: string;
  rate: number;
  steadyS: number;
  /** From the kill: the restarted region answered `/healthz`. */
  restartMs: number;
  /** From the kill: the restarted region acknowledged its first write (it holds writes until caught up with a peer). */
  firstWriteMs: number | null;
  /** From the kill: the restarted region holds what the other regions had acknowledged at the kill. */
  rebuiltMs: number | null;
  /** Every region's writes: `catchUp` are those sent from the kill until rebuilt. */
  regions: RegionLatency[];
  /** The wiped region's writes sent after it acknowledged its first one, until rebuilt. */
  afterFirstWrite: LatencySummary;
  /**
   * From the kill: the last of the writes sent while the region held writes
   * was acknowledged (the held backlog, released at once, is drained).
   */
  heldDrainedMs: number | null;
  /** The wiped region's writes sent after the held backlog drained, until rebuilt. */
  afterDrained: LatencySummary;
  /**
   * The wiped region's writes sent from the kill until rebuilt that failed:
   * refused while it held writes (503 after a short wait), or not answered
   * while the process was down. `ms` is how long each took to fail.
   */
  refused: LatencySummary;
  /** Acknowledged writes missing from some region after the run, but for those the wiped region acknowledged before the kill. */
  lost: number;
  /** Writes the wiped region acknowledged before the kill that no region holds: gone with its disk before they were replicated. */
  goneWithDisk: number;
  /** With writes lost: the folder holding every region's log, status and the missing ids. */
  evidence: string | null;
}

const REBUILD_COLLECTION = 'rl';

/**
 * Writes at every region while one is killed, its data directory deleted and
 * the process restarted, until it has rebuilt from its peers: on a started
 * cluster whose regions already hold the documents to rebuild.
 */
export async function measureRebuildLatency(bench: BenchCluster, o: RebuildLatencyOptions): Promise<RebuildLatencyResult> {
  const acked = new Map(bench.names.map((n) => [n, { vv: new Map() as VersionVector, ids: new Set<string>() }]));
  const loads = new Map(bench.names.map((n) => [n, writeLoad(bench, n, REBUILD_COLLECTION, o.rate, acked.get(n)!)]));
  await sleep(1000);
  const steadyFrom = performance.now();
  await sleep(o.steadyMs);
  const others = bench.names.filter((n) => n !== o.wiped);
  const target = others.reduce<VersionVector>((vv, n) => merged(vv, acked.get(n)!.vv), new Map());
  const killedAt = performance.now();
  await bench.cluster.wipe(o.wiped);
  const restartMs = performance.now() - killedAt;
  // Acknowledged by the wiped region before the kill: none of these may be in flight any more.
  const beforeKill = new Set(acked.get(o.wiped)!.ids);
  const rebuiltMs = await timeToVersion(bench, o.wiped, target, killedAt, o.timeoutMs);
  await sleep(o.afterMs);
  await Promise.all([...loads.values()].map((l) => l.stop()));
  const endMs = (rebuiltMs ?? o.timeoutMs) + o.afterMs;
  const wipedLoad = loads.get(o.wiped)!;
  const acks = wipedLoad.done.filter((r) => r.ok && r.dueAt >= killedAt).map((r) => r.dueAt + r.ms - killedAt);
  const firstWriteMs = acks.length > 0 ? Math.min(...acks) : null;
  const rebuiltEnd = rebuiltMs ?? endMs;
  const sentBetween = (fromMs: number): number[] =>
    wipedLoad.done.filter((r) => r.ok && r.dueAt - killedAt >= fromMs && r.dueAt - killedAt < rebuiltEnd).map((r) => r.ms);
  const afterFirstWrite = latencyOf(firstWriteMs === null ? [] : sentBetween(firstWriteMs));
  const held = firstWriteMs === null ? [] : wipedLoad.done.filter((r) => r.ok && r.dueAt >= killedAt && r.dueAt - killedAt < firstWriteMs);
  const heldDrainedMs = firstWriteMs === null ? null : Math.max(firstWriteMs, ...held.map((r) => r.dueAt + r.ms - killedAt));
  const afterDrained = latencyOf(heldDrainedMs === null ? [] : sentBetween(heldDrainedMs));
  const refused = latencyOf(wipedLoad.done.filter((r) => !r.ok && r.dueAt >= killedAt && r.dueAt - killedAt < rebuiltEnd).map((r) => r.ms));
  const listed = await listEverywhere(bench, REBUILD_COLLECTION);
  const counted = [...acked].map(([n, a]) => ({ ids: n === o.wiped ? [...a.ids].filter((id) => !beforeKill.has(id)) : a.ids }));
  const { lost, evidence } = await lostWithEvidence(bench, listed, counted);
  const goneWithDisk = [...beforeKill].filter((id) => listed.every((region) => !region.has(id))).length;
  return {
    wiped: o.wiped, rate: o.rate, steadyS: o.steadyMs / 1000, restartMs: round(restartMs, 0),
    firstWriteMs: firstWriteMs === null ? null : round(firstWriteMs, 0), rebuiltMs,
    regions: bench.names.map((n) => regionLatency(n, loads.get(n)!, { steadyFrom, cutAt: killedAt, healedAt: killedAt, convergedMs: rebuiltMs, endMs })),
    afterFirstWrite, heldDrainedMs: heldDrainedMs === null ? null : round(heldDrainedMs, 0), afterDrained, refused, lost, goneWithDisk, evidence,
  };
}

/**
 * For the report: one line per region, and the rebuilt region's figures;
 * `events`, when counted, from the regions' logs over the same period (see s3-catchup.ts).
 */
export function rebuildLatencyTables(r: RebuildLatencyResult & { events?: { linkDrops: number; stateRounds: number } }, docs: number): Table[] {
  const { events } = r;
  const vsSteady = (p99: number, steady: LatencySummary): number | null => (steady.p99 > 0 ? round(p99 / steady.p99, 2) : null);
  const wipedSteady = r.regions.find((g) => g.region === r.wiped)?.steady;
  const afterRow = (l: LatencySummary): (number | null)[] => [l.count, l.p50, l.p99, l.max, wipedSteady ? vsSteady(l.p99, wipedSteady) : null];
  return [
    {
      title: `(d) writes while ${r.wiped} is rebuilt (${docs.toLocaleString('en-US')} documents, ${r.rate} PUTs/s at every region): steady state before the kill, and writes sent from the kill until rebuilt`,
      columns: [
        'region', 'steady p50', 'steady p99', 'steady max', 'rebuild writes', 'rebuild p50', 'rebuild p99', 'rebuild max',
        'p99 / steady p99', 'worst 1 s window p99', 'failed',
      ],
      rows: r.regions.map((g) => [
        g.region === r.wiped ? `${g.region} (wiped)` : g.region, g.steady.p50, g.steady.p99, g.steady.max,
        g.catchUp.count, g.catchUp.p50, g.catchUp.p99, g.catchUp.max, vsSteady(g.catchUp.p99, g.steady),
        Math.max(0, ...g.windows.map((w) => w.p99)), g.failed,
      ]),
    },
    {
      title: `(d) ${r.wiped} rebuilt under load`,
      columns: [
        'restart ms', 'first write acknowledged ms', 'held writes drained ms', 'rebuilt ms', 'writes sent', 'n', 'p50', 'p99', 'max',
        'p99 / steady p99', 'refused or failed', 'ms to fail, p50', 'ms to fail, max',
        'lost writes', 'acknowledged before the kill, gone with the disk', 'links dropped', 'state rounds',
      ],
      rows: [
        [
          r.restartMs, r.firstWriteMs, r.heldDrainedMs, r.rebuiltMs, 'after the first acknowledged', ...afterRow(r.afterFirstWrite),
          r.refused.count, r.refused.p50, r.refused.max, r.lost, r.goneWithDisk, events?.linkDrops ?? null, events?.stateRounds ?? null,
        ],
        ['', '', '', '', 'after the held ones drained', ...afterRow(r.afterDrained), '', '', '', '', '', '', ''],
      ],
    },
  ];
}
