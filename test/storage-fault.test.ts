/**
 * A region whose store refuses commits (here another process holds the
 * database's write lock past the busy timeout; a full disk or an I/O error
 * fails the same way): writes are refused with a clear 503 and change
 * nothing, `/readyz` says why (and, while a commit waits, that it waits)
 * so that clients and load balancers go elsewhere, reads go on, and the region takes writes again on its own once
 * the store does.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { http, startTestCluster, waitFor } from './helpers/cluster.js';

type Cluster = Awaited<ReturnType<typeof startTestCluster>>;
let cluster: Cluster | null = null;

afterEach(async () => {
  await cluster?.dispose();
  cluster = null;
});

interface ErrorBody { error: string; message: string }
interface ReadyBody { ready: boolean; reason?: string }

describe('a store that refuses commits', () => {
  it('refuses writes with 503, answers /readyz 503 with the reason, serves reads, and recovers by itself', async () => {
    cluster = await startTestCluster(['solo']);
    const url = cluster.url('solo');
    expect((await http(`${url}/v1/docs/f/before`, { method: 'PUT', body: { n: 1 } })).status).toBe(200);
    expect((await http<ReadyBody>(`${url}/readyz`)).status).toBe(200);

    const other = new Database(join(cluster.region('solo').dataDir, 'meridian.db'));
    other.exec('BEGIN IMMEDIATE');
    try {
      // The writer thread waits out its busy timeout (5 s), then the commit fails.
      const refusing = http<ErrorBody>(`${url}/v1/docs/f/during`, { method: 'PUT', body: { n: 2 }, timeoutMs: 30_000 });
      // Meanwhile, past 2 s, the region says its commits wait for the disk.
      const stalled = await waitFor('/readyz to report the waiting commit', async () => {
        const r = await http<ReadyBody>(`${url}/readyz`, { timeoutMs: 30_000 });
        return r.status === 503 && r.body.reason?.startsWith('storage stalled') ? r.body : undefined;
      }, 20_000);
      expect(stalled.reason).toMatch(/^storage stalled: a commit has waited [2-9] s for the disk$/);
      const refused = await refusing;
      expect(refused.status).toBe(503);
      expect(refused.body.error).toBe('unavailable');
      expect(refused.body.message).toMatch(/storage refused the write .*retry, here or at another region/);

      const ready = await http<ReadyBody>(`${url}/readyz`, { timeoutMs: 30_000 });
      expect(ready.status).toBe(503);
      expect(ready.body.ready).toBe(false);
      expect(ready.body.reason).toMatch(/storage failing, writes refused: database is locked/);

      const read = await http(`${url}/v1/docs/f/before`, { timeoutMs: 30_000 });
      expect(read.status).toBe(200);
      expect(read.body).toEqual({ n: 1 });
      // The refused write changed nothing.
      expect((await http(`${url}/v1/docs/f/during`, { timeoutMs: 30_000 })).status).toBe(404);
      const metrics = await http<string>(`${url}/metrics`, { timeoutMs: 30_000 });
      expect(String(metrics.body)).toMatch(/meridian_commits_refused_total\{[^}]*\} [1-9]/);
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }

    expect((await http(`${url}/v1/docs/f/after`, { method: 'PUT', body: { n: 3 }, timeoutMs: 30_000 })).status).toBe(200);
    const ready = await http<ReadyBody>(`${url}/readyz`);
    expect(ready.status).toBe(200);
    expect(ready.body.ready).toBe(true);
  }, 90_000);

  it('keeps answering while the store is locked: no write waits for the disk on the event loop', async () => {
    cluster = await startTestCluster(['solo']);
    const url = cluster.url('solo');
    // Its digest is computed after the commit and, with no commit to carry
    // it, stored on its own about a second later: while the lock is held.
    expect((await http(`${url}/v1/docs/f/a`, { method: 'PUT', body: { n: 1 } })).status).toBe(200);
    const other = new Database(join(cluster.region('solo').dataDir, 'meridian.db'));
    other.exec('BEGIN IMMEDIATE');
    let slowest = 0;
    try {
      const until = Date.now() + 3000;
      while (Date.now() < until) {
        const began = performance.now();
        expect((await http(`${url}/healthz`, { timeoutMs: 30_000 })).status).toBe(200);
        expect((await http(`${url}/v1/docs/f/a`, { timeoutMs: 30_000 })).body).toEqual({ n: 1 });
        slowest = Math.max(slowest, performance.now() - began);
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
    // Waiting out the 5 s busy timeout on the event loop would hold these for seconds.
    expect(slowest).toBeLessThan(1000);
    expect((await http(`${url}/v1/docs/f/b`, { method: 'PUT', body: { n: 2 }, timeoutMs: 30_000 })).status).toBe(200);
  }, 90_000);
});
