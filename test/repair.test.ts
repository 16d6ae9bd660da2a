import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { http, startTestCluster, syncStatus, waitFor, waitForConvergence } from './helpers/cluster.js';

type Cluster = Awaited<ReturnType<typeof startTestCluster>>;
let cluster: Cluster | null = null;

afterEach(async () => {
  await cluster?.dispose();
  cluster = null;
});

describe('repair from peers', () => {
  it('detects a corrupted document by its checksum and repairs it from a peer', async () => {
    cluster = await startTestCluster(['ap-south', 'eu-west']);
    const c = cluster;
    const doc = { title: 'kept safe', tags: ['a', 'b'] };
    expect((await http(`${c.url('ap-south')}/v1/docs/vault/one`, { method: 'PUT', body: doc })).status).toBe(200);
    await waitForConvergence(c);
    const digest = (await syncStatus(c.url('eu-west'))).digest;
    await c.stopRegion('eu-west');

    // Flip bytes of every stored form of the document, leaving the checksums as they were.
    const db = new Database(join(c.region('eu-west').dataDir, 'meridian.db'));
    const flip = (b: Buffer) => Buffer.from(b.map((x, i) => (i > 2 ? x ^ 0x5a : x)));
    for (const row of db.prepare('SELECT doc, state FROM snapshots').all() as { doc: string; state: Buffer }[]) {
      db.prepare('UPDATE snapshots SET state = ? WHERE doc = ?').run(flip(row.state), row.doc);
    }
    for (const row of db.prepare('SELECT lsn, data FROM log').all() as { lsn: number; data: Buffer }[]) {
      db.prepare('UPDATE log SET data = ? WHERE lsn = ?').run(flip(row.data), row.lsn);
    }
    db.close();

    await c.startRegion('eu-west');
    // Reading loads the document: the corruption is found, never applied, and repaired by anti-entropy.
    const repaired = await waitFor('repaired from ap-south', async () => {
      const r = await http<typeof doc>(`${c.url('eu-west')}/v1/docs/vault/one`);
      return r.status === 200 && r.body.title === doc.title ? r.body : undefined;
    }, 30_000, 300);
    expect(repaired).toEqual(doc);
    await waitFor('digest restored', async () => (await syncStatus(c.url('eu-west'))).digest === digest, 20_000);
    const metrics = await http<string>(`${c.url('eu-west')}/metrics`);
    expect(String(metrics.body)).toMatch(/meridian_corrupt_entries_total\{[^}]*\} [1-9]/);
  }, 90_000);
});
