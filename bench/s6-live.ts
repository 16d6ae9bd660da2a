/**
 * Scenario 6, live editors: the same Yjs workload against a Meridian region's
 * live endpoint (y-websocket clients) and against Hocuspocus 3.x with its
 * SQLite extension (@hocuspocus/provider clients), side by side in one run.
 * Each server runs in its own process; the clients and the clock are in this
 * one. Hocuspocus runs twice: with its default store debounce and with
 * debounce 0 (a store per update, still after the broadcast).
 */
import { join } from 'node:path';
import type { BenchContext } from './context.js';
import { startHocuspocus, startMeridian, type LiveSystem } from './live-systems.js';
import { DISK_WAIT_MS, runWorkload, type PhaseResult, type WorkloadResult, type WorkloadShape } from './live-workload.js';
import type { Cell, ScenarioResult, Table } from './report.js';
import { ratio, round } from './stats.js';

/** Hocuspocus's own defaults (Hocuspocus configuration `debounce`, `maxDebounce`). */
const HOCUSPOCUS_DEFAULT = { debounce: 2000, maxDebounce: 10_000 };

function shapeOf(quick: boolean): WorkloadShape {
  return quick
    ? { coldDocs: 200, hotDocs: 4, clientsPerHotDoc: 25, phases: [{ rate: 500, durationMs: 4000 }, { rate: 1500, durationMs: 3000 }] }
    : { coldDocs: 1000, hotDocs: 4, clientsPerHotDoc: 25, phases: [{ rate: 1000, durationMs: 12_000 }, { rate: 3000, durationMs: 8000 }] };
}

export async function liveEditors(ctx: BenchContext): Promise<ScenarioResult> {
  const started = performance.now();
  const shape = shapeOf(ctx.quick);
  const starts: [string, () => Promise<LiveSystem>][] = [
    ['meridian', () => startMeridian(ctx.dir('live-meridian'))],
    ['hocuspocus', () => startHocuspocus({ database: join(ctx.dir('live-hocuspocus'), 'db.sqlite'), ...HOCUSPOCUS_DEFAULT })],
    ['hocuspocus-0', () => startHocuspocus({ database: join(ctx.dir('live-hocuspocus-0'), 'db.sqlite'), debounce: 0, maxDebounce: 0 })],
  ];
  const results: WorkloadResult[] = [];
  for (const [name, start] of starts) {
    ctx.log(`live: starting ${name}`);
    const system = await start();
    try {
      results.push(await runWorkload(system, shape, ctx.log));
    } finally {
      await system.stop();
    }
  }
  const clients = shape.coldDocs * 2 + shape.hotDocs * shape.clientsPerHotDoc;
  return {
    id: 'live',
    title: '6. Live editors: Meridian vs Hocuspocus',
    setup:
      `${shape.coldDocs} documents with 2 editors each and ${shape.hotDocs} hot documents with ${shape.clientsPerHotDoc} editors each ` +
      `(${clients} clients, each its own WebSocket). Every editor inserts 4 characters at a random place of one Y.Text; ` +
      `${shape.phases.map((p) => `${p.rate} updates/s in all for ${p.durationMs / 1000} s`).join(', then ')} on the same clients ` +
      '(each step waits for its updates to reach every editor and the disk), open loop, spread evenly over the editors. ' +
      'Latency: scheduled send → each other editor of the document sees the update, on this process\'s clock. ' +
      'Each server in its own process (Meridian: one `meridian start` region, default config; Hocuspocus 3.x + SQLite ' +
      'extension in a child process); the clients of both run in this process, the same code but the provider. ' +
      'Server CPU: share of one core used by the server process during the step; client CPU: the same for this process ' +
      '(the clients and the load generator), whose cost differs with the client library. ' +
      'Memory: RSS of the server process, before any client, with one client per document, with all clients.',
    tables: [loadTable(results), memoryTable(results), ratioTable(results)],
    notes: notes(results),
    data: { shape, results },
    seconds: (performance.now() - started) / 1000,
  };
}

function loadTable(results: WorkloadResult[]): Table {
  return {
    title: 'Updates: throughput, latency to the other editors, time until on disk',
    columns: ['system', 'offered/s', 'sent', 'delivered to all', 'delivered/s', 'p50 (2 editors)', 'p99 (2 editors)',
      'p50 (hot, 25)', 'p99 (hot, 25)', 'server CPU', 'client CPU', 'on disk p50', 'on disk p99', 'on disk max'],
    rows: results.flatMap((r) => r.phases.map((p) => [
      r.system, p.offered, p.sent, p.delivered, p.deliveredPerSec, p.cold.p50, p.cold.p99, p.hot.p50, p.hot.p99,
      p.cpu, p.clientCpu, ...diskCells(p),
    ])),
  };
}

function diskCells(p: PhaseResult): Cell[] {
  // Meridian commits (fsync) before it broadcasts: each update is on disk before the first editor sees it.
  if (!p.onDisk) return ['< delivery', '< delivery', '< delivery'];
  const missing = p.notOnDisk ? ` (${p.notOnDisk} not on disk ${DISK_WAIT_MS / 1000} s after the last delivery)` : '';
  return [p.onDisk.p50, p.onDisk.p99, missing ? `${round(p.onDisk.max, 0)}${missing}` : p.onDisk.max];
}

function memoryTable(results: WorkloadResult[]): Table {
  return {
    title: 'Server memory (RSS, MiB)',
    columns: ['system', 'no clients', 'one client per document', 'KiB per open document', 'all clients', 'KiB per further client',
      'after the load', 'peak'],
    rows: results.map((r) => {
      const m = r.memory;
      const per = (a: number | null, b: number | null, n: number): number | null =>
        a === null || b === null || n === 0 ? null : round(((b - a) * 1024) / n, 1);
      return [r.system, m.baselineMiB, m.oneClientPerDocMiB, per(m.baselineMiB, m.oneClientPerDocMiB, m.docs), m.allClientsMiB,
        per(m.oneClientPerDocMiB, m.allClientsMiB, m.clients - m.docs), m.afterLoadMiB, m.peakMiB];
    }),
  };
}

/** Meridian against each Hocuspocus run, step by step: above 1 means Meridian delivered more (throughput) or took longer (latency). */
function ratioTable(results: WorkloadResult[]): Table {
  const [meridian, ...peers] = results;
  return {
    title: 'Meridian / Hocuspocus',
    columns: ['against', 'offered/s', 'delivered/s', 'p50 (2 editors)', 'p99 (2 editors)', 'p50 (hot)', 'p99 (hot)'],
    rows: meridian
      ? peers.flatMap((peer) => peer.phases.map((p, i) => {
        const m = meridian.phases[i]!;
        return [peer.system, p.offered, ratio(m.deliveredPerSec, p.deliveredPerSec), ratio(m.cold.p50, p.cold.p50),
          ratio(m.cold.p99, p.cold.p99), ratio(m.hot.p50, p.hot.p50), ratio(m.hot.p99, p.hot.p99)];
      }))
      : [],
  };
}

function notes(results: WorkloadResult[]): string[] {
  const [meridian, ...peers] = results;
  if (!meridian) return [];
  const out = [
    'Durable before broadcast vs debounced storage: Meridian sends an update to the other editors only after the group ' +
      'commit (fsync) that stored it, so it is on disk before anyone sees it. Hocuspocus broadcasts each update as it ' +
      'arrives and stores the whole document later: with its defaults, 2 s after the document\'s last change, or at most ' +
      '10 s after its first unsaved one while edits keep coming; with debounce 0 it starts a store (the full document ' +
      'state, one upsert) for every update, after the broadcast and without waiting for it. Hocuspocus never tells a ' +
      'client when its update is on disk; Meridian\'s `meridian-version` message (opt-in) does.',
    'Hocuspocus "on disk" is timed from the scheduled send to the completion of the SQLite upsert whose state holds the ' +
      'update (reported by the server process, same machine clock).',
  ];
  out.push(`Storage: ${results.map((r) => `${r.system}: ${r.storage}`).join('; ')}.`);
  for (const [i, m] of meridian.phases.entries()) {
    const c = m.commits;
    if (c) out.push(`Meridian region at ${m.offered}/s: event loop busy ${round(c.loopBusy * 100, 0)} %, loop delay p99 ${c.loopDelayP99Ms} ms.`);
    for (const peer of peers) {
      const p = peer.phases[i];
      if (p) out.push(goal(m, p, `${peer.system} at ${p.offered}/s`));
    }
  }
  return out;
}

/** The goal against one peer step, part by part: at least its throughput, p50 and p99, with durable updates only. */
function goal(m: PhaseResult, peer: PhaseResult, against: string): string {
  const part = (name: string, ok: boolean, r: number | null): string => `${name} ${r} (${ok ? 'met' : 'NOT met'})`;
  return (
    `Against ${against}, Meridian / Hocuspocus: ` +
    `${part('throughput', m.deliveredPerSec >= peer.deliveredPerSec * 0.98, ratio(m.deliveredPerSec, peer.deliveredPerSec))}; ` +
    `${part('p50 (2 editors)', m.cold.p50 <= peer.cold.p50, ratio(m.cold.p50, peer.cold.p50))}; ` +
    `${part('p99 (2 editors)', m.cold.p99 <= peer.cold.p99, ratio(m.cold.p99, peer.cold.p99))}; ` +
    `${part('p50 (hot)', m.hot.p50 <= peer.hot.p50, ratio(m.hot.p50, peer.hot.p50))}; ` +
    `${part('p99 (hot)', m.hot.p99 <= peer.hot.p99, ratio(m.hot.p99, peer.hot.p99))} ` +
    '(throughput within 2 % counts as equal).'
  );
}
