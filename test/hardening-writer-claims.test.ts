/**
 * A peer holding the cluster secret tells one region that it holds writes of
 * a third region's writer that the third never made. The first region takes
 * them (entries are relayed between regions by design, so a relayed entry
 * and a forged one look alike), and from then on claims more of the third
 * region's writer than the third holds, on every link to it. The third
 * changes writer, as a region restored from a backup does; a second such
 * claim soon after is refused, but only for `writerChangeIntervalMs`: the
 * two regions are never split for good, and nothing either of them
 * acknowledged is lost. Real region processes, real sockets.
 */
import * as Y from 'yjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DocKey, RegionId, WriterId } from '../src/ids.js';
import { http, startTestCluster, syncStatus, waitFor, waitForConvergence } from './helpers/cluster.js';
import { ImpostorLink } from './helpers/impostor.js';

const IMPOSTOR = 'ap-south' as RegionId;
const A = 'eu-west' as RegionId;
const C = 'us-east' as RegionId;
/** C's `replication.writerChangeIntervalMs`. */
const WRITER_CHANGE_MS = 4000;

type Cluster = Awaited<ReturnType<typeof startTestCluster>>;
let cluster: Cluster;

beforeAll(async () => {
  cluster = await startTestCluster([IMPOSTOR, A, C], {}, { [C]: { replication: { writerChangeIntervalMs: WRITER_CHANGE_MS } } });
  for (const r of [IMPOSTOR, A, C]) await http(`${cluster.url(r)}/v1/docs/claims/from-${r}`, { method: 'PUT', body: { by: r } });
  await waitForConvergence(cluster);
  await cluster.stopRegion(IMPOSTOR);
}, 120_000);

afterAll(async () => {
  await cluster?.dispose();
});

const writerOf = async (region: RegionId): Promise<WriterId> => (await syncStatus(cluster.url(region))).writer as WriterId;

/** `count` entries of `writer` from the next sequence number A does not hold on, sent to A by the impostor. */
async function forgeAtA(link: ImpostorLink, writer: WriterId, held: number, count: number, doc: string): Promise<void> {
  const forged = new Y.Doc();
  const entries = Array.from({ length: count }, (_, i) => {
    const sv = Y.encodeStateVector(forged);
    forged.getMap('m').set('forged', `${doc} ${i}`);
    return { origin: writer, seq: held + 1 + i, doc: `claims/${doc}` as DocKey, ts: Date.now(), update: Y.encodeStateAsUpdate(forged, sv) };
  });
  forged.destroy();
  link.send({ type: 'entries', entries });
  await waitFor(`A takes the forged ${doc}`, async () => ((await http(`${cluster.url(A)}/v1/docs/claims/${doc}`)).status === 200 ? true : undefined));
}

describe('a forged claim of a third region\'s writes', () => {
  it('makes that region change writer, at most once per interval, and never splits it from the region that took the claim', async () => {
    const a = cluster.url(A);
    const c = cluster.url(C);
    const link = await ImpostorLink.open(a, IMPOSTOR, A, cluster.secret);
    const theirs = (await link.next('sync-request')).vv;
    link.send({ type: 'sync-request', vv: theirs });
    link.keepAlive(theirs);

    const first = await writerOf(C);
    await forgeAtA(link, first, theirs.get(first) ?? 0, 1, 'forged-1');
    // A claims more of C's writer than C holds: C writes on as a new writer.
    const second = await waitFor('C changes writer', async () => {
      const w = await writerOf(C);
      return w !== first ? w : undefined;
    }, 20_000);
    const changedAt = performance.now();

    // Again, for the new writer, at once and far ahead of it: C refuses the
    // claim, and the link from A with it, until the interval has passed.
    await forgeAtA(link, second, 0, 50, 'forged-2');
    await waitFor('C refuses the second claim', async () => {
      const fromA = (await syncStatus(c)).peers.find((p) => p.region === A);
      return /writer changed within writerChangeIntervalMs/.test(fromA?.lastError ?? '') ? true : undefined;
    }, 20_000);
    expect(await writerOf(C)).toBe(second);
    // Writes are taken meanwhile at both. C's is numbered under the forged
    // ones (A drops its entry as held): anti-entropy brings it to A.
    const duringA = await http(`${a}/v1/docs/claims/during-a`, { method: 'PUT', body: { at: 'a' } });
    const duringC = await http(`${c}/v1/docs/claims/during-c`, { method: 'PUT', body: { at: 'c' } });
    expect([duringA.status, duringC.status]).toEqual([200, 200]);

    const third = await waitFor('C changes writer again once the interval has passed', async () => {
      const w = await writerOf(C);
      return w !== second ? w : undefined;
    }, 30_000);
    expect(performance.now() - changedAt).toBeGreaterThanOrEqual(WRITER_CHANGE_MS - 100);
    link.close();
    await link.closed;

    // The link is back, and what each acknowledged reaches the other.
    const after = await http(`${c}/v1/docs/claims/after-c`, { method: 'PUT', body: { at: 'c', writer: third } });
    expect(after.status).toBe(200);
    for (const doc of ['during-a', 'during-c', 'after-c']) {
      for (const region of [A, C]) {
        await waitFor(`${doc} at ${region}`, async () => ((await http(`${cluster.url(region)}/v1/docs/claims/${doc}`)).status === 200 ? true : undefined), 30_000);
      }
    }
    await waitFor('A and C converge', async () => {
      const [sa, sc] = await Promise.all([syncStatus(a), syncStatus(c)]);
      const linked = sa.peers.find((p) => p.region === C)?.state === 'up' && sc.peers.find((p) => p.region === A)?.state === 'up';
      return linked && sa.digest === sc.digest ? true : undefined;
    }, 60_000);
  }, 150_000);
});
