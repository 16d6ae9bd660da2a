/**
 * Scenario 4, many documents: one region process takes a large number of
 * small documents; write rate as the database grows, database size, resident
 * memory with the default document cache, read latency of cached (hot) and
 * evicted (cold) documents, and restart time. Floor: the same writes and
 * reads through the write path in this process.
 */
import type { DocKey } from '../src/ids.js';
import { DEFAULTS } from '../src/config.js';
import { BenchCluster, probeDelta, sleep } from './cluster.js';
import type { BenchContext } from './context.js';
import { openFloorDocuments } from './floor.js';
import { closedLoop, type LoadResult, type Operation } from './load.js';
import { cpuMeter, folderBytes, memoryOf } from './machine.js';
import type { ScenarioResult, Table } from './report.js';
import { round, type LatencySummary } from './stats.js';

const CLIENTS = 32;
const READ_CLIENTS = 4;
const CACHE = DEFAULTS.storage.cacheDocs;

interface Slice {
  upTo: number;
  writesPerS: number;
  p99: number;
  rssMiB: number | null;
  regionCpu: number | null;
}

interface ManyResult {
  docs: number;
  slices: Slice[];
  write: { seconds: number; perS: number; p50: number; p99: number; meanBatch: number | null };
  dbBytes: number;
  jsonBytes: number;
  rssMiB: number | null;
  peakMiB: number | null;
  hot: LatencySummary;
  cold: LatencySummary;
  restartMs: number;
  rssAfterRestartMiB: number | null;
}

interface ManyFloor {
  docs: number;
  perS: number;
  p99: number;
  dbBytes: number;
  hot: LatencySummary;
  cold: LatencySummary;
}

const body = (i: number): string => `{"n":${i},"name":"document ${i}"}`;

export async function manyDocuments(ctx: BenchContext): Promise<ScenarioResult> {
  const started = performance.now();
  const docs = ctx.quick ? 20_000 : 1_000_000;
  const reads = ctx.quick ? 2000 : 10_000;
  const result = await regionRun(ctx, docs, reads);
  const floorDocs = Math.min(docs, ctx.quick ? 20_000 : 200_000);
  ctx.log(`many: floor, ${floorDocs} documents in process`);
  const floor = await floorRun(ctx, floorDocs, reads);
  const perDoc = (bytes: number, n: number): number => round(bytes / n, 0);
  const table: Table = {
    title: `${docs.toLocaleString('en-US')} small documents at one region (cache ${CACHE.toLocaleString('en-US')} documents)`,
    columns: ['', 'documents', 'writes/s', 'write p99', 'DB bytes/doc', 'RSS MiB', 'peak RSS MiB', 'hot read p50', 'hot p99', 'cold read p50', 'cold p99', 'restart ms'],
    rows: [
      ['region (HTTP)', docs, result.write.perS, result.write.p99, perDoc(result.dbBytes, docs), result.rssMiB, result.peakMiB,
        result.hot.p50, result.hot.p99, result.cold.p50, result.cold.p99, result.restartMs],
      ['floor (in process)', floor.docs, floor.perS, floor.p99, perDoc(floor.dbBytes, floor.docs), null, null,
        floor.hot.p50, floor.hot.p99, floor.cold.p50, floor.cold.p99, null],
      ['ratio', null, round(result.write.perS / floor.perS, 2), null, round(result.dbBytes / docs / (floor.dbBytes / floor.docs), 2),
        null, null, null, null, round(result.cold.p50 / Math.max(floor.cold.p50, 0.001), 1), round(result.cold.p99 / Math.max(floor.cold.p99, 0.001), 1), null],
    ],
  };
  const growth: Table = {
    title: 'Write rate as the database grows',
    columns: ['documents written', 'writes/s', 'p99 ms', 'RSS MiB', 'region CPU'],
    rows: result.slices.map((s) => [s.upTo, s.writesPerS, s.p99, s.rssMiB, s.regionCpu]),
  };
  return {
    id: 'many',
    title: '4. Many documents',
    setup:
      `One region process (default config: document cache ${CACHE}, synchronous=full). ${docs.toLocaleString('en-US')} ` +
      `PUTs of new documents \`{"n": i, "name": "document i"}\` (${round(result.jsonBytes / docs, 0)} bytes of JSON each), ` +
      `${CLIENTS} clients. Reads: ${reads} GETs with ${READ_CLIENTS} clients, of the last 1000 documents written (hot) and of ` +
      `random documents written long before (cold: evicted, loaded from SQLite). Restart: clean stop, then start until ` +
      `/healthz answers. Floor: the same through \`createDocuments\` in this process (${floor.docs.toLocaleString('en-US')} documents).`,
    tables: [table, growth],
    notes: [`DB bytes/doc: database + WAL files over documents; the JSON body is ${round(result.jsonBytes / docs, 0)} bytes.`],
    data: { result, floor },
    seconds: (performance.now() - started) / 1000,
  };
}

async function regionRun(ctx: BenchContext, docs: number, reads: number): Promise<ManyResult> {
  ctx.log(`many: writing ${docs} documents to one region`);
  const bench = await BenchCluster.start({
    regions: ['solo'], workDir: ctx.dir('many'), profileDir: ctx.profileDir ? `${ctx.profileDir}/many` : null,
  });
  try {
    const client = bench.client('solo');
    const write = await writeAll(ctx, bench, docs);
    await sleep(1000);
    const mem = memoryOf(bench.pid('solo'));
    const dbBytes = folderBytes(bench.cluster.region('solo').dataDir);
    const read = (pick: () => number): Promise<LatencySummary> => readLatency(reads, async () => {
      const r = await client.request(`/v1/docs/many/d${pick()}`);
      if (r.status !== 200) throw new Error(`HTTP ${r.status}`);
    });
    ctx.log('many: reads');
    const hot = await read(() => docs - 1 - Math.floor(Math.random() * Math.min(1000, docs)));
    const coldRange = Math.max(1, docs - CACHE - 2000);
    const cold = await read(() => Math.floor(Math.random() * coldRange));
    ctx.log(`many: hot p50 ${hot.p50} ms, cold p50 ${cold.p50} ms; restarting`);
    await bench.cluster.stopRegion('solo');
    const r0 = performance.now();
    await bench.cluster.startRegion('solo', 600_000);
    const restartMs = round(performance.now() - r0, 0);
    return {
      docs, ...write, dbBytes, jsonBytes: sumJsonBytes(docs), rssMiB: mem?.rssMiB ?? null, peakMiB: mem?.peakMiB ?? null,
      hot, cold, restartMs, rssAfterRestartMiB: memoryOf(bench.pid('solo'))?.rssMiB ?? null,
    };
  } finally {
    await bench.stop();
  }
}

/** Writes documents 0..docs-1 in ten slices, noting the rate and memory after each. */
async function writeAll(ctx: BenchContext, bench: BenchCluster, docs: number): Promise<Pick<ManyResult, 'slices' | 'write'>> {
  const client = bench.client('solo');
  const put: Operation = async (i) => {
    const r = await client.request(`/v1/docs/many/d${i}`, { method: 'PUT', body: body(i) });
    if (r.status !== 200) throw new Error(`HTTP ${r.status}`);
  };
  const slices: Slice[] = [];
  const loads: LoadResult[] = [];
  const before = await bench.probe('solo');
  const t0 = performance.now();
  const step = Math.ceil(docs / 10);
  for (let from = 0; from < docs; from += step) {
    const count = Math.min(step, docs - from);
    const cpu = cpuMeter(bench.pid('solo'));
    const load = await closedLoop({ clients: CLIENTS, durationMs: 3_600_000, maxRequests: count, op: (i) => put(from + i) });
    if (load.failed > 0) throw new Error(`many: ${load.failed} writes failed: ${JSON.stringify(load.errors)}`);
    loads.push(load);
    const mem = memoryOf(bench.pid('solo'));
    slices.push({ upTo: from + count, writesPerS: load.throughput, p99: load.latency.p99, rssMiB: mem?.rssMiB ?? null, regionCpu: cpu() });
    ctx.log(`many: ${from + count} documents, ${load.throughput}/s, RSS ${mem?.rssMiB ?? '?'} MiB`);
  }
  const seconds = (performance.now() - t0) / 1000;
  const probe = probeDelta(before, await bench.probe('solo'));
  return {
    slices,
    write: {
      seconds: round(seconds, 1), perS: round(docs / seconds, 0),
      p50: Math.max(...loads.map((l) => l.latency.p50)), p99: Math.max(...loads.map((l) => l.latency.p99)),
      meanBatch: probe?.meanBatch ?? null,
    },
  };
}

async function floorRun(ctx: BenchContext, docs: number, reads: number): Promise<ManyFloor> {
  const dir = ctx.dir('many-floor');
  const floor = openFloorDocuments(dir);
  try {
    const key = (i: number): DocKey => `many/d${i}` as DocKey;
    const load = await closedLoop({
      clients: CLIENTS, durationMs: 3_600_000, maxRequests: docs,
      op: async (i) => {
        await floor.documents.put(key(i), { n: i, name: `document ${i}` });
      },
    });
    const dbBytes = folderBytes(dir);
    const read = (pick: () => number): Promise<LatencySummary> => readLatency(reads, async () => {
      if (floor.documents.read(key(pick())).value === null) throw new Error('missing');
    });
    const hot = await read(() => docs - 1 - Math.floor(Math.random() * Math.min(1000, docs)));
    const coldRange = Math.max(1, docs - CACHE - 2000);
    const cold = await read(() => Math.floor(Math.random() * coldRange));
    return { docs, perS: load.throughput, p99: load.latency.p99, dbBytes, hot, cold };
  } finally {
    await floor.close();
  }
}

async function readLatency(reads: number, op: Operation): Promise<LatencySummary> {
  const l = await closedLoop({ clients: READ_CLIENTS, durationMs: 3_600_000, maxRequests: reads, op });
  if (l.failed > 0) throw new Error(`many: ${l.failed} reads failed: ${JSON.stringify(l.errors)}`);
  return l.latency;
}

function sumJsonBytes(docs: number): number {
  let total = 0;
  for (let i = 0; i < docs; i++) total += body(i).length;
  return total;
}

