/**
 * Scenario 3, catching up: (a) one region cut off from both peers while the
 * other two write, then healed: time until its links are back and until all
 * three agree; (b) one region wiped and restarted empty: time until it holds
 * every document again; (c) every region writing at 100/s while one is cut
 * off and healed: its clients' write latency while it catches up
 * (catchup-latency.ts). Floors: the same log entries applied in this
 * process through the write path's remote apply, in frames of 256 queued as
 * a link brings them, and digested; the same documents' states merged in
 * this process.
 */
import { readFileSync } from 'node:fs';
import type { DocKey, RegionId } from '../src/ids.js';
import type { RemoteApplyResult } from '../src/docs/types.js';
import { UNACKED_WINDOW_BYTES } from '../src/replication/session.js';
import {
  latencyTables, measureCatchUpLatency, measureRebuildLatency, rebuildLatencyTables, type CatchUpLatencyResult, type RebuildLatencyResult,
} from './catchup-latency.js';
import { BenchCluster, probeDelta, sleep, WARM_UP_MS, type ProbeDelta } from './cluster.js';
import { REGIONS, type BenchContext } from './context.js';
import { openFloorDocuments } from './floor.js';
import { waitLinksUp } from './follow.js';
import { closedLoop, openLoop, type Operation } from './load.js';
import { folderBytes } from './machine.js';
import type { ScenarioResult, Table } from './report.js';
import { round } from './stats.js';

const ISOLATED = 'us-east';
const WRITERS = ['ap-south', 'eu-west'];
const FRAME_ENTRIES = 256;

interface OutageResult {
  outageS: number;
  ratePerWriter: number;
  written: number;
  pendingUpdates: number;
  pendingBytes: number;
  /** From the heal until the first, and until every, link of the cut-off region is up. */
  firstUpMs: number | null;
  linkUpMs: number | null;
  convergeMs: number | null;
  catchUpMs: number | null;
  updatesPerS: number | null;
  mbPerS: number | null;
  probe: ProbeDelta | null;
}

interface RebuildResult {
  docs: number;
  writeRate: number;
  restartMs: number;
  rebuildMs: number | null;
  docsPerS: number | null;
  dbMiB: number;
  probe: ProbeDelta | null;
  timeoutS: number;
  /** Links closed because a peer was silent past the dead timeout, and catch-up-by-state rounds, during the rebuild. */
  linkDrops: number;
  stateRounds: number;
}

export interface ApplyFloor {
  entries: number;
  seconds: number;
  perS: number;
  mbPerS: number;
}

export async function catchUp(ctx: BenchContext): Promise<ScenarioResult> {
  const started = performance.now();
  const outageMs = ctx.quick ? 10_000 : 60_000;
  const rate = ctx.quick ? 200 : 300;
  const rebuildDocs = ctx.quick ? 5000 : 100_000;
  const outageDocs = ctx.quick ? 1000 : 5000;
  const latency = await runLatency(ctx);
  ctx.log('catch-up: starting three region processes');
  const bench = await BenchCluster.start({
    regions: REGIONS, workDir: ctx.dir('catchup'), profileDir: ctx.profileDir ? `${ctx.profileDir}/catchup` : null,
  });
  let outage: OutageResult;
  let rebuild: RebuildResult;
  let rebuildLatency: RebuildLatencyRun;
  try {
    await waitLinksUp(bench, 20_000);
    outage = await runOutage(ctx, bench, outageMs, rate, outageDocs);
    rebuild = await runRebuild(ctx, bench, rebuildDocs, 2 * outageDocs, ctx.quick ? 120_000 : 300_000);
    // With clients writing, a rebuild takes several times as long (3-7× in runs on two shared cores).
    rebuildLatency = await runRebuildLatency(ctx, bench, rebuild.docs, ctx.quick ? 120_000 : 600_000);
  } finally {
    await bench.stop();
  }
  ctx.log('catch-up: floors (in-process remote apply)');
  const outageFloor = await applyFloor(ctx, outage.written, outageDocs);
  // As many documents as the region rebuilt: reads and merges cost more per
  // document in a larger database (one-off: 6,986 documents/s at 100,000
  // against 8,041 at 20,000, the cap this floor had before).
  const rebuildFloor = await stateFloor(ctx, rebuild.docs);
  return {
    id: 'catchup',
    title: '3. Catch-up after an outage, and rebuilding a wiped region',
    setup:
      `Three region processes, default config (reconnect backoff 100 ms doubling to 10 s). (a) ${ISOLATED} is cut ` +
      `off (every link reset) for ${outageMs / 1000} s while ${WRITERS.join(' and ')} each take ${rate} PUTs/s over ` +
      `${outageDocs} documents each; writes stop at the heal. (b) ${rebuildDocs.toLocaleString('en-US')} documents are ` +
      `written at ap-south, then ${ISOLATED} is killed, its data directory deleted and the process restarted. ` +
      `Floors, in this process: (a) the same number of log entries applied through \`applyRemote\` in frames of ` +
      `${FRAME_ENTRIES}, each taken without waiting for those before it, up to a link's window of unacknowledged bytes, then the region digest settled; (b) each document's full state (as many documents as the region rebuilt), read as for a peer (\`stateForPeer\`), merged into a fresh region through \`applyState\`, 256 at once. ` +
      `(c) A fresh three-region cluster; every region takes ${latency.rate} PUTs/s of new documents (open loop, HTTP) for the ` +
      `whole run; after ${latency.warmUpS} s not counted (a fresh region compiles its hot paths then) and ${latency.steadyS} s of steady state ${ISOLATED} is cut off (every link) for ${latency.cutS} s while ` +
      'all keep writing, then healed; writes go on until 10 s after convergence. ' +
      `(d) After (b), on the same cluster: every region takes ${rebuildLatency.rate} PUTs/s of new documents; after ` +
      `${rebuildLatency.steadyS} s ${ISOLATED} is wiped again (killed, data directory deleted, restarted) while all keep writing; ` +
      'writes go on until 5 s after it is rebuilt.',
    tables: [
      ...tables(outage, rebuild, outageFloor, rebuildFloor), ...latencyTables(latency, outageFloor.perS),
      ...rebuildLatencyTables(rebuildLatency, rebuild.docs),
    ],
    notes: [
      'Times count from the heal. Links come back when the dialing peers\' reconnect backoff next fires; catch-up ms is first link up → equal digests and nothing pending anywhere, and updates/s and MB/s are over that window (an upper bound when it is shorter than the 25 ms polling).',
      'rebuild: the restarted region\'s commits and other transactions show whether it caught up through the log (commits) or by document state (one snapshot transaction per document); links dropped: "peer silent; closing link" in any region\'s log (an event loop blocked past the 5 s dead timeout); state rounds: catch-up-by-state rounds started.',
      '(c): latency counts from each write\'s scheduled send time; windows are by send time, in seconds from the heal. Steady: writes sent in the steady period before the cut. Catch-up: writes sent from the heal until convergence. Caught up: the cut-off region answered a `/v1/sync` held with `meridian-after` set to everything the other regions had acknowledged at the heal; peers hold its writes: the same the other way; converged: the later of the two. updates/s: missed updates over first link up → caught up (the cut-off region also applies live writes meanwhile); floor: the in-process `applyRemote` floor of (a). Peer polls: `/v1/sync` of each other region every 100 ms, counted from its first report of the link up after the heal to the end; longest silence: the largest `lastSeenMs` they reported for the cut-off region meanwhile (default config: suspect after 3 s, down after 5 s). Lost writes: acknowledged documents that some region does not list after the run. generator late: how late a request left this process against its schedule.',
      '(d): windows and latency as in (c), counted from the kill. The wiped region refuses connections while it restarts (its failed writes), then holds writes until it holds what a peer held when their link opened (see "Replication" in the README: `/readyz` answers 503 meanwhile, so clients write elsewhere), a write waiting only within the first second of the hold and refused with 503 past it, at once (refused or failed, with how long each took to fail; this load generator does not go to another region): first write acknowledged is when that hold ended, and its later writes are shown apart; the writes waiting then are released at once, and until the last of them is acknowledged (held writes drained) later writes queue behind them, so the writes sent after that are shown apart too. Rebuilt: it answered a `/v1/sync` held with `meridian-after` set to what the other regions had acknowledged at the kill. Gone with the disk: writes the wiped region acknowledged before the kill that no region holds (acknowledged locally, not yet replicated; see `meridian-replicas`). Links dropped and state rounds: as in (b), from the kill until 5 s after rebuilt.',
    ],
    data: { outage, rebuild, outageFloor, rebuildFloor, latency, rebuildLatency },
    seconds: (performance.now() - started) / 1000,
  };
}

/** Part (c), on a cluster of its own so that (a) and (b) start from the same state as before. */
async function runLatency(ctx: BenchContext): Promise<CatchUpLatencyResult> {
  const cutMs = ctx.quick ? 10_000 : 30_000;
  ctx.log('catch-up (c): starting three region processes');
  const bench = await BenchCluster.start({
    regions: REGIONS, workDir: ctx.dir('catchup-latency'),
    profileDir: ctx.profileDir ? `${ctx.profileDir}/catchup-latency` : null,
  });
  try {
    await waitLinksUp(bench, 20_000);
    ctx.log(`catch-up (c): 100 PUTs/s at every region; ${ISOLATED} cut off for ${cutMs / 1000} s, then healed`);
    const r = await measureCatchUpLatency(bench, {
      isolated: ISOLATED, rate: 100, warmUpMs: ctx.quick ? 5000 : WARM_UP_MS, steadyMs: ctx.quick ? 5000 : 10_000, cutMs, afterMs: 10_000, timeoutMs: 120_000,
    });
    const cut = r.regions.find((g) => g.region === ISOLATED);
    ctx.log(
      `catch-up (c): ${r.missed} updates missed; first link up ${r.firstUpMs} ms, converged ${r.convergedMs} ms after the heal ` +
        `(${r.updatesPerS} updates/s); ${ISOLATED} writes steady p99 ${cut?.steady.p99} ms, during catch-up p99 ` +
        `${cut?.catchUp.p99} max ${cut?.catchUp.max} ms; lost ${r.lost}${r.evidence ? ` (logs, status and missing ids kept in ${r.evidence})` : ''}`,
    );
    return r;
  } finally {
    await bench.stop();
  }
}

/** Part (d) and what the regions' logs show of it. */
type RebuildLatencyRun = RebuildLatencyResult & { events: { linkDrops: number; stateRounds: number } };

/** Part (d): (b) again, with every region taking writes throughout. */
async function runRebuildLatency(ctx: BenchContext, bench: BenchCluster, docs: number, timeoutMs: number): Promise<RebuildLatencyRun> {
  ctx.log(`rebuild (d): 100 PUTs/s at every region; ${ISOLATED} wiped again while they write`);
  const since = new Date().toISOString();
  const measured = await measureRebuildLatency(bench, { wiped: ISOLATED, rate: 100, steadyMs: ctx.quick ? 5000 : 10_000, afterMs: 5000, timeoutMs });
  const r = { ...measured, events: logEvents(bench, since) };
  const peers = r.regions.filter((g) => g.region !== ISOLATED).map((g) => `${g.region} p99 ${g.steady.p99} → ${g.catchUp.p99} ms`);
  ctx.log(
    `rebuild (d): ${docs} documents back after ${r.rebuiltMs} ms; first write at ${ISOLATED} acknowledged ${r.firstWriteMs} ms ` +
      `after the kill, then p99 ${r.afterFirstWrite.p99} ms (${r.afterDrained.p99} ms once the held writes drained at ${r.heldDrainedMs} ms); ` +
      `${r.refused.count} refused or failed (at most ${r.refused.max} ms each); ${peers.join(', ')}; lost ${r.lost}` +
      `${r.evidence ? ` (logs, status and missing ids kept in ${r.evidence})` : ''}; ` +
      `links dropped ${r.events.linkDrops} times, ${r.events.stateRounds} catch-up-by-state rounds started`,
  );
  return r;
}

async function runOutage(ctx: BenchContext, bench: BenchCluster, outageMs: number, rate: number, docs: number): Promise<OutageResult> {
  bench.cluster.isolate(ISOLATED);
  await sleep(500);
  ctx.log(`catch-up: ${ISOLATED} cut off; ${WRITERS.length} regions writing ${rate}/s each for ${outageMs / 1000} s`);
  const loads = await Promise.all(WRITERS.map((origin) => {
    let n = 0;
    const op: Operation = async () => {
      const i = n++;
      const r = await bench.client(origin).request(`/v1/docs/cu/${origin}-${i % docs}`, { method: 'PUT', body: `{"v":${i}}` });
      if (r.status !== 200) throw new Error(`HTTP ${r.status}`);
    };
    return openLoop({ rate, durationMs: outageMs, op });
  }));
  const written = loads.reduce((s, l) => s + l.ok, 0);
  let pendingUpdates = 0;
  let pendingBytes = 0;
  for (const w of WRITERS) {
    const peer = (await bench.sync(w)).peers.find((p) => p.region === ISOLATED);
    pendingUpdates = Math.max(pendingUpdates, peer?.outbound.pendingUpdates ?? 0);
    pendingBytes = Math.max(pendingBytes, peer?.outbound.pendingBytes ?? 0);
  }
  const before = await bench.probe(ISOLATED);
  const { firstUpMs, linkUpMs, convergeMs } = await healAndWatch(bench);
  const probe = probeDelta(before, await bench.probe(ISOLATED));
  const catchUpMs = firstUpMs !== null && convergeMs !== null ? convergeMs - firstUpMs : null;
  const ms = (x: number | null): number | null => (x === null ? null : round(x, 0));
  const result: OutageResult = {
    outageS: outageMs / 1000, ratePerWriter: rate, written, pendingUpdates, pendingBytes,
    firstUpMs: ms(firstUpMs), linkUpMs: ms(linkUpMs), convergeMs: ms(convergeMs), catchUpMs: ms(catchUpMs),
    updatesPerS: catchUpMs ? round((written / catchUpMs) * 1000, 0) : null,
    mbPerS: catchUpMs ? round(pendingBytes / 1e6 / (catchUpMs / 1000), 2) : null,
    probe,
  };
  ctx.log(`catch-up: ${written} writes pending (${round(pendingBytes / 1e6, 2)} MB); first link up after ${result.firstUpMs} ms, all after ${result.linkUpMs} ms, converged after ${result.convergeMs} ms`);
  return result;
}

/** Heals every link, then times the cut-off region's links coming back and the cluster converging. */
async function healAndWatch(bench: BenchCluster): Promise<{ firstUpMs: number | null; linkUpMs: number | null; convergeMs: number | null }> {
  const healed = performance.now();
  bench.cluster.heal();
  let firstUpMs: number | null = null;
  let linkUpMs: number | null = null;
  while (performance.now() - healed < 300_000) {
    const peers = (await bench.sync(ISOLATED)).peers;
    const now = performance.now() - healed;
    if (firstUpMs === null && peers.some((p) => p.state === 'up')) firstUpMs = now;
    if (linkUpMs === null && peers.every((p) => p.state === 'up')) linkUpMs = now;
    if (linkUpMs !== null && (await bench.converged())) return { firstUpMs, linkUpMs, convergeMs: performance.now() - healed };
    await sleep(linkUpMs === null ? 10 : 25);
  }
  return { firstUpMs, linkUpMs, convergeMs: null };
}

/** Counts, in every region's log since `since`, links dropped for silence and catch-up-by-state rounds. */
function logEvents(bench: BenchCluster, since: string): { linkDrops: number; stateRounds: number } {
  let linkDrops = 0;
  let stateRounds = 0;
  for (const r of bench.cluster.regions.values()) {
    for (const line of readFileSync(r.logPath, 'utf8').split('\n')) {
      const time = /"time":"([^"]+)"/.exec(line)?.[1];
      if (time === undefined || time < since) continue;
      if (line.includes('peer silent')) linkDrops++;
      if (line.includes('catching it up by state')) stateRounds++;
    }
  }
  return { linkDrops, stateRounds };
}

async function runRebuild(
  ctx: BenchContext, bench: BenchCluster, docs: number, earlierDocs: number, timeoutMs: number,
): Promise<RebuildResult> {
  ctx.log(`rebuild: writing ${docs} documents at ap-south`);
  const client = bench.client('ap-south');
  const op: Operation = async (i) => {
    const r = await client.request(`/v1/docs/rb/d${i}`, { method: 'PUT', body: `{"n":${i},"name":"document ${i}"}` });
    if (r.status !== 200) throw new Error(`HTTP ${r.status}`);
  };
  const load = await closedLoop({ clients: 32, durationMs: 3_600_000, maxRequests: docs, op });
  if (load.failed > 0) throw new Error(`rebuild: ${load.failed} writes failed: ${JSON.stringify(load.errors)}`);
  if ((await bench.waitConverged(600_000, 200)) === null) throw new Error('rebuild: regions did not converge before the wipe');
  ctx.log(`rebuild: wiping ${ISOLATED}`);
  const since = new Date().toISOString();
  const t0 = performance.now();
  await bench.cluster.wipe(ISOLATED);
  const restartMs = performance.now() - t0;
  const before = await bench.probe(ISOLATED);
  const waited = await bench.waitConverged(timeoutMs, 100);
  const events = logEvents(bench, since);
  const rebuildMs = waited === null ? null : performance.now() - t0;
  const probe = probeDelta(before, await bench.probe(ISOLATED));
  const total = docs + earlierDocs;
  const result: RebuildResult = {
    docs: total, writeRate: load.throughput, restartMs: round(restartMs, 0),
    rebuildMs: rebuildMs === null ? null : round(rebuildMs, 0),
    docsPerS: rebuildMs === null ? null : round((total / rebuildMs) * 1000, 0),
    dbMiB: round(folderBytes(bench.cluster.region(ISOLATED).dataDir) / 2 ** 20, 1),
    probe, timeoutS: timeoutMs / 1000, ...events,
  };
  ctx.log(
    result.rebuildMs === null
      ? `rebuild: NOT converged within ${timeoutMs / 1000} s; links dropped ${events.linkDrops} times, ${events.stateRounds} catch-up-by-state rounds started`
      : `rebuild: ${total} documents back after ${result.rebuildMs} ms (${result.docsPerS}/s); links dropped ${events.linkDrops} times`,
  );
  return result;
}

/** Writes `entries` PUTs over `docs` documents in one in-process region, then applies its log to a fresh one. */
export async function applyFloor(ctx: BenchContext, entries: number, docs: number): Promise<ApplyFloor> {
  const source = openFloorDocuments(ctx.dir('apply-src'));
  const target = openFloorDocuments(ctx.dir('apply-dst'));
  try {
    await closedLoop({
      clients: 64, durationMs: 3_600_000, maxRequests: entries,
      op: async (i) => {
        await source.documents.put(`cu/d${i % docs}` as DocKey, { v: i });
      },
    });
    let cursor = 0;
    let bytes = 0;
    let applied = 0;
    // Frames come as a link brings them after a heal: each is taken without
    // waiting for the ones before it to be applied, up to the link's window
    // of unacknowledged bytes, so that a backlog forms as it does in a region.
    const unapplied: { result: Promise<RemoteApplyResult>; bytes: number }[] = [];
    let unappliedBytes = 0;
    const t0 = performance.now();
    for (;;) {
      const page = source.store.readLog(cursor, FRAME_ENTRIES);
      if (page.length === 0) break;
      cursor = page[page.length - 1]!.lsn;
      const frame = page.map(({ origin, seq, doc, ts, update }) => ({ origin, seq, doc, ts, update }));
      const frameBytes = frame.reduce((n, e) => n + e.update.byteLength, 0);
      bytes += frameBytes;
      unapplied.push({ result: target.documents.applyRemote(frame, 'source' as RegionId), bytes: frameBytes });
      unappliedBytes += frameBytes;
      while (unappliedBytes > UNACKED_WINDOW_BYTES) {
        const oldest = unapplied.shift()!;
        applied += (await oldest.result).applied;
        unappliedBytes -= oldest.bytes;
      }
    }
    for (const frame of unapplied) applied += (await frame.result).applied;
    // Converged means equal digests: each changed document is digested once the backlog is in.
    target.documents.digests.regionDigest();
    const seconds = (performance.now() - t0) / 1000;
    return { entries: applied, seconds: round(seconds, 2), perS: round(applied / seconds, 0), mbPerS: round(bytes / 1e6 / seconds, 2) };
  } finally {
    await source.close();
    await target.close();
  }
}

/**
 * Writes `docs` documents in one in-process region, then merges each one's
 * full state into a fresh one through `applyState`, up to 256 at once (so
 * group commit can batch them), as a peer rebuilding by state would.
 */
export async function stateFloor(ctx: BenchContext, docs: number): Promise<ApplyFloor> {
  const source = openFloorDocuments(ctx.dir('state-src'));
  const target = openFloorDocuments(ctx.dir('state-dst'));
  try {
    const key = (i: number): DocKey => `rb/d${i}` as DocKey;
    await closedLoop({
      clients: 64, durationMs: 3_600_000, maxRequests: docs,
      op: async (i) => {
        await source.documents.put(key(i), { n: i, name: `document ${i}` });
      },
    });
    let bytes = 0;
    const t0 = performance.now();
    await closedLoop({
      clients: 256, durationMs: 3_600_000, maxRequests: docs,
      op: async (i) => {
        const update = source.documents.stateForPeer(key(i));
        if (!update) throw new Error(`floor source lacks ${key(i)}`);
        bytes += update.byteLength;
        await target.documents.applyState(key(i), update, 'source' as RegionId);
      },
    });
    const seconds = (performance.now() - t0) / 1000;
    return { entries: docs, seconds: round(seconds, 2), perS: round(docs / seconds, 0), mbPerS: round(bytes / 1e6 / seconds, 2) };
  } finally {
    await source.close();
    await target.close();
  }
}

function tables(o: OutageResult, r: RebuildResult, of: ApplyFloor, rf: ApplyFloor): Table[] {
  return [
    {
      title: `(a) ${o.outageS} s outage of one region`,
      columns: [
        'writes during outage', 'pending MB', 'first link up ms', 'all links up ms', 'converged ms', 'catch-up ms',
        'updates/s', 'MB/s', 'batch', 'floor updates/s', 'floor MB/s', 'rate / floor',
      ],
      rows: [[
        o.written, round(o.pendingBytes / 1e6, 2), o.firstUpMs, o.linkUpMs, o.convergeMs, o.catchUpMs, o.updatesPerS, o.mbPerS,
        o.probe?.meanBatch ?? null, of.perS, of.mbPerS, o.updatesPerS === null ? null : round(o.updatesPerS / of.perS, 2),
      ]],
    },
    {
      title: '(b) wiped region rebuilt from its peers',
      columns: [
        'documents', 'restart ms', 'rebuilt ms (from kill)', 'docs/s', 'DB MiB', 'commits', 'entries', 'other tx',
        'links dropped', 'state rounds', 'floor docs/s', 'rate / floor',
      ],
      rows: [[
        r.docs, r.restartMs, r.rebuildMs ?? `not within ${r.timeoutS} s`, r.docsPerS, r.dbMiB, r.probe?.commits ?? null,
        r.probe?.entries ?? null, r.probe?.otherTx ?? null, r.linkDrops, r.stateRounds, rf.perS,
        r.docsPerS === null ? null : round(r.docsPerS / rf.perS, 2),
      ]],
    },
  ];
}
