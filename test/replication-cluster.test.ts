import { afterEach, describe, expect, it } from 'vitest';
import { FAST_REPLICATION, http, startTestCluster, syncStatus, waitFor, waitForConvergence } from './helpers/cluster.js';

type Cluster = Awaited<ReturnType<typeof startTestCluster>>;
let cluster: Cluster | null = null;

afterEach(async () => {
  await cluster?.dispose();
  cluster = null;
});

const A = 'ap-south';
const B = 'eu-west';
const C = 'us-east';

/** Writes in a loop at one region until stopped; returns what was acknowledged. */
function writer(url: string, tag: string) {
  let stop = false;
  // A request that timed out or lost its connection may still have been applied.
  const acked = { increments: 0, adds: [] as string[], unknown: [] as string[] };
  const done = (async () => {
    let i = 0;
    while (!stop) {
      i++;
      const element = `${tag}-${i}`;
      try {
        const res = await http(`${url}/v1/docs/counters/shared/ops`, {
          method: 'POST',
          body: { ops: [{ op: 'increment', path: ['n'], by: 1 }, { op: 'add', path: ['seen'], value: element }] },
          timeoutMs: 2000,
        });
        if (res.status === 200) {
          acked.increments++;
          acked.adds.push(element);
        }
      } catch {
        acked.unknown.push(element);
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  return { acked, stop: async () => { stop = true; await done; } };
}

describe('replication between three region processes', () => {
  it('converges after an isolated region heals, counting every acknowledged increment once', async () => {
    cluster = await startTestCluster();
    const c = cluster;
    const writers = [A, B, C].map((r) => writer(c.url(r), r));
    await new Promise((r) => setTimeout(r, 500));
    c.isolate(B);
    await waitFor('B isolated', async () => (await syncStatus(c.url(B))).isolated, 10_000);
    await new Promise((r) => setTimeout(r, 2500));
    c.heal();
    await new Promise((r) => setTimeout(r, 500));
    await Promise.all(writers.map((w) => w.stop()));
    await waitForConvergence(c);
    const total = writers.reduce((n, w) => n + w.acked.increments, 0);
    const adds = writers.flatMap((w) => w.acked.adds);
    const unknown = writers.flatMap((w) => w.acked.unknown);
    expect(total).toBeGreaterThan(30);
    for (const r of [A, B, C]) {
      const doc = await http<{ n: number; seen: string[] }>(`${c.url(r)}/v1/docs/counters/shared`);
      expect(doc.status).toBe(200);
      // Every acknowledged increment counted once; an unknown one at most once.
      expect(doc.body.n).toBeGreaterThanOrEqual(total);
      expect(doc.body.n).toBeLessThanOrEqual(total + unknown.length);
      const seen = new Set(doc.body.seen);
      for (const a of adds) expect(seen.has(a)).toBe(true);
      const attempted = new Set([...adds, ...unknown]);
      for (const s of seen) expect(attempted.has(s)).toBe(true);
      expect(doc.body.n).toBe(seen.size);
    }
  });

  it('relays through a third region when a direct link is cut, and reports the route', async () => {
    cluster = await startTestCluster();
    const c = cluster;
    await waitFor('links up', async () => (await syncStatus(c.url(A))).peers.every((p) => p.state === 'up'));
    c.setFault({ kind: 'down' }, A, B);
    await waitFor('route via C', async () => {
      const s = await syncStatus(c.url(A));
      return s.peers.find((p) => p.region === B)?.route === `via ${C}`;
    }, 15_000);
    const put = await http(`${c.url(A)}/v1/docs/notes/relayed`, { method: 'PUT', body: { from: A } });
    expect(put.status).toBe(200);
    await waitFor('B has A write', async () => (await http(`${c.url(B)}/v1/docs/notes/relayed`)).status === 200, 10_000);
    const statusB = await syncStatus(c.url(B));
    expect(statusB.peers.find((p) => p.region === A)?.state).toBe('down');
  });

  it('redials a cut peer once another region reaches it, not when its grown backoff runs out', async () => {
    cluster = await startTestCluster([A, B, C], {
      replication: { ...FAST_REPLICATION.replication, reconnectMinMs: 1000, reconnectMaxMs: 60_000 },
    });
    const c = cluster;
    const linkAC = async () => (await syncStatus(c.url(A))).peers.find((p) => p.region === C)?.state;
    await waitFor('links up', async () => (await syncStatus(c.url(A))).peers.every((p) => p.state === 'up'));
    // A dials C. While the link is cut A's redials fail and its backoff grows
    // to many seconds; B keeps telling A that it reaches C.
    c.setFault({ kind: 'down' }, A, C);
    await waitFor('A-C down', async () => (await linkAC()) === 'down', 10_000, 50);
    await new Promise((r) => setTimeout(r, 6000));
    c.heal();
    const healed = Date.now();
    await waitFor('A-C up again', async () => (await linkAC()) === 'up', 20_000, 50);
    // At most one early dial per 2 s, plus a heartbeat and the dial itself.
    expect(Date.now() - healed).toBeLessThan(4000);
  });

  it('redials a peer cut off moments ago several times a heartbeat, so a healed link is back within a fraction of one', async () => {
    // Two regions: no third one can tell A that B is reachable again.
    cluster = await startTestCluster([A, B], {
      replication: { ...FAST_REPLICATION.replication, heartbeatMs: 2000, deadAfterMs: 10_000, reconnectMinMs: 50, reconnectMaxMs: 10_000 },
    });
    const c = cluster;
    const link = async () => (await syncStatus(c.url(A))).peers.find((p) => p.region === B)?.state;
    const dials = () => c.linksOf(A, B)[0]!.stats().connectionsTotal;
    await waitFor('link up', async () => (await link()) === 'up');
    c.setFault({ kind: 'down' }, A, B);
    await waitFor('link down', async () => (await link()) === 'down', 10_000, 20);
    // By now the backoff has grown to its cap; every dial is refused.
    await new Promise((r) => setTimeout(r, 4000));
    const before = dials();
    await new Promise((r) => setTimeout(r, 3000));
    // At most heartbeatMs / 4 = 500 ms apart (about 11 in 3 s); once a
    // heartbeat would be about 3.
    expect(dials() - before).toBeGreaterThanOrEqual(6);
    c.heal();
    const healed = Date.now();
    await waitFor('link up again', async () => (await link()) === 'up', 10_000, 20);
    expect(Date.now() - healed).toBeLessThan(1500);
  });

  it('relays a write through the third region once the direct link to its origin is silent', async () => {
    // Anti-entropy only once a minute: the write must arrive as a relayed log entry.
    cluster = await startTestCluster([A, B, C], { replication: { ...FAST_REPLICATION.replication, antiEntropyMs: 60_000 } });
    const c = cluster;
    await waitFor('links up', async () => (await Promise.all([A, B, C].map((r) => syncStatus(c.url(r)))))
      .every((s) => s.peers.every((p) => p.state === 'up')));
    // Heartbeats have told every region how its peers' links are.
    await new Promise((r) => setTimeout(r, 500));
    await http(`${c.url(A)}/v1/docs/relay/before`, { method: 'PUT', body: { v: 1 } });
    await waitFor('B has the write from A', async () => (await http(`${c.url(B)}/v1/docs/relay/before`)).status === 200, 5000, 20);
    // A's bytes to B now vanish; C holds the next write but leaves it to A while B reports that link up.
    c.setFault({ kind: 'blackhole' }, A, B);
    await http(`${c.url(A)}/v1/docs/relay/during`, { method: 'PUT', body: { v: 2 } });
    await waitFor('C has it', async () => (await http(`${c.url(C)}/v1/docs/relay/during`)).status === 200, 5000, 20);
    const started = Date.now();
    await waitFor('B has it through C', async () => (await http<{ v: number }>(`${c.url(B)}/v1/docs/relay/during`)).body.v === 2, 10_000, 50);
    // Three missed heartbeats make the link suspect, B's next heartbeat tells C.
    expect(Date.now() - started).toBeLessThan(5000);
    c.heal();
    await waitForConvergence(c);
  });

  it('detects a black-holed link within a few heartbeats and recovers after heal', async () => {
    cluster = await startTestCluster();
    const c = cluster;
    await waitFor('links up', async () => (await syncStatus(c.url(A))).peers.every((p) => p.state === 'up'));
    c.setFault({ kind: 'blackhole' }, A, B);
    const started = Date.now();
    await waitFor('suspect or down', async () => {
      const p = (await syncStatus(c.url(A))).peers.find((x) => x.region === B);
      return p && p.state !== 'up';
    }, 5_000, 50);
    // heartbeatMs is 200: three missed heartbeats plus one interval of slack.
    expect(Date.now() - started).toBeLessThan(1500);
    c.heal();
    await waitFor('link back up', async () => {
      const p = (await syncStatus(c.url(A))).peers.find((x) => x.region === B);
      return p?.state === 'up';
    }, 15_000);
  });

  it('loses nothing acknowledged across SIGKILL and a SIGSTOP longer than the dead timeout', async () => {
    cluster = await startTestCluster();
    const c = cluster;
    const writers = [A, C].map((r) => writer(c.url(r), r));
    await new Promise((r) => setTimeout(r, 400));
    await c.kill(B);
    await new Promise((r) => setTimeout(r, 500));
    await c.startRegion(B);
    c.pause(A);
    await new Promise((r) => setTimeout(r, 2000));
    c.resume(A);
    await new Promise((r) => setTimeout(r, 300));
    await Promise.all(writers.map((w) => w.stop()));
    await waitForConvergence(c);
    const total = writers.reduce((n, w) => n + w.acked.increments, 0);
    const unknown = writers.reduce((n, w) => n + w.acked.unknown.length, 0);
    const values = new Set<number>();
    for (const r of [A, B, C]) {
      const doc = await http<{ n: number }>(`${c.url(r)}/v1/docs/counters/shared`);
      expect(doc.body.n).toBeGreaterThanOrEqual(total);
      expect(doc.body.n).toBeLessThanOrEqual(total + unknown);
      values.add(doc.body.n);
    }
    expect(values.size).toBe(1);
  });

  it('rebuilds a wiped region from its peers, and its new increments add to its old ones', async () => {
    cluster = await startTestCluster();
    const c = cluster;
    for (let i = 0; i < 20; i++) {
      await http(`${c.url(B)}/v1/docs/items/d${i}`, { method: 'PUT', body: { i } });
    }
    const inc = (url: string) =>
      http(`${url}/v1/docs/counters/k/ops`, { method: 'POST', body: { ops: [{ op: 'increment', path: ['n'], by: 5 }] } });
    expect((await inc(c.url(B))).status).toBe(200);
    await waitForConvergence(c);
    await c.wipe(B);
    await waitForConvergence(c);
    const list = await http<{ ids: string[] }>(`${c.url(B)}/v1/docs/items?limit=100`);
    expect(list.body.ids).toHaveLength(20);
    expect((await inc(c.url(B))).status).toBe(200);
    await waitForConvergence(c);
    for (const r of [A, B, C]) {
      expect((await http<{ n: number }>(`${c.url(r)}/v1/docs/counters/k`)).body.n).toBe(10);
    }
  });

  it('catches a wiped region up by state from one peer only, not from every peer', async () => {
    // B waits three of its heartbeats before deciding: short ones, so that it decides while A's round still runs.
    cluster = await startTestCluster(undefined, {}, { [B]: { replication: { ...FAST_REPLICATION.replication, heartbeatMs: 150 } } });
    const c = cluster;
    for (let i = 0; i < 20; i++) {
      expect((await http(`${c.url(A)}/v1/docs/items/d${i}`, { method: 'PUT', body: { i, pad: 'x'.repeat(20_000) } })).status).toBe(200);
    }
    await waitForConvergence(c);
    // Once compacted and acknowledged everywhere, the entries leave the logs: a wiped region needs state.
    const collected = async (r: string) => {
      const text = String((await http(`${c.url(r)}/metrics`)).body);
      return Number(/meridian_log_entries_collected_total\{[^}]*\} (\d+)/.exec(text)?.[1] ?? 0);
    };
    await waitFor('logs collected', async () => (await collected(A)) >= 20 && (await collected(B)) >= 20, 15_000);
    const { readFileSync } = await import('node:fs');
    const catchUps = (r: string) =>
      readFileSync(c.region(r).logPath, 'utf8').split('\n').filter((l) => l.includes('catching it up by state')).length;
    const before = { [A]: catchUps(A), [B]: catchUps(B) };
    // B's clients keep writing: A is always a few of B's writes behind, which
    // B's log still holds, so B leaves the state to A all the same.
    let writing = true;
    let written = 0;
    const writes = (async () => {
      while (writing) {
        expect((await http(`${c.url(B)}/v1/docs/live/b${written}`, { method: 'PUT', body: { written } })).status).toBe(200);
        written++;
      }
    })();
    await c.wipe(C);
    await waitFor('C rebuilt', async () => (await http<{ ids: string[] }>(`${c.url(C)}/v1/docs/items?limit=100`)).body.ids.length === 20, 30_000);
    await new Promise((r) => setTimeout(r, 2_000));
    writing = false;
    await writes;
    await waitForConvergence(c);
    expect((await http<{ ids: string[] }>(`${c.url(C)}/v1/docs/live?limit=1000`)).body.ids).toHaveLength(written);
    // A sorts first among the regions that reach C: it alone sends the state.
    expect(catchUps(A) - before[A]!).toBeGreaterThanOrEqual(1);
    expect(catchUps(B) - before[B]!).toBe(0);
  });

  it('writes on as a new writer when its data directory is restored from an older backup', async () => {
    cluster = await startTestCluster();
    const c = cluster;
    const inc = async () => {
      const res = await http(`${c.url(B)}/v1/docs/counters/backup/ops`, { method: 'POST', body: { ops: [{ op: 'increment', path: ['n'], by: 1 }] } });
      expect(res.status).toBe(200);
    };
    await inc();
    await waitForConvergence(c);
    await c.stopRegion(B);
    const { cpSync, rmSync } = await import('node:fs');
    const backup = `${c.region(B).dataDir}-backup`;
    cpSync(c.region(B).dataDir, backup, { recursive: true });
    await c.startRegion(B);
    // Writes open once a peer has answered; one sent sooner would be refused after a second.
    await c.waitReady(B);
    const writerBefore = (await syncStatus(c.url(B))).writer;
    await inc();
    await inc();
    await waitForConvergence(c);
    await c.stopRegion(B);
    rmSync(c.region(B).dataDir, { recursive: true, force: true });
    cpSync(backup, c.region(B).dataDir, { recursive: true });
    await c.startRegion(B);
    await c.waitReady(B);
    await inc();
    await waitForConvergence(c);
    // Every acknowledged increment counts, also the one made after the restore.
    for (const r of [A, B, C]) {
      expect((await http<{ n: number }>(`${c.url(r)}/v1/docs/counters/backup`)).body.n).toBe(4);
    }
    expect((await syncStatus(c.url(B))).writer).not.toBe(writerBefore);
  });

  it('serves read-your-writes with meridian-after, and quorum writes with meridian-replicas', async () => {
    cluster = await startTestCluster();
    const c = cluster;
    await waitFor('links up', async () => (await syncStatus(c.url(A))).peers.every((p) => p.state === 'up'));
    const put = await http<{ version: string }>(`${c.url(A)}/v1/docs/s/one`, {
      method: 'PUT', body: { v: 1 }, headers: { 'meridian-replicas': '3' },
    });
    expect(put.status).toBe(200);
    const read = await http<{ v: number }>(`${c.url(B)}/v1/docs/s/one`, { headers: { 'meridian-after': put.body.version } });
    expect(read.status).toBe(200);
    expect(read.body.v).toBe(1);
    const docSync = await http<{ latestLocal: { seq: number } | null; regions: { region: string; hasLatest: boolean }[] }>(
      `${c.url(A)}/v1/docs/s/one/sync`);
    expect(docSync.body.latestLocal?.seq).toBeGreaterThan(0);
    expect(docSync.body.regions.map((r) => r.hasLatest)).toEqual([true, true, true]);

    c.isolate(C);
    await waitFor('C isolated', async () => (await syncStatus(c.url(C))).isolated, 10_000);
    const put2 = await http<{ version: string }>(`${c.url(A)}/v1/docs/s/two`, { method: 'PUT', body: { v: 2 } });
    const lag = await http<{ error: string }>(`${c.url(C)}/v1/docs/s/two`, {
      headers: { 'meridian-after': put2.body.version, 'meridian-wait-ms': '300' },
    });
    expect(lag.status).toBe(503);
    expect(lag.body.error).toBe('lagging');
    const quorum = await http<{ error: string }>(`${c.url(C)}/v1/docs/s/three`, {
      method: 'PUT', body: { v: 3 }, headers: { 'meridian-replicas': '2', 'meridian-wait-ms': '300' },
    });
    expect(quorum.status).toBe(504);
    expect(quorum.body.error).toBe('quorum_timeout');
    expect((await http(`${c.url(C)}/v1/docs/s/three`)).status).toBe(200);
    // A write that changes nothing writes no entry: it is held where what it found is held, and C lacks A's put.
    await waitFor('B holds two', async () => (await http(`${c.url(B)}/v1/docs/s/two`)).status === 200);
    const unchanged = { method: 'PUT', body: { v: 2 }, headers: { 'meridian-replicas': '3', 'meridian-wait-ms': '300' } } as const;
    const waiting = await http<{ error: string }>(`${c.url(B)}/v1/docs/s/two`, unchanged);
    expect(waiting.status).toBe(504);
    expect(waiting.body.error).toBe('quorum_timeout');
    c.heal();
    await waitForConvergence(c);
    expect((await http(`${c.url(B)}/v1/docs/s/two`, { ...unchanged, headers: { 'meridian-replicas': '3' } })).status).toBe(200);
  });

  it('catches up by state after a partition outlived the log retention, in both directions', async () => {
    // Entries older than one second are dropped even if a peer lacks them.
    cluster = await startTestCluster(undefined, { storage: { logRetentionMs: 1000, gcIntervalMs: 200, compactIntervalMs: 100 } });
    const c = cluster;
    await waitFor('links up', async () => (await syncStatus(c.url(A))).peers.every((p) => p.state === 'up'));
    c.isolate(B);
    await waitFor('B isolated', async () => (await syncStatus(c.url(B))).isolated, 10_000);
    const inc = (url: string) =>
      http(`${url}/v1/docs/counters/both/ops`, { method: 'POST', body: { ops: [{ op: 'increment', path: ['n'], by: 1 }] } });
    for (let i = 0; i < 30; i++) {
      expect((await http(`${c.url(A)}/v1/docs/away/a${i}`, { method: 'PUT', body: { from: A, i } })).status).toBe(200);
      expect((await http(`${c.url(B)}/v1/docs/away/b${i}`, { method: 'PUT', body: { from: B, i } })).status).toBe(200);
      expect((await inc(c.url(A))).status).toBe(200);
      expect((await inc(c.url(B))).status).toBe(200);
    }
    await new Promise((r) => setTimeout(r, 2500));
    c.heal();
    await waitForConvergence(c, 40_000);
    for (const r of [A, B, C]) {
      expect((await http<{ ids: string[] }>(`${c.url(r)}/v1/docs/away?limit=1000`)).body.ids).toHaveLength(60);
      expect((await http<{ n: number }>(`${c.url(r)}/v1/docs/counters/both`)).body.n).toBe(60);
    }
    // The log could not serve the catch-up: it went by state.
    const { readFile } = await import('node:fs/promises');
    const logs = await Promise.all([A, B, C].map((r) => readFile(c.region(r).logPath, 'utf8')));
    expect(logs.join('\n')).toMatch(/catching it up by state/);
  });

  it('buffers nothing unbounded while a link is stalled, then catches up and collects its log', async () => {
    cluster = await startTestCluster();
    const c = cluster;
    await waitFor('links up', async () => (await syncStatus(c.url(A))).peers.every((p) => p.state === 'up'));
    c.setFault({ kind: 'stall' }, A, B);
    const blob = 'x'.repeat(20_000);
    for (let i = 0; i < 150; i += 10) {
      await Promise.all(Array.from({ length: 10 }, (_, k) =>
        http(`${c.url(A)}/v1/docs/big/d${i + k}`, { method: 'PUT', body: { blob, i: i + k } })));
    }
    const pending = (await syncStatus(c.url(A))).peers.find((p) => p.region === B)!.outbound;
    expect(pending.pendingBytes).toBeGreaterThan(1_000_000);
    // The writes wait in the log on disk, not in the sender's memory.
    const rss = Number(/VmRSS:\s+(\d+)/.exec(await readStatus(c.region(A).proc!.pid!))?.[1]) * 1024;
    expect(rss).toBeLessThan(400 * 1024 * 1024);
    c.heal();
    await waitForConvergence(c);
    expect((await http<{ ids: string[] }>(`${c.url(B)}/v1/docs/big?limit=1000`)).body.ids).toHaveLength(150);
    // Acknowledged everywhere and compacted: the entries leave the log.
    await waitFor('log collected', async () => {
      const metrics = await http<string>(`${c.url(A)}/metrics`);
      const m = /meridian_log_entries_collected_total\{[^}]*\} (\d+)/.exec(String(metrics.body));
      return m && Number(m[1]) >= 150;
    }, 20_000);
  });
});

async function readStatus(pid: number): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  return readFile(`/proc/${pid}/status`, 'utf8');
}
