/**
 * Scenario 2, replication lag under load: three region processes each take
 * writes at a fixed rate, with and without latency on every link. A sample
 * of writes is followed: once its origin acknowledges it, this process asks
 * each other region for the document with `meridian-after` set to just that
 * write, and records when the answer comes (one clock for both ends).
 */
import type { Fault } from '../src/faults/proxy.js';
import { BenchCluster, probeDelta, sleep, WARM_UP_MS, type ProbeDelta } from './cluster.js';
import { REGIONS, type BenchContext } from './context.js';
import { closedLoop, openLoop, type LoadResult, type Operation } from './load.js';
import { cpuMeter } from './machine.js';
import type { ScenarioResult, Table } from './report.js';
import { Latency, round, type LatencySummary } from './stats.js';
import { createFollower, followWrite, waitLinksUp, type Follower } from './follow.js';
import { receiveFloor, type ReceiveResult } from './receive.js';
import { httpFloor, type HttpFloorRow } from './http-floor.js';

interface Condition {
  label: string;
  fault: Fault;
  /** One-way latency the links add: lowest, middle, highest (ms). */
  link: [number, number, number];
}

/** `puts`: single-field PUTs over 500 documents per region. `mixed`: see {@link mixedWrite}. */
type Workload = 'puts' | 'mixed';

interface LagRow {
  condition: string;
  workload: Workload;
  load: string;
  writes: LoadResult[];
  lag: LatencySummary;
  /** Latency of a plain GET to the observing region, sent with each follow-up. */
  observerGet: LatencySummary;
  unseen: number;
  heartbeatRttMs: number | null;
  syncLagMaxMs: number;
  drainMs: number | null;
  cpu: (number | null)[];
  probes: (ProbeDelta | null)[];
  link: [number, number, number];
}

const PROBES_PER_SECOND = 20;
const DOCS = 500;
/** Rate per region of the mixed workload (the goal: lag p99 within link + 10 ms at this rate). */
const MIXED_RATE = 250;
/** PUTs per second per region over a fresh cluster's first seconds. */
const WARM_UP_RATE = 100;
/** Mixed workload: a few hot documents (counters, sets), tens merged by patches, thousands replaced by PUTs. */
const MIXED_HOT = 4;
const MIXED_PATCHED = 40;
const MIXED_PUT = 3000;

export async function replicationLag(ctx: BenchContext): Promise<ScenarioResult> {
  const started = performance.now();
  const durationMs = ctx.quick ? 2500 : 10_000;
  const warmUpMs = ctx.quick ? 2000 : WARM_UP_MS;
  // 10/s: writes far enough apart that each meets a quiet cluster.
  const rates = ctx.quick ? [100, 400] : [10, 100, 250, 500, 1000];
  const conditions: Condition[] = [
    { label: 'direct', fault: { kind: 'none' }, link: [0, 0, 0] },
    { label: '50 ± 10 ms', fault: { kind: 'latency', ms: 50, jitterMs: 10 }, link: [40, 50, 60] },
  ];
  const rows: LagRow[] = [];
  for (const condition of conditions) {
    const proxies = condition.fault.kind !== 'none';
    ctx.log(`lag: starting three region processes (${proxies ? 'links through fault proxies' : 'direct links'})`);
    const bench = await BenchCluster.start({
      regions: REGIONS, workDir: ctx.dir('lag'), proxies,
      profileDir: ctx.profileDir ? `${ctx.profileDir}/lag-${proxies ? 'latency' : 'direct'}` : null,
    });
    try {
      await waitLinksUp(bench, 20_000);
      const follower = await createFollower(bench);
      if (proxies) {
        bench.cluster.setFault(condition.fault);
        await sleep(1500);
      }
      // The first seconds after a start (JIT compilation, connections opening)
      // are reported as a row of their own, not mixed into the steady steps.
      rows.push(await step(ctx, bench, follower, condition, 'puts', WARM_UP_RATE, warmUpMs, `${WARM_UP_RATE}/s, first ${warmUpMs / 1000} s`));
      for (const rate of rates) rows.push(await step(ctx, bench, follower, condition, 'puts', rate, durationMs));
      if (!ctx.quick) rows.push(await step(ctx, bench, follower, condition, 'puts', null, durationMs));
      if (proxies) {
        // The mixed workload's own paths (ops, merge patches) compile in its first seconds, as the puts' did.
        rows.push(await step(ctx, bench, follower, condition, 'mixed', MIXED_RATE, warmUpMs, `${MIXED_RATE}/s, first ${warmUpMs / 1000} s`));
        rows.push(await step(ctx, bench, follower, condition, 'mixed', MIXED_RATE, durationMs));
      }
    } finally {
      await bench.stop();
    }
  }
  const receive: ReceiveResult[] = [];
  for (const rate of rates) {
    receive.push(await receiveFloor(ctx, { rate, durationMs: Math.min(durationMs, 5000), k: 4 }));
    ctx.log(`lag: receive floor ${rate}/s: visible p50 ${receive[receive.length - 1]!.visible.p50} p99 ${receive[receive.length - 1]!.visible.p99} ms`);
  }
  ctx.log(`lag: HTTP floor: ${REGIONS.length} bare Fastify processes at ${rates.join(', ')}/s each`);
  const http = await httpFloor({ processes: REGIONS.length, rates, durationMs, warmUpMs });
  for (const row of http) ctx.log(`lag: HTTP floor ${row.rate}/s: p50 ${worstOf(row.loads, (l) => l.latency.p50)} p99 ${worstOf(row.loads, (l) => l.latency.p99)} ms`);
  return {
    id: 'lag',
    title: '2. Replication lag under load',
    setup:
      `Three region processes (${REGIONS.join(', ')}; default config, synchronous=full), all driven from this ` +
      `process. "direct": regions dial each other on loopback; "50 ± 10 ms": every link goes through a fault proxy ` +
      `(in this process) that holds each chunk 50 ± 10 ms one way, in order. Workload "puts": each region takes single-field PUTs over ${DOCS} ` +
      `documents at the rate shown; "mixed" (${MIXED_RATE}/s, with latency): 1 in 10 writes a counter increment and 1 in 10 a set add on ` +
      `${MIXED_HOT} documents every region shares, 3 in 10 merge patches on ${MIXED_PATCHED} shared documents, the rest PUTs over ` +
      `${MIXED_PUT} documents per region (open loop, ` +
      `${durationMs / 1000} s per step; "closed 8" = 8 clients per region). Each cluster first takes ${warmUpMs / 1000} s of ` +
      `puts at ${WARM_UP_RATE}/s, shown as its own row ("first ${warmUpMs / 1000} s"): the regions and this process compile their hot paths and open their connections then; the mixed workload's first ${warmUpMs / 1000} s are a row of their own too. About ${PROBES_PER_SECOND} writes/s per ` +
      'region are followed: on acknowledgement, a GET with `meridian-after: <that write only>` and ' +
      '`meridian-wait-ms: 30000` goes to each other region; lag = answer time − acknowledgement time. Floor: the ' +
      'link latency plus one plain GET ' +
      '(column "GET p50", sent alongside).',
    tables: [table(rows), receiveTable(receive), httpFloorTable(http, rows)],
    notes: [
      'lag − link: lag p50 minus the link\'s middle latency, lag p99 minus its highest; the first-round goal is p99 − link ≤ 20 ms at moderate load.',
      'heartbeat RTT: the regions\' own measurement of the link round trip (mean over peers, end of step); /v1/sync lagMs max: the largest outbound lag the regions reported, sampled once a second.',
      'loop delay p99: the event-loop delay p99 of the worst region over the step (probe in each region process, 5 ms sampling).',
      'drain: time after the step until every region reported equal digests and nothing pending.',
      'Receive floor: the same load on one region in this process, no network and no HTTP: local writes at the rate, and frames of 4 entries from two peers handed to real replication sessions; visible = frame arrival → its entries committed (fsync included).',
      `HTTP floor: the same open-loop PUTs from this process against ${REGIONS.length} bare Fastify processes (one route that parses the JSON body and answers a small JSON object; no storage, no replication), ${warmUpMs / 1000} s not counted, then ${durationMs / 1000} s per rate: the latency this machine gives a request that does nothing. Region / floor compares the worst region's write p99 on direct links with the worst floor process's p99 at the same rate.`,
    ],
    data: { rows, receive, http },
    seconds: (performance.now() - started) / 1000,
  };
}

async function step(
  ctx: BenchContext, bench: BenchCluster, follower: Follower, condition: Condition, workload: Workload,
  rate: number | null, durationMs: number, label = rate === null ? 'closed 8' : `${rate}/s`,
): Promise<LagRow> {
  const before = await Promise.all(REGIONS.map((r) => bench.probe(r)));
  const meters = REGIONS.map((r) => cpuMeter(bench.pid(r)));
  const sampler = sampleSyncLag(bench);
  const followed = await writeAndFollow(bench, follower, workload, rate, durationMs);
  const cpu = meters.map((m) => m());
  const drainStart = performance.now();
  const drained = await bench.waitConverged(120_000);
  const drainMs = drained === null ? null : round(performance.now() - drainStart, 0);
  const syncLagMaxMs = await sampler.stop();
  const after = await Promise.all(REGIONS.map((r) => bench.probe(r)));
  const rtts = (await Promise.all(REGIONS.map((r) => bench.sync(r))))
    .flatMap((s) => s.peers.map((p) => p.rttMs))
    .filter((x): x is number => x !== null);
  const row: LagRow = {
    condition: condition.label, workload, load: label, ...followed,
    heartbeatRttMs: rtts.length > 0 ? round(rtts.reduce((a, b) => a + b, 0) / rtts.length, 2) : null,
    syncLagMaxMs, drainMs, cpu, probes: before.map((b, i) => probeDelta(b, after[i] ?? null)), link: condition.link,
  };
  const total = row.writes.reduce((s, w) => s + w.throughput, 0);
  const stalls = row.probes.map((p) => (p ? `${p.slowTx} slow tx, loop delay p99 ${p.loopDelayP99Ms} max ${p.loopDelayMaxMs} ms` : '?'));
  ctx.log(`lag: ${condition.label} ${workload} ${label}: ${round(total, 0)} writes/s, lag p50 ${row.lag.p50} p99 ${row.lag.p99} max ${row.lag.max} ms (n=${row.lag.count}), drain ${drainMs} ms; ${stalls.join(' | ')}`);
  return row;
}

/** Every region writes at `rate` (or 8 clients each when null); a sample of writes is followed to the other regions. */
async function writeAndFollow(
  bench: BenchCluster, follower: Follower, workload: Workload, rate: number | null, durationMs: number,
): Promise<Pick<LagRow, 'writes' | 'lag' | 'observerGet' | 'unseen'>> {
  const lag = new Latency();
  const observerGet = new Latency();
  let unseen = 0;
  const pending = new Set<Promise<void>>();
  const every = rate === null ? 25 : Math.max(1, Math.round(rate / PROBES_PER_SECOND));
  const writes = await Promise.all(REGIONS.map((origin) => {
    let n = 0;
    const op: Operation = async () => {
      const i = n++;
      const { doc, path, method, body } = workload === 'mixed' ? mixedWrite(origin, i) : { ...putWrite(origin, i, DOCS), path: '' };
      const r = await bench.client(origin).request(`/v1/docs/${doc}${path}`, { method, body });
      if (r.status !== 200) throw new Error(`HTTP ${r.status}`);
      if (i % every !== 0) return;
      const p = followWrite(bench, follower, origin, doc, r.body, { lag, observerGet }).then(
        (missed) => {
          unseen += missed;
        },
        () => {
          unseen += REGIONS.length - 1;
        },
      );
      pending.add(p);
      void p.finally(() => pending.delete(p));
    };
    return rate === null ? closedLoop({ clients: 8, durationMs, op }) : openLoop({ rate, durationMs, op });
  }));
  await Promise.all([...pending]);
  return { writes, lag: lag.summary(), observerGet: observerGet.summary(), unseen };
}

interface WriteRequest {
  doc: string;
  /** Appended to the document's URL (`/ops`). */
  path: string;
  method: 'PUT' | 'PATCH' | 'POST';
  body: string;
}

function putWrite(origin: string, i: number, docs: number): Omit<WriteRequest, 'path'> {
  return { doc: `lag/${origin}-${i % docs}`, method: 'PUT', body: `{"v":${i}}` };
}

/**
 * One write of the mixed workload: 1 in 10 a counter increment and 1 in 10 a
 * set add on a few documents every region shares (concurrent merges on the
 * same Yjs documents), 3 in 10 merge patches on tens of shared documents, and
 * the rest PUTs over thousands of this region's documents.
 */
function mixedWrite(origin: string, i: number): WriteRequest {
  const kind = i % 10;
  if (kind === 0 || kind === 1) {
    const op = kind === 0
      ? { op: 'increment', path: ['hits', origin], by: 1 }
      : { op: 'add', path: ['seen'], value: `${origin}-${i % 200}` };
    return { doc: `lag-hot/h${i % MIXED_HOT}`, path: '/ops', method: 'POST', body: JSON.stringify({ ops: [op] }) };
  }
  if (kind <= 4) {
    return { doc: `lag-patch/p${i % MIXED_PATCHED}`, path: '', method: 'PATCH', body: `{"${origin}":{"f${i % 8}":${i}}}` };
  }
  return { ...putWrite(origin, i, MIXED_PUT), path: '' };
}

/** Polls `/v1/sync` of every region once a second; `stop` resolves to the largest outbound lagMs seen. */
function sampleSyncLag(bench: BenchCluster): { stop(): Promise<number> } {
  let max = 0;
  let sampling = true;
  const loop = (async () => {
    while (sampling) {
      const all = await Promise.all(REGIONS.map((r) => bench.sync(r))).catch(() => []);
      for (const s of all) for (const p of s.peers) max = Math.max(max, p.outbound.lagMs);
      await sleep(1000);
    }
  })();
  return {
    stop: async () => {
      sampling = false;
      await loop;
      return max;
    },
  };
}

function table(rows: LagRow[]): Table {
  return {
    title: 'Write acknowledged at its origin → visible at each other region',
    columns: [
      'link', 'workload', 'load / region', 'writes/s (all)', 'write p50', 'write p99', 'lag p50', 'lag p99', 'lag max',
      'p50 − link', 'p99 − link', 'GET p50', 'heartbeat RTT', '/v1/sync lagMs max', 'followed', 'unseen', 'batch',
      'CPU / region', 'loop delay p99', 'drain ms',
    ],
    rows: rows.map((r) => {
      const total = r.writes.reduce((s, w) => s + w.throughput, 0);
      const worst = (f: (w: LoadResult) => number): number => Math.max(...r.writes.map(f));
      const batches = r.probes.map((p) => p?.meanBatch ?? 0);
      const cpus = r.cpu.filter((c): c is number => c !== null);
      const delays = r.probes.flatMap((p) => (p ? [p.loopDelayP99Ms] : []));
      return [
        r.condition, r.workload, r.load, round(total, 0), worst((w) => w.latency.p50), worst((w) => w.latency.p99),
        r.lag.p50, r.lag.p99, r.lag.max, round(r.lag.p50 - r.link[1], 1), round(r.lag.p99 - r.link[2], 1),
        r.observerGet.p50, r.heartbeatRttMs, r.syncLagMaxMs, r.lag.count, r.unseen,
        round(batches.reduce((a, b) => a + b, 0) / batches.length, 1),
        cpus.length > 0 ? round(cpus.reduce((a, b) => a + b, 0) / cpus.length, 2) : null,
        delays.length > 0 ? Math.max(...delays) : null, r.drainMs,
      ];
    }),
  };
}

/** The largest of a figure over the loads of one step (the worst region or process). */
function worstOf(loads: LoadResult[], f: (l: LoadResult) => number): number {
  return Math.max(...loads.map(f));
}

function httpFloorTable(floor: HttpFloorRow[], rows: LagRow[]): Table {
  return {
    title: 'HTTP floor: the same PUTs against bare Fastify processes, one per region',
    columns: ['load / process', 'request p50', 'request p99', 'request max', 'CPU / process', 'region write p99 (direct)', 'region / floor p99'],
    rows: floor.map((f) => {
      const region = rows.find((r) => r.condition === 'direct' && r.workload === 'puts' && r.load === `${f.rate}/s`);
      const floorP99 = worstOf(f.loads, (l) => l.latency.p99);
      const regionP99 = region ? worstOf(region.writes, (l) => l.latency.p99) : null;
      const cpus = f.cpu.filter((c): c is number => c !== null);
      return [
        `${f.rate}/s`, worstOf(f.loads, (l) => l.latency.p50), floorP99, worstOf(f.loads, (l) => l.latency.max),
        cpus.length > 0 ? round(cpus.reduce((a, b) => a + b, 0) / cpus.length, 2) : null,
        regionP99, regionP99 === null ? null : round(regionP99 / floorP99, 2),
      ];
    }),
  };
}

function receiveTable(rows: ReceiveResult[]): Table {
  return {
    title: 'Receive floor: frame arrival → entries durable, one in-process region',
    columns: ['load / region', 'entries per frame', 'visible p50', 'visible p99', 'visible max', 'batch'],
    rows: rows.map((r) => [`${r.rate}/s`, r.entriesPerFrame, r.visible.p50, r.visible.p99, r.visible.max, r.meanBatch]),
  };
}
