/**
 * `GET /v1/docs/{c}/{id}/sync` against real region processes with one region
 * cut off by the fault proxy: the status counts only the document's own
 * updates, from every origin, and knows which region lacks them.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { http, startTestCluster, syncStatus, waitFor } from './helpers/cluster.js';

type Cluster = Awaited<ReturnType<typeof startTestCluster>>;
let cluster: Cluster | null = null;

afterEach(async () => {
  await cluster?.dispose();
  cluster = null;
});

const A = 'ap-south';
const B = 'eu-west';
const C = 'us-east';

interface DocSync {
  doc: string;
  deleted: boolean;
  latestLocal: { origin: string; seq: number } | null;
  latest: { origin: string; seq: number; ts: number }[];
  regions: { region: string; hasLatest: boolean; missingUpdates: number; missingUpdatesCapped: boolean; lagMs: number }[];
}

async function docSync(url: string, path: string): Promise<DocSync> {
  const r = await http<DocSync>(`${url}/v1/docs/${path}/sync`);
  if (r.status !== 200) throw new Error(`${path}/sync answered ${r.status}`);
  return r.body;
}

function regionOf(status: DocSync, region: string): DocSync['regions'][number] {
  const found = status.regions.find((r) => r.region === region);
  if (!found) throw new Error(`no ${region} in ${JSON.stringify(status)}`);
  return found;
}

async function put(url: string, path: string, body: unknown): Promise<void> {
  const r = await http(`${url}/v1/docs/${path}`, { method: 'PUT', body });
  expect(r.status).toBe(200);
}

describe('per-document sync status', () => {
  it('answers 404 for a document the region has never seen', async () => {
    cluster = await startTestCluster([A, B]);
    const r = await http<{ error: string }>(`${cluster.url(A)}/v1/docs/s/nothing-here/sync`);
    expect(r.status).toBe(404);
    expect(r.body.error).toBe('not_found');
  });

  it('counts the document\'s own updates from every origin that a partitioned region lacks, then its recovery', async () => {
    cluster = await startTestCluster();
    const c = cluster;
    await waitFor('links up', async () => (await syncStatus(c.url(A))).peers.every((p) => p.state === 'up'));
    c.isolate(C);
    await waitFor('C isolated', async () => (await syncStatus(c.url(C))).isolated, 15_000);

    // Two updates of x at A, one at B, and three of another document at A.
    await put(c.url(A), 's/x', { v: 1 });
    await put(c.url(A), 's/x', { v: 2 });
    for (let i = 0; i < 3; i++) await put(c.url(A), 's/other', { i });
    await waitFor('A\'s writes at B', async () => (await http(`${c.url(B)}/v1/docs/s/other`)).status === 200 &&
      (await http<{ v: number }>(`${c.url(B)}/v1/docs/s/x`)).body.v === 2);
    await put(c.url(B), 's/x', { v: 3 });

    // Both connected regions see the same: C lacks the three updates of x, B none.
    for (const viewer of [A, B]) {
      const status = await waitFor(`${viewer} knows every update of x`, async () => {
        const s = await docSync(c.url(viewer), 's/x');
        return s.latest.length === 2 && regionOf(s, viewer === A ? B : A).hasLatest ? s : undefined;
      });
      expect(status.regions[0]).toEqual({ region: viewer, hasLatest: true, missingUpdates: 0, missingUpdatesCapped: false, lagMs: 0 });
      expect(regionOf(status, C)).toMatchObject({ hasLatest: false, missingUpdates: 3, missingUpdatesCapped: false });
      expect(regionOf(status, C).lagMs).toBeGreaterThan(0);
      expect(status.deleted).toBe(false);
    }
    // The cut-off region has never seen x.
    expect((await http(`${c.url(C)}/v1/docs/s/x/sync`)).status).toBe(404);

    c.heal();
    const healed = await waitFor('C holds x', async () => {
      const s = await docSync(c.url(A), 's/x');
      return regionOf(s, C).hasLatest ? s : undefined;
    }, 30_000);
    expect(healed.regions.map((r) => r.missingUpdates)).toEqual([0, 0, 0]);
    expect(healed.regions.map((r) => r.lagMs)).toEqual([0, 0, 0]);
    const atC = await docSync(c.url(C), 's/x');
    expect(atC.regions[0]).toMatchObject({ region: C, hasLatest: true });
  });
});
