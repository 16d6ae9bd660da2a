/**
 * A document whose state is larger than the link's frame bound: it reaches
 * the other region from the log (each entry fits), but its whole state does
 * not fit a frame. Such a frame is not sent: the link stays up (the peer
 * would close it on the frame, at every round), the rest of a rebuild goes
 * through, and the peer's status says what to change. The sender's own bound
 * is larger here: the peer's, announced in the handshake, is the one that counts.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { http, startTestCluster, syncStatus, waitFor, waitForConvergence } from './helpers/cluster.js';

const A = 'ap-south';
const B = 'eu-west';
const FRAME = 256 * 1024;
const BOUNDS = {
  replication: { maxFrameBytes: FRAME, batchBytes: 64 * 1024 },
  limits: { yjsUpdateBytes: 128 * 1024, bodyBytes: 256 * 1024 },
  // Entries are collected as soon as both regions hold them: a rebuild then goes by state.
  storage: { logRetentionMs: 1, gcIntervalMs: 200, compactIntervalMs: 100 },
};

let cluster: Awaited<ReturnType<typeof startTestCluster>>;

beforeAll(async () => {
  cluster = await startTestCluster([A, B], BOUNDS, { [A]: { replication: { maxFrameBytes: 16 * FRAME } } });
}, 90_000);

afterAll(async () => {
  await cluster?.dispose();
});

async function unsent(url: string): Promise<number> {
  const body = String((await http<string>(`${url}/metrics`)).body);
  const line = body.split('\n').find((l) => l.startsWith('meridian_frames_unsent_total') && l.includes(`peer="${B}"`) && l.includes('reason="too_large"'));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

it('replicates a document larger than a frame from the log, and does not send its state: the link stays, lastError says why', async () => {
  const a = cluster.url(A);
  for (let i = 0; i < 4; i++) {
    const res = await http(`${a}/v1/docs/big/doc`, { method: 'PATCH', body: { [`part${i}`]: String(i).repeat(100_000) } });
    expect(res.status).toBe(200);
  }
  expect((await http(`${a}/v1/docs/small/doc`, { method: 'PUT', body: { n: 1 } })).status).toBe(200);
  await waitForConvergence(cluster);
  const big = await http<Record<string, string>>(`${cluster.url(B)}/v1/docs/big/doc`);
  expect(Object.keys(big.body).sort()).toEqual(['part0', 'part1', 'part2', 'part3']);

  // A's five entries collected: B can no longer get them from the log.
  await waitFor('the log collected at A', async () => (await counter(a, 'meridian_log_entries_collected_total')) >= 5, 30_000);
  await cluster.wipe(B);
  const b = cluster.url(B);
  await waitFor('the small document rebuilt at B', async () => (await http(`${b}/v1/docs/small/doc`)).status === 200, 30_000);
  await waitFor('the unsent state counted', async () => (await unsent(a)) >= 1, 30_000);
  const status = await syncStatus(a);
  const peer = status.peers.find((p) => p.region === B);
  expect(peer?.state).toBe('up');
  expect(peer?.lastError).toMatch(new RegExp(`doc-state of big/doc is \\d+ bytes, over the peer's replication\\.maxFrameBytes \\(${FRAME}\\): not sent`));
  expect((await http(`${b}/v1/docs/big/doc`)).status).toBe(404);
  // The link is not torn down round after round: no reconnect while rounds go by.
  const reconnects = async () => {
    const body = String((await http<string>(`${a}/metrics`)).body);
    const line = body.split('\n').find((l) => l.startsWith('meridian_peer_reconnects_total') && l.includes(`peer="${B}"`));
    return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
  };
  const before = await reconnects();
  const unsentBefore = await unsent(a);
  await waitFor('another round', async () => (await unsent(a)) > unsentBefore, 30_000);
  expect(await reconnects()).toBe(before);
  expect((await http(`${b}/healthz`)).status).toBe(200);
}, 120_000);

async function counter(url: string, name: string): Promise<number> {
  const body = String((await http<string>(`${url}/metrics`)).body);
  const line = body.split('\n').find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}
