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
  it('keeps every acknowledged write when the process is SIGKILLed under load', async () => {
    cluster = await startTestCluster(['solo']);
    const c = cluster;
    const url = c.url('solo');
    const acked: string[] = [];
    let stop = false;
    // Several concurrent clients, so that writes are grouped into shared commits.
    const clients = Array.from({ length: 8 }, (_, k) => (async () => {
      for (let i = 0; !stop; i++) {
        const id = `c${k}-${i}`;
        try {
          const res = await http(`${url}/v1/docs/crash/${id}`, { method: 'PUT', body: { k, i }, timeoutMs: 2000 });
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
  });
});
