/**
 * Scenario 2, replication lag under load: three region processes each take
 * writes at a fixed rate, with and without latency on every link. A sample
 * of writes is followed: once its origin acknowledges it, this process asks
 * each other region for the document with `meridian-after` set to just that
 * write, and records when the answer comes (one clock for both ends).
 */
import type { Fault } from '../src/faults/proxy.js';
import { BenchCluster, probeDelta, sleep, type ProbeDelta } from './cluster.js';
import { REGIONS, type BenchContext } from './context.js';
import { closedLoop, openLoop, type LoadResult, type Operation } from './load.js';
import { cpuMeter } from './machine.js';
import type { ScenarioResult, Table } from './report.js';
import { Latency, round, type LatencySummary } from './stats.js';
import { createFollower, followWrite, waitLinksUp, type Follower } from './follow.js';
import { receiveFloor, type ReceiveResult } from './receive.js';

interface Condition {
  label: string;
  fault: Fault;
  /** One-way latency the links add: lowest, middle, highest (ms). */
  link: [number, number, number];
}

interface LagRow {
  condition: string;
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

export async function replicationLag(ctx: BenchContext): Promise<ScenarioResult> {
  const started = performance.now();
  const durationMs = ctx.quick ? 2500 : 10_000;
  const rates = ctx.quick ? [100, 400] : [100, 250, 500, 1000];
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
      for (const rate of rates) rows.push(await step(ctx, bench, follower, condition, rate, durationMs));
      if (!ctx.quick) rows.push(await step(ctx, bench, follower, condition, null, durationMs));
    } finally {
      await bench.stop();
    }
  }
  const receive: ReceiveResult[] = [];
  for (const rate of rates) {
    receive.push(await receiveFloor(ctx, { rate, durationMs: Math.min(durationMs, 5000), k: 4 }));
    ctx.log(`lag: receive floor ${rate}/s: visible p50 ${receive[receive.length - 1]!.visible.p50} p99 ${receive[receive.length - 1]!.visible.p99} ms`);
  }
  return {
    id: 'lag',
    title: '2. Replication lag under load',
    setup:
      `Three region processes (${REGIONS.join(', ')}; default config, synchronous=full), all driven from this ` +
      `process. "direct": regions dial each other on loopback; "50 ± 10 ms": every link goes through a fault proxy ` +
      `(in this process) that holds each chunk 50 ± 10 ms one way, in order. Each region takes single-field PUTs at the rate shown (open loop, ` +
      `${durationMs / 1000} s per step; "closed 8" = 8 clients per region). About ${PROBES_PER_SECOND} writes/s per ` +
      'region are followed: on acknowledgement, a GET with `meridian-after: <that write only>` and ' +
      '`meridian-wait-ms: 30000` goes to each other region; lag = answer time − acknowledgement time. Floor: the ' +
      'link latency plus one plain GET ' +
      '(column "GET p50", sent alongside).',
    tables: [table(rows), receiveTable(receive)],
    notes: [
      'lag − link: lag p50 minus the link\'s middle latency, lag p99 minus its highest; the first-round goal is p99 − link ≤ 20 ms at moderate load.',
      'heartbeat RTT: the regions\' own measurement of the link round trip (mean over peers, end of step); /v1/sync lagMs max: the largest outbound lag the regions reported, sampled once a second.',
      'drain: time after the step until every region reported equal digests and nothing pending.',
      'Receive floor: the same load on one region in this process, no network and no HTTP: local writes at the rate, and frames of 4 entries from two peers handed to real replication sessions; visible = frame arrival → its entries committed (fsync included).',
    ],
    data: { rows, receive },
    seconds: (performance.now() - started) / 1000,
  };
}

async function step(
  ctx: BenchContext, bench: BenchCluster, follower: Follower, condition: Condition, rate: number | null, durationMs: number,
): Promise<LagRow> {
  const label = rate === null ? 'closed 8' : `${rate}/s`;
  const before = await Promise.all(REGIONS.map((r) => bench.probe(r)));
  const meters = REGIONS.map((r) => cpuMeter(bench.pid(r)));
  const sampler = sampleSyncLag(bench);
  const followed = await writeAndFollow(bench, follower, rate, durationMs);
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
    condition: condition.label, load: label, ...followed,
    heartbeatRttMs: rtts.length > 0 ? round(rtts.reduce((a, b) => a + b, 0) / rtts.length, 2) : null,
    syncLagMaxMs, drainMs, cpu, probes: before.map((b, i) => probeDelta(b, after[i] ?? null)), link: condition.link,
  };
  const total = row.writes.reduce((s, w) => s + w.throughput, 0);
  const stalls = row.probes.map((p) => (p ? `${p.slowTx} slow tx, loop delay p99 ${p.loopDelayP99Ms} max ${p.loopDelayMaxMs} ms` : '?'));
  ctx.log(`lag: ${condition.label} ${label}: ${round(total, 0)} writes/s, lag p50 ${row.lag.p50} p99 ${row.lag.p99} max ${row.lag.max} ms (n=${row.lag.count}), drain ${drainMs} ms; ${stalls.join(' | ')}`);
  return row;
}

/** Every region writes at `rate` (or 8 clients each when null); a sample of writes is followed to the other regions. */
async function writeAndFollow(
  bench: BenchCluster, follower: Follower, rate: number | null, durationMs: number,
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
      const doc = `lag/${origin}-${i % DOCS}`;
      const r = await bench.client(origin).request(`/v1/docs/${doc}`, { method: 'PUT', body: `{"v":${i}}` });
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
      'link', 'load / region', 'writes/s (all)', 'write p50', 'write p99', 'lag p50', 'lag p99', 'lag max',
      'p50 − link', 'p99 − link', 'GET p50', 'heartbeat RTT', '/v1/sync lagMs max', 'followed', 'unseen', 'batch',
      'CPU / region', 'drain ms',
    ],
    rows: rows.map((r) => {
      const total = r.writes.reduce((s, w) => s + w.throughput, 0);
      const worst = (f: (w: LoadResult) => number): number => Math.max(...r.writes.map(f));
      const batches = r.probes.map((p) => p?.meanBatch ?? 0);
      const cpus = r.cpu.filter((c): c is number => c !== null);
      return [
        r.condition, r.load, round(total, 0), worst((w) => w.latency.p50), worst((w) => w.latency.p99),
        r.lag.p50, r.lag.p99, r.lag.max, round(r.lag.p50 - r.link[1], 1), round(r.lag.p99 - r.link[2], 1),
        r.observerGet.p50, r.heartbeatRttMs, r.syncLagMaxMs, r.lag.count, r.unseen,
        round(batches.reduce((a, b) => a + b, 0) / batches.length, 1),
        cpus.length > 0 ? round(cpus.reduce((a, b) => a + b, 0) / cpus.length, 2) : null, r.drainMs,
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
