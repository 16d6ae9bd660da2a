import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { http, startTestCluster } from './helpers/cluster.js';

type Cluster = Awaited<ReturnType<typeof startTestCluster>>;
let cluster: Cluster | null = null;

afterEach(async () => {
  await cluster?.dispose();
  cluster = null;
});

describe('crash durability', () => {
  // Group commits run on the writer thread: with many clients and larger
  // bodies each batch is large, and the kill lands while the thread holds one.
  it.each([
    { what: 'under load', clients: 8, padding: 0 },
    { what: 'while the writer thread holds a large batch', clients: 64, padding: 4096 },
  ])('keeps every acknowledged write when the process is SIGKILLed $what', async ({ clients: count, padding }) => {
    cluster = await startTestCluster(['solo']);
    const c = cluster;
    const url = c.url('solo');
    const acked: string[] = [];
    let stop = false;
    const pad = 'x'.repeat(padding);
    // Several concurrent clients, so that writes are grouped into shared commits.
    const clients = Array.from({ length: count }, (_, k) => (async () => {
      for (let i = 0; !stop; i++) {
        const id = `c${k}-${i}`;
        try {
          const res = await http(`${url}/v1/docs/crash/${id}`, { method: 'PUT', body: { k, i, pad }, timeoutMs: 2000 });
          if (res.status === 200) acked.push(id);
        } catch {
          return; // the process died under this request: its outcome is unknown
        }
      }
    })());
    // Let the load build up, then kill at a random moment within it.
    const deadline = Date.now() + 20_000;
    while (acked.length < 50 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 300)));
    await c.kill('solo');
    stop = true;
    await Promise.all(clients);
    expect(acked.length).toBeGreaterThan(20);

    const db = new Database(join(c.region('solo').dataDir, 'meridian.db'));
    expect(db.pragma('quick_check', { simple: true })).toBe('ok');
    db.close();

    await c.startRegion('solo');
    const missing: string[] = [];
    for (const id of acked) {
      const res = await http(`${url}/v1/docs/crash/${id}`);
      if (res.status !== 200) missing.push(id);
    }
    expect(missing).toEqual([]);
    // The region writes on after the crash: its sequence numbers and version are sound.
    expect((await http(`${url}/v1/docs/crash/after`, { method: 'PUT', body: { after: true } })).status).toBe(200);
  });
});

describe('crash durability while compacting', () => {
  // Compaction every 10 ms after a single entry, and GC every 20 ms: the
  // writer thread is forever writing snapshot batches of a few hot documents
  // (and collecting the entries they cover) between the group commits, so
  // the kill lands while it holds batches that include snapshots.
  it('keeps every acknowledged field of documents compacted and collected as they grow, when SIGKILLed', async () => {
    const storage = { compactIntervalMs: 10, compactAfterEntries: 1, gcIntervalMs: 20 };
    cluster = await startTestCluster(['solo'], { storage });
    const c = cluster;
    const url = c.url('solo');
    const hot = (k: number): string => `${url}/v1/docs/crash/hot${k % 4}`;
    const acked: { k: number; field: string }[] = [];
    let stop = false;
    const pad = 'y'.repeat(512);
    const clients = Array.from({ length: 8 }, (_, k) => (async () => {
      for (let i = 0; !stop; i++) {
        const field = `c${k}_${i}`;
        try {
          const res = await http(hot(k), { method: 'PATCH', body: { [field]: pad }, timeoutMs: 2000 });
          if (res.status === 200) acked.push({ k, field });
        } catch {
          return; // the process died under this request: its outcome is unknown
        }
      }
    })());
    const deadline = Date.now() + 20_000;
    while (acked.length < 200 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 300)));
    await c.kill('solo');
    stop = true;
    await Promise.all(clients);
    expect(acked.length).toBeGreaterThan(100);

    const db = new Database(join(c.region('solo').dataDir, 'meridian.db'));
    expect(db.pragma('quick_check', { simple: true })).toBe('ok');
    // Compaction did run: the documents have snapshots, and GC dropped entries they cover.
    expect((db.prepare('SELECT count(*) AS n FROM snapshots').get() as { n: number }).n).toBeGreaterThan(0);
    db.close();

    await c.startRegion('solo');
    const missing: string[] = [];
    for (let k = 0; k < 4; k++) {
      const res = await http(hot(k));
      expect(res.status).toBe(200);
      const value = res.body as Record<string, unknown>;
      for (const a of acked) if (a.k % 4 === k && value[a.field] !== pad) missing.push(a.field);
    }
    expect(missing).toEqual([]);
  });
});
