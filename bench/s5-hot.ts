/**
 * Scenario 5, one hot document: clients at all three regions at once send
 * `increment` + `set` ops to the same document. Throughput, latency, the
 * time until all regions agree once writes stop, and whether the counter
 * holds exactly the acknowledged increments. Floor: the same ops on one
 * document through the write path in this process.
 */
import type { DocKey } from '../src/ids.js';
import { BenchCluster, probeDelta } from './cluster.js';
import { REGIONS, type BenchContext } from './context.js';
import { openFloorDocuments } from './floor.js';
import { waitLinksUp } from './follow.js';
import { closedLoop, type LoadResult, type Operation } from './load.js';
import { cpuMeter } from './machine.js';
import type { ScenarioResult, Table } from './report.js';
import { round } from './stats.js';

const CLIENTS_PER_REGION = 8;
const DOC = 'hot/counter';

const opsBody = (client: string, n: number): string =>
  JSON.stringify([
    { op: 'increment', path: ['count'], by: 1 },
    { op: 'set', path: ['last'], value: `${client}:${n}` },
  ]);

interface HotRun {
  loads: LoadResult[];
  acked: number;
  counts: number[];
  convergeMs: number | null;
  cpu: (number | null)[];
  batch: (number | null)[];
  stateBytes: number;
}

export async function hotDocument(ctx: BenchContext): Promise<ScenarioResult> {
  const started = performance.now();
  const durationMs = ctx.quick ? 4000 : 20_000;
  const run = await clusterRun(ctx, durationMs);
  ctx.log(`hot: converged ${run.convergeMs} ms after the last write; counts ${run.counts.join(', ')}`);
  const floor = await floorRun(ctx, durationMs);
  ctx.log(`hot: floor ${floor.load.throughput} ops/s at ${floor.cpu ?? '?'} cores`);
  return {
    id: 'hot',
    title: '5. One hot document',
    setup:
      `Three region processes, default config. ${CLIENTS_PER_REGION} clients per region (closed loop, ${durationMs / 1000} s) ` +
      `send \`POST /v1/docs/${DOC}/ops\` with an increment of "count" and a set of "last". Converged: time from the last ` +
      `acknowledgement until every region serves count = all acknowledged increments and reports equal digests, nothing pending. ` +
      'Floor: the same ops from the same number of clients on one document through `createDocuments` in this process.',
    tables: [table(run, floor)],
    notes: notes(run, floor),
    data: { ...run, floor },
    seconds: (performance.now() - started) / 1000,
  };
}

async function clusterRun(ctx: BenchContext, durationMs: number): Promise<HotRun> {
  ctx.log('hot: starting three region processes');
  const bench = await BenchCluster.start({
    regions: REGIONS, workDir: ctx.dir('hot'), profileDir: ctx.profileDir ? `${ctx.profileDir}/hot` : null,
    // Every op leaves three structs for good (the values it overwrites stay as Yjs tombstones): at full speed
    // the document would reach the default limits.maxDocumentStructs within the run. Throughput is measured here.
    limits: { maxDocumentStructs: 2_000_000 },
  });
  try {
    await waitLinksUp(bench, 20_000);
    const before = await Promise.all(REGIONS.map((r) => bench.probe(r)));
    const meters = REGIONS.map((r) => cpuMeter(bench.pid(r)));
    ctx.log(`hot: ${CLIENTS_PER_REGION} clients per region on one document for ${durationMs / 1000} s`);
    const loads = await Promise.all(REGIONS.map((region) => {
      let n = 0;
      const op: Operation = async () => {
        const r = await bench.client(region).request(`/v1/docs/${DOC}/ops`, { method: 'POST', body: opsBody(region, n++) });
        if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${r.body.slice(0, 80)}`);
      };
      return closedLoop({ clients: CLIENTS_PER_REGION, durationMs, op });
    }));
    const cpu = meters.map((m) => m());
    const stopped = performance.now();
    const acked = loads.reduce((s, l) => s + l.ok, 0);
    const counts = await waitForCount(bench, acked, 120_000);
    const convergeMs = (await bench.waitConverged(120_000)) === null ? null : round(performance.now() - stopped, 0);
    const after = await Promise.all(REGIONS.map((r) => bench.probe(r)));
    const batch = before.map((b, i) => probeDelta(b, after[i] ?? null)?.meanBatch ?? null);
    const stateBytes = (await bench.client(REGIONS[0]!).request(`/v1/docs/${DOC}/yjs`)).bytes;
    return { loads, acked, counts, convergeMs, cpu, batch, stateBytes };
  } finally {
    await bench.stop();
  }
}

interface FloorRun {
  load: LoadResult;
  /** Cores this process used meanwhile (its in-process clients included). */
  cpu: number | null;
}

function table(run: HotRun, floorRun: FloorRun): Table {
  const floor = floorRun.load;
  const { loads, acked, counts } = run;
  const total = loads.reduce((s, l) => s + l.throughput, 0);
  return {
    title: 'One document written at all three regions at once',
    columns: ['', 'clients', 'ops requests/s', 'p50', 'p99', 'p99.9', 'batch', 'CPU / region', 'converged ms after stop', 'count = acked', 'Yjs state bytes'],
    rows: [
      ...REGIONS.map((r, i) => [
        r, CLIENTS_PER_REGION, loads[i]!.throughput, loads[i]!.latency.p50, loads[i]!.latency.p99, loads[i]!.latency.p999,
        run.batch[i] ?? null, run.cpu[i] ?? null, null, null, null,
      ]),
      ['all regions', CLIENTS_PER_REGION * REGIONS.length, round(total, 0), null, null, null, null, null, run.convergeMs,
        counts.every((c) => c === acked) ? `yes (${acked})` : `NO: ${counts.join('/')} vs ${acked}`, run.stateBytes],
      ['floor (in process, one region)', CLIENTS_PER_REGION * REGIONS.length, floor.throughput, floor.latency.p50,
        floor.latency.p99, floor.latency.p999, null, floorRun.cpu, null, null, null],
    ],
  };
}

/** Waits until every region serves `count === expected`; returns the counts last seen. */
async function waitForCount(bench: BenchCluster, expected: number, timeoutMs: number): Promise<number[]> {
  const start = performance.now();
  let counts: number[] = [];
  while (performance.now() - start < timeoutMs) {
    counts = await Promise.all(REGIONS.map(async (r) => (await bench.client(r).json<{ count?: number }>(`/v1/docs/${DOC}`)).count ?? 0));
    if (counts.every((c) => c === expected)) return counts;
    await new Promise((res) => setTimeout(res, 20));
  }
  return counts;
}

/**
 * Each op is applied at every region: once as a local write, and once per
 * peer from the log. Were each application as cheap as the floor's and
 * nothing else ran (no HTTP, no replication, no load generator), the two
 * cores would hold at most 2 / (3 × floor cores per op) ops a second.
 */
function notes(run: HotRun, floorRun: FloorRun): string[] {
  const cores = floorRun.cpu;
  if (cores === null || cores <= 0) return [];
  const ceiling = (2 * floorRun.load.throughput) / (REGIONS.length * cores);
  const perOpUs = (cores / floorRun.load.throughput) * 1e6;
  const clusterCpu = run.cpu.reduce<number>((s, c) => s + (c ?? 0), 0);
  const total = run.loads.reduce((s, l) => s + l.throughput, 0);
  return [
    `Ceiling on this machine: the floor used ${cores} cores (${round(perOpUs, 0)} µs of CPU per op); every op is applied at ` +
      `all ${REGIONS.length} regions, so two cores doing nothing else (no HTTP, no replication, no load generator) would ` +
      `apply at most ${round(ceiling, 0)} ops/s, ${round(ceiling / floorRun.load.throughput, 2)} of the floor. The regions ` +
      `used ${round(clusterCpu, 2)} cores together, ${total > 0 ? round((clusterCpu / total) * 1e6, 0) : '–'} µs per op.`,
  ];
}

async function floorRun(ctx: BenchContext, durationMs: number): Promise<FloorRun> {
  const floor = openFloorDocuments(ctx.dir('hot-floor'));
  const cpu = cpuMeter(process.pid);
  try {
    const ops = (n: number) => [
      { op: 'increment' as const, path: ['count'], by: 1 },
      { op: 'set' as const, path: ['last'], value: `floor:${n}` },
    ];
    let n = 0;
    const load = await closedLoop({
      clients: CLIENTS_PER_REGION * REGIONS.length, durationMs,
      op: async () => {
        await floor.documents.ops(DOC as DocKey, ops(n++));
      },
    });
    return { load, cpu: cpu() };
  } finally {
    await floor.close();
  }
}
