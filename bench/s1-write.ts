/**
 * Scenario 1, the local write path: single-field PUTs over HTTP to one
 * region process (no peers), at fixed offered loads and at saturation, next
 * to the same writes made in this process through the write path alone and
 * through raw Yjs + SQLite.
 */
import type { DocKey } from '../src/ids.js';
import { BenchCluster, probeDelta, type ProbeDelta } from './cluster.js';
import type { BenchContext } from './context.js';
import { openFloorDocuments, rawFloor, type FloorDocuments, type RawFloorResult } from './floor.js';
import { startBareServers } from './http-floor.js';
import { closedLoop, openLoop, type LoadResult, type Operation } from './load.js';
import { cpuMeter } from './machine.js';
import type { ScenarioResult, Table } from './report.js';
import { ratio } from './stats.js';

const DOCS = 1000;
const SATURATION_CLIENTS = 32;

interface Step {
  label: string;
  rate: number | null;
}

interface HttpRow {
  step: Step;
  load: LoadResult;
  probe: ProbeDelta | null;
  regionCpu: number | null;
}

interface FloorRow {
  step: Step;
  load: LoadResult;
  meanBatch: number;
}

interface BareRow {
  step: Step;
  load: LoadResult;
  serverCpu: number | null;
}

/** Runs a step as an open loop at its rate, or a closed loop of 32 clients. */
function runStep(step: Step, durationMs: number, op: Operation): Promise<LoadResult> {
  return step.rate === null
    ? closedLoop({ clients: SATURATION_CLIENTS, durationMs, op })
    : openLoop({ rate: step.rate, durationMs, op });
}

export async function writePath(ctx: BenchContext): Promise<ScenarioResult> {
  const started = performance.now();
  const durationMs = ctx.quick ? 2000 : 10_000;
  const rates = ctx.quick ? [500, 2000] : [250, 500, 1000, 2000, 3000];
  const steps: Step[] = [...rates.map((r) => ({ label: `${r}/s`, rate: r })), { label: `closed ${SATURATION_CLIENTS}`, rate: null }];

  const { http, bare, floor, raw } = await runSteps(ctx, steps, durationMs);
  return {
    id: 'write',
    title: '1. Local write path',
    setup:
      `One region process (\`meridian start\`, no peers, synchronous=full, default config), single-field PUTs ` +
      `\`{"v": n}\` over ${DOCS} documents from this process over keep-alive HTTP/1.1. Open loop at fixed rates ` +
      `(${durationMs / 1000} s each), then a closed loop of ${SATURATION_CLIENTS} clients. Floors, same run, same ` +
      'machine, each step run right after its HTTP step: (a) the same writes through `createDocuments` on an in-process store (same group commit, same ' +
      'synchronous=full), same load generator; (b) raw Yjs + better-sqlite3: a Y.Map set per write and one ' +
      'transaction per batch of the size the region averaged at that load (batches back to back). Beside them, what HTTP ' +
      'alone costs here: the same requests against a bare Fastify process (one route that parses the JSON body and ' +
      'answers a small JSON object), run right after the HTTP step.',
    tables: tables(http, bare, floor, raw),
    notes: notes(http, floor),
    data: { http, bare, floor, raw },
    seconds: (performance.now() - started) / 1000,
  };
}

/**
 * Runs each step over HTTP, then against a bare Fastify process, then
 * through the in-process floor, then raw, one after the other, so that both
 * sides of a ratio see the machine in the same state (other work on a
 * shared machine comes and goes).
 */
async function runSteps(ctx: BenchContext, steps: Step[], durationMs: number): Promise<{ http: HttpRow[]; bare: BareRow[]; floor: FloorRow[]; raw: RawFloorResult[] }> {
  ctx.log('write path: starting one region process');
  const bench = await BenchCluster.start({
    regions: ['solo'], workDir: ctx.dir('write-http'),
    profileDir: ctx.profileDir ? `${ctx.profileDir}/write` : null,
  });
  const floor = openFloorDocuments(ctx.dir('write-floor'));
  const bareServer = await startBareServers(1);
  try {
    const client = bench.client('solo');
    let n = 0;
    const putTo = (to: typeof client): Operation => async () => {
      const i = n++;
      const r = await to.request(`/v1/docs/bench/w${i % DOCS}`, { method: 'PUT', body: `{"v":${i}}` });
      if (r.status !== 200) throw new Error(`HTTP ${r.status}`);
    };
    const httpOp = putTo(client);
    const bareOp = putTo(bareServer.clients[0]!);
    const floorOp: Operation = async () => {
      const i = n++;
      await floor.documents.put(`bench/w${i % DOCS}` as DocKey, { v: i });
    };
    ctx.log('write path: warm-up');
    for (const op of [httpOp, bareOp, floorOp]) await closedLoop({ clients: 16, durationMs: ctx.quick ? 1000 : 3000, op });
    const out = { http: [] as HttpRow[], bare: [] as BareRow[], floor: [] as FloorRow[], raw: [] as RawFloorResult[] };
    for (const step of steps) {
      const h = await httpStep(bench, step, durationMs, httpOp);
      const bareCpu = cpuMeter(bareServer.pids[0] ?? -1);
      const bareLoad = await runStep(step, durationMs, bareOp);
      const b: BareRow = { step, load: bareLoad, serverCpu: bareCpu() };
      const f = await floorStep(floor, step, durationMs, floorOp);
      const batch = Math.max(1, Math.round(h.probe?.meanBatch ?? 1));
      const r = rawFloor(ctx.dir('raw'), { batch, writes: Math.min(20_000, Math.max(2000, batch * 400)), docs: DOCS });
      out.http.push(h);
      out.bare.push(b);
      out.floor.push(f);
      out.raw.push(r);
      ctx.log(
        `write path ${step.label}: HTTP ${h.load.throughput}/s p50 ${h.load.latency.p50} p99 ${h.load.latency.p99} ms ` +
          `(batch ${h.probe?.meanBatch ?? '?'}, region CPU ${h.regionCpu ?? '?'}); bare ${b.load.throughput}/s p99 ${b.load.latency.p99} ms; ` +
          `floor ${f.load.throughput}/s ` +
          `p50 ${f.load.latency.p50} p99 ${f.load.latency.p99} ms (batch ${f.meanBatch}); raw ${r.capacity}/s at batch ${batch}`,
      );
    }
    return out;
  } finally {
    await bareServer.stop();
    await floor.close();
    await bench.stop();
  }
}

async function httpStep(bench: BenchCluster, step: Step, durationMs: number, op: Operation): Promise<HttpRow> {
  const before = await bench.probe('solo');
  const cpu = cpuMeter(bench.pid('solo'));
  const load = await runStep(step, durationMs, op);
  const regionCpu = cpu();
  return { step, load, probe: probeDelta(before, await bench.probe('solo')), regionCpu };
}

async function floorStep(floor: FloorDocuments, step: Step, durationMs: number, op: Operation): Promise<FloorRow> {
  const before = floor.commits();
  const load = await runStep(step, durationMs, op);
  const after = floor.commits();
  const commits = after.commits - before.commits;
  const meanBatch = commits > 0 ? Math.round(((after.entries - before.entries) / commits) * 100) / 100 : 0;
  return { step, load, meanBatch };
}

function tables(http: HttpRow[], bare: BareRow[], floor: FloorRow[], raw: RawFloorResult[]): Table[] {
  const main: Table = {
    title: 'HTTP at one region vs. the in-process write path (floor a)',
    columns: [
      'load', 'HTTP writes/s', 'p50', 'p99', 'p99.9', 'sent late p99', 'batch', 'region CPU', 'commit share',
      'floor writes/s', 'floor p50', 'floor p99', 'floor p99.9', 'floor batch', 'p50 ratio', 'p99 ratio', 'writes/s ratio',
    ],
    rows: http.map((h, i) => {
      const f = floor[i]!;
      return [
        h.step.label, h.load.throughput, h.load.latency.p50, h.load.latency.p99, h.load.latency.p999,
        h.load.sendDelay?.p99 ?? null, h.probe?.meanBatch ?? null, h.regionCpu, h.probe?.commitShare ?? null,
        f.load.throughput, f.load.latency.p50, f.load.latency.p99, f.load.latency.p999, f.meanBatch,
        ratio(h.load.latency.p50, f.load.latency.p50), ratio(h.load.latency.p99, f.load.latency.p99),
        ratio(h.load.throughput, f.load.throughput),
      ];
    }),
  };
  const rawTable: Table = {
    title: 'Raw Yjs + SQLite floor (b) at the batch size the region averaged',
    columns: ['load', 'batch', 'capacity writes/s', 'µs per write', 'batch p50', 'batch p99', 'HTTP p50 / batch p50'],
    rows: raw.map((r, i) => [
      http[i]!.step.label, r.batch, r.capacity, r.perWriteUs, r.batchMs.p50, r.batchMs.p99,
      ratio(http[i]!.load.latency.p50, r.batchMs.p50),
    ]),
  };
  const bareTable: Table = {
    title: 'The same PUTs against a bare Fastify process (HTTP alone: no storage, no replication)',
    columns: ['load', 'writes/s', 'p50', 'p99', 'p99.9', 'server CPU', 'region / bare writes/s', 'region / bare p99'],
    rows: bare.map((b, i) => [
      b.step.label, b.load.throughput, b.load.latency.p50, b.load.latency.p99, b.load.latency.p999, b.serverCpu,
      ratio(http[i]!.load.throughput, b.load.throughput), ratio(http[i]!.load.latency.p99, b.load.latency.p99),
    ]),
  };
  return [main, bareTable, rawTable];
}

function notes(http: HttpRow[], floor: FloorRow[]): string[] {
  const out: string[] = [];
  const failed = http.reduce((s, h) => s + h.load.failed, 0) + floor.reduce((s, f) => s + f.load.failed, 0);
  if (failed > 0) {
    const errs = [...http, ...floor].flatMap((r) => Object.entries(r.load.errors)).slice(0, 5);
    out.push(`${failed} requests failed: ${errs.map(([m, c]) => `${m} (${c})`).join('; ')}`);
  }
  out.push('sent late p99: how late the generator sent requests against the open-loop schedule (its own delay, counted in the latencies).');
  out.push('batch: log entries per group commit (probe in the region process); commit share: wall time inside group-commit transactions (fsync included; on the writer thread, from posting a batch to its answer).');
  out.push('Ratios are HTTP / floor (a): latency ratios above 1 and writes/s ratios below 1 are the cost of HTTP, JSON and the process boundary.');
  return out;
}
