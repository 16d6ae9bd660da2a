/**
 * A region that catches up after a partition counts nothing as pending at a
 * peer that already holds it: what a peer stated it holds (at link-up, in
 * its heartbeats, by sending the entries itself) counts as acknowledged as
 * soon as this region holds those entries too, not only at the peer's next
 * heartbeat. Real region processes behind fault proxies; heartbeats are made
 * slow so that none can stand in for that.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { FAST_REPLICATION, http, startTestCluster, waitFor } from './helpers/cluster.js';

const [A, B, C] = ['ap-south', 'eu-west', 'us-east'];
const HEARTBEAT_MS = 8000;
const WRITES = 300;

interface PeerView {
  region: string;
  state: string;
  outbound: { pendingUpdates: number };
}

describe('acknowledgements after a catch-up', () => {
  let c: Awaited<ReturnType<typeof startTestCluster>> | undefined;

  beforeAll(async () => {
    c = await startTestCluster([A, B, C], {
      replication: { ...FAST_REPLICATION.replication, heartbeatMs: HEARTBEAT_MS, deadAfterMs: 60_000, antiEntropyMs: 60_000 },
    });
  }, 120_000);

  afterAll(async () => {
    await c?.dispose();
  });

  const peers = async (region: string): Promise<PeerView[]> => (await http<{ peers: PeerView[] }>(`${c!.url(region)}/v1/sync`)).body.peers;

  test('a region that caught up reports nothing pending at peers that hold it, well within one heartbeat', async () => {
    await waitFor('every link of us-east up', async () => (await peers(C)).every((p) => p.state === 'up'), 60_000);
    c!.isolate(C);
    let token = '';
    for (let i = 0; i < WRITES; i++) {
      const put = await http<{ version: string }>(`${c!.url(A)}/v1/docs/held/d${i}`, { method: 'PUT', body: { i } });
      expect(put.status).toBe(200);
      token = put.body.version;
    }
    // eu-west holds what ap-south wrote before us-east hears of it.
    expect((await http(`${c!.url(B)}/v1/sync`, { headers: { 'meridian-after': token, 'meridian-wait-ms': '10000' } })).status).toBe(200);
    c!.heal();
    const held = await http(`${c!.url(C)}/v1/sync`, { headers: { 'meridian-after': token, 'meridian-wait-ms': '60000' }, timeoutMs: 65_000 });
    expect(held.status).toBe(200);
    // A link that comes back only now learns at once what its peer holds;
    // the case that matters is a link that was up before the catch-up ended.
    await waitFor('every link of us-east up again', async () => (await peers(C)).every((p) => p.state === 'up'), 60_000, 50);
    const caughtUp = Date.now();
    // Both peers stated (or showed, by sending the entries) that they hold
    // everything us-east received; their next heartbeats are seconds away.
    const settled = await waitFor('nothing pending at either peer of us-east', async () => {
      const now = await peers(C);
      return now.every((p) => p.outbound.pendingUpdates === 0) ? now : undefined;
    }, HEARTBEAT_MS, 50);
    expect(settled).toHaveLength(2);
    expect(Date.now() - caughtUp).toBeLessThan(HEARTBEAT_MS / 4);
  }, 180_000);
});
