/**
 * A wiped region that one peer rebuilds by state still gets the other peer's
 * later writes from that peer. The other peer's stream skips its own entries
 * as beyond what the wiped region holds (its early ones are gone from the
 * log) and leaves the catch-up to the first region by name; the wiped region
 * learns the round's floor from that region and says so to the other peer
 * only in heartbeats. Those must be enough for the stream to go on. Real
 * region processes behind fault proxies.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { http, startTestCluster, waitFor, waitForConvergence } from './helpers/cluster.js';

const [A, B, C] = ['ap-south', 'eu-west', 'us-east'];

describe('rebuild by state beside a peer whose log lacks the start', () => {
  let c: Awaited<ReturnType<typeof startTestCluster>> | undefined;

  beforeAll(async () => {
    c = await startTestCluster([A, B, C]);
  }, 120_000);

  afterAll(async () => {
    await c?.dispose();
  });

  test('the wiped region gets every later write of the peer that left its rebuild to another', async () => {
    await waitFor('links up', async () => {
      const s = await http<{ peers: { state: string }[] }>(`${c!.url(C)}/v1/sync`);
      return s.body.peers.every((p) => p.state === 'up');
    }, 60_000);
    for (let i = 0; i < 40; i++) expect((await http(`${c!.url(B)}/v1/docs/gap/early${i}`, { method: 'PUT', body: { i } })).status).toBe(200);
    await waitForConvergence(c!);
    // Acknowledged everywhere and compacted: the log collector removes them.
    await new Promise((r) => setTimeout(r, 3000));
    await c!.wipe(C);
    let last = '';
    const writing = (async () => {
      for (let i = 0; i < 60; i++) {
        const put = await http<{ version: string }>(`${c!.url(B)}/v1/docs/gap/late${i}`, { method: 'PUT', body: { i } });
        expect(put.status).toBe(200);
        last = put.body.version;
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    await writing;
    const got = await http(`${c!.url(C)}/v1/docs/gap/late59`, { headers: { 'meridian-after': last, 'meridian-wait-ms': '20000' }, timeoutMs: 25_000 });
    expect(got.status).toBe(200);
    await waitForConvergence(c!);
  }, 180_000);
});
