/**
 * A peer holding the cluster secret that sends and never reads: every ping
 * it sends is answered with a pong, which would wait unsent on this region
 * without end. The region must close that link once more than its bound
 * waits for it (a full send buffer, one largest frame and 1 MiB), say why,
 * and keep serving; the peer links again once it reads.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { RegionId, VersionVector } from '../src/ids.js';
import { CHALLENGE_PATH, REPLICATE_PATH, createDialHeaders } from '../src/replication/handshake.js';
import { decodeFrame, encodeFrame } from '../src/replication/protocol.js';
import { http, startTestCluster, syncStatus, waitFor } from './helpers/cluster.js';

const STALLED = 'ap-south' as RegionId;
const TARGET = 'eu-west' as RegionId;
/** Small bounds, so that kernel socket buffers and this bound fill within seconds. */
const REPLICATION = { maxBufferedBytes: 16 * 1024, maxFrameBytes: 64 * 1024 };

let cluster: Awaited<ReturnType<typeof startTestCluster>>;
let target: string;

beforeAll(async () => {
  cluster = await startTestCluster([STALLED, TARGET], {}, { [TARGET]: { replication: REPLICATION } });
  target = cluster.url(TARGET);
  // The stalled peer takes the place of the real one, which would otherwise supersede its link.
  await cluster.stopRegion(STALLED);
}, 90_000);

afterAll(async () => {
  await cluster?.dispose();
});

/** Opens a link to the target as STALLED and returns the socket and the version vector the target states. */
async function openLink(): Promise<{ ws: WebSocket; vv: VersionVector }> {
  const { body } = await http<{ nonce: string }>(`${target}${CHALLENGE_PATH}`);
  const { headers } = createDialHeaders({ secret: cluster.secret, cluster: 'meridian-local', self: STALLED, peer: TARGET, serverNonce: body.nonce });
  const ws = new WebSocket(`${target.replace('http', 'ws')}${REPLICATE_PATH}`, { headers });
  const vv = await new Promise<VersionVector>((resolve, reject) => {
    ws.on('message', (data: Buffer) => {
      const frame = decodeFrame(new Uint8Array(data), 1 << 26);
      if (frame.type === 'sync-request') resolve(frame.vv);
    });
    ws.once('error', reject);
  });
  return { ws, vv };
}

async function backlogClosures(): Promise<number> {
  const metrics = (await http<string>(`${target}/metrics`)).body;
  const line = metrics.split('\n').find((l) => l.startsWith('meridian_frames_unsent_total') && l.includes('reason="backlog"'));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

it('closes the link to a peer that sends and never reads once its backlog passes the bound, says why, and keeps serving', async () => {
  const { ws, vv } = await openLink();
  ws.send(encodeFrame({ type: 'sync-request', vv }));
  // From here on nothing the target sends is read: pongs pile up in the kernel's buffers, then in the target's.
  ws.pause();
  let id = 0;
  const stop = Date.now() + 60_000;
  let closed = false;
  while (!closed && Date.now() < stop) {
    for (let i = 0; i < 5000; i++) ws.send(encodeFrame({ type: 'ping', id: ++id, sentAt: 1, vv, links: [], lagMs: 0 }));
    await new Promise((resolve) => setTimeout(resolve, 20));
    if (id % 50_000 === 0) closed = (await backlogClosures()) > 0;
  }
  expect(await backlogClosures()).toBe(1);
  const peer = (await syncStatus(target)).peers.find((p) => p.region === STALLED);
  expect(peer?.lastError).toMatch(/^peer reads nothing: \d+ bytes wait to be sent to it$/);
  ws.terminate();

  // The region still takes writes, and a peer that reads links again.
  const put = await http(`${target}/v1/docs/backlog/after`, { method: 'PUT', body: { ok: true } });
  expect(put.status).toBe(200);
  const again = await openLink();
  again.ws.send(encodeFrame({ type: 'sync-request', vv: again.vv }));
  await waitFor('the new link to be up', async () => (await syncStatus(target)).peers.find((p) => p.region === STALLED)?.state === 'up');
  expect((await syncStatus(target)).peers.find((p) => p.region === STALLED)?.lastError).toBeNull();
  again.ws.close(1000);
}, 90_000);
