/**
 * A wiped region holds its clients' writes until it holds what its peers
 * held: taken sooner, a write to a document it does not hold yet would be
 * concurrent with the document's older values and could lose to them.
 */
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { REBUILD_MARK_FILE } from '../src/rebuild-mark.js';
import { FAST_REPLICATION, http, startTestCluster, waitFor, waitForConvergence } from './helpers/cluster.js';

const A = 'ap-south';
const B = 'eu-west';
const C = 'us-east';
const DOCS = 60;
/** Writes held for up to 3 × deadAfterMs while the rebuild runs: long enough for one over a slow link on a loaded machine. */
const SLOW_HOLD = { replication: { ...FAST_REPLICATION.replication, deadAfterMs: 5000 } };

let cluster: Awaited<ReturnType<typeof startTestCluster>> | null = null;
afterEach(async () => {
  await cluster?.dispose();
  cluster = null;
});

/**
 * PUTs `{ v: 'new' }` to every document at `url`, each until it is
 * acknowledged (a held write is refused, 503): the last written first, so
 * that a write taken too soon meets a document the log has not brought yet.
 */
async function writeAll(url: string): Promise<void> {
  for (let i = DOCS - 1; i >= 0; i--) {
    for (;;) {
      const res = await http(`${url}/v1/docs/items/d${i}`, { method: 'PUT', body: { v: 'new' } });
      if (res.status === 200) break;
      expect(res.status).toBe(503);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

describe('a rebuilt region holds writes', () => {
  it('until it holds what the peer holding data held, when two regions are wiped together and link first', async () => {
    cluster = await startTestCluster([A, B, C], {}, { [B]: SLOW_HOLD, [C]: SLOW_HOLD });
    const c = cluster;
    for (let i = 0; i < DOCS; i++) {
      expect((await http(`${c.url(A)}/v1/docs/items/d${i}`, { method: 'PUT', body: { v: 'old', stale: true, pad: 'x'.repeat(200) } })).status).toBe(200);
    }
    await waitForConvergence(c);
    // A sends slowly: B and C, both empty, link to each other long before either holds A's documents.
    c.setFault({ kind: 'bandwidth', bytesPerSecond: 8_000 }, A);
    await Promise.all([c.kill(B), c.kill(C)]);
    for (const r of [B, C]) rmSync(c.region(r).dataDir, { recursive: true, force: true });
    await Promise.all([c.startRegion(B), c.startRegion(C)]);
    await writeAll(c.url(B));
    c.setFault({ kind: 'none' }, A);
    await waitForConvergence(c);
    // Every acknowledged write stands, whole, at every region.
    for (const r of [A, B, C]) {
      for (let i = 0; i < DOCS; i++) expect((await http(`${c.url(r)}/v1/docs/items/d${i}`)).body).toEqual({ v: 'new' });
    }
    expect(existsSync(join(c.region(B).dataDir, REBUILD_MARK_FILE))).toBe(false);
  });

  it('again after a restart in the middle of its rebuild, until it is over', async () => {
    cluster = await startTestCluster([A, B, C], {}, { [B]: SLOW_HOLD });
    const c = cluster;
    expect((await http(`${c.url(A)}/v1/docs/items/first`, { method: 'PUT', body: { v: 1 } })).status).toBe(200);
    await waitForConvergence(c);
    await c.stopRegion(B);
    // B stopped mid-rebuild: it holds something, its mark says the rebuild is not over, and it lacks these.
    for (let i = 0; i < DOCS; i++) {
      expect((await http(`${c.url(A)}/v1/docs/items/d${i}`, { method: 'PUT', body: { v: 'old', stale: true, pad: 'x'.repeat(200) } })).status).toBe(200);
    }
    writeFileSync(join(c.region(B).dataDir, REBUILD_MARK_FILE), '');
    c.setFault({ kind: 'bandwidth', bytesPerSecond: 4_000 }, B);
    await c.startRegion(B);
    // Without the mark it took writes as soon as a peer answered, before it held these documents.
    await writeAll(c.url(B));
    c.setFault({ kind: 'none' }, B);
    await waitForConvergence(c);
    for (const r of [A, B, C]) {
      for (let i = 0; i < DOCS; i++) expect((await http(`${c.url(r)}/v1/docs/items/d${i}`)).body).toEqual({ v: 'new' });
    }
    // Caught up, the mark is gone: the next restart takes writes once a peer answers.
    await waitFor('mark gone', async () => !existsSync(join(c.region(B).dataDir, REBUILD_MARK_FILE)), 10_000);
  });

  it('for its bound only while no peer holding data is up, and drops its mark once writes have replicated', async () => {
    cluster = await startTestCluster([A, B, C]);
    const c = cluster;
    expect((await http(`${c.url(C)}/v1/docs/items/kept`, { method: 'PUT', body: { v: 1 } })).status).toBe(200);
    await waitForConvergence(c);
    await c.stopRegion(C);
    await Promise.all([c.kill(A), c.kill(B)]);
    for (const r of [A, B]) rmSync(c.region(r).dataDir, { recursive: true, force: true });
    await Promise.all([c.startRegion(A), c.startRegion(B)]);
    // Linked to each other, both empty, C down: writes wait out the hold (3 x deadAfterMs), then are taken.
    await waitFor('a write taken', async () => (await http(`${c.url(A)}/v1/docs/items/fresh`, { method: 'PUT', body: { v: 2 } })).status === 200, 20_000);
    // Once the write has reached B, each holds what the other states it holds: the marks go.
    const marked = (r: string) => existsSync(join(c.region(r).dataDir, REBUILD_MARK_FILE));
    await waitFor('marks gone', async () => !marked(A) && !marked(B), 10_000);
    await c.startRegion(C);
    await waitForConvergence(c);
    for (const r of [A, B, C]) expect((await http(`${c.url(r)}/v1/docs/items/kept`)).body).toEqual({ v: 1 });
  });
});
