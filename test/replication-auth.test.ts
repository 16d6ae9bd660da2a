import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { CloseCode } from '../src/contract.js';
import type { RegionId } from '../src/ids.js';
import { CHALLENGE_PATH, REPLICATE_PATH, createDialHeaders } from '../src/replication/handshake.js';
import { http, startTestCluster, syncStatus, waitFor } from './helpers/cluster.js';

type Cluster = Awaited<ReturnType<typeof startTestCluster>>;
let cluster: Cluster;
let target: string;

beforeAll(async () => {
  cluster = await startTestCluster(['ap-south', 'eu-west']);
  target = cluster.url('eu-west');
  await http(`${target}/v1/docs/guard/one`, { method: 'PUT', body: { keep: true } });
}, 60_000);

afterAll(async () => {
  await cluster.dispose();
});

async function challenge(): Promise<string> {
  const res = await http<{ nonce: string }>(`${target}${CHALLENGE_PATH}`);
  return res.body.nonce;
}

/** Tries an upgrade; resolves with the HTTP status of a refusal, or 101 and the open socket. */
function upgrade(headers: Record<string, string>): Promise<{ status: number; ws?: WebSocket; body?: string }> {
  const ws = new WebSocket(`${target.replace('http', 'ws')}${REPLICATE_PATH}`, { headers });
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ status: 101, ws }));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.once('error', reject);
  });
}

function dialHeaders(secret: string, self: string, serverNonce: string, cluster = 'meridian-local') {
  return createDialHeaders({ secret, cluster, self: self as RegionId, peer: 'eu-west' as RegionId, serverNonce }).headers;
}

describe('replication endpoint authentication', () => {
  it('refuses a dial without handshake headers', async () => {
    expect((await upgrade({})).status).toBe(400);
  });

  it('refuses a region that is not a configured peer', async () => {
    const res = await upgrade(dialHeaders(cluster.secret, 'mars', await challenge()));
    expect(res.status).toBe(403);
    expect(res.body).toMatch(/not a configured peer/);
  });

  it('refuses a wrong secret, and shows it in the status of the claimed peer', async () => {
    const res = await upgrade(dialHeaders('not-the-secret', 'ap-south', await challenge()));
    expect(res.status).toBe(401);
    const status = await syncStatus(target);
    expect(status.peers.find((p) => p.region === 'ap-south')?.lastError).toMatch(/refused/);
  });

  it('refuses another cluster', async () => {
    expect((await upgrade(dialHeaders(cluster.secret, 'ap-south', await challenge(), 'other-cluster'))).status).toBe(403);
  });

  it('refuses a link in the name of a peer this region dials itself, and keeps its own link', async () => {
    const dialer = cluster.url('ap-south');
    const { nonce } = (await http<{ nonce: string }>(`${dialer}${CHALLENGE_PATH}`)).body;
    const headers = createDialHeaders({ secret: cluster.secret, cluster: 'meridian-local', self: 'eu-west' as RegionId, peer: 'ap-south' as RegionId, serverNonce: nonce }).headers;
    const ws = new WebSocket(`${dialer.replace('http', 'ws')}${REPLICATE_PATH}`, { headers });
    const status = await new Promise<number>((resolve, reject) => {
      ws.once('open', () => resolve(101));
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.once('error', reject);
    });
    ws.terminate();
    expect(status).toBe(409);
    expect((await syncStatus(dialer)).peers.find((p) => p.region === 'eu-west')?.state).toBe('up');
  });

  it('refuses a replayed handshake', async () => {
    const headers = dialHeaders(cluster.secret, 'ap-south', await challenge());
    const first = await upgrade(headers);
    expect(first.status).toBe(101);
    first.ws?.close();
    const replay = await upgrade(headers);
    expect(replay.status).toBe(401);
  });

  it('closes a link that sends random bytes, changes nothing, and keeps serving', async () => {
    const before = (await syncStatus(target)).digest;
    // The real ap-south redials and supersedes the impostor's link (4409),
    // at times before its bytes are read: then the impostor dials again.
    let code: number = CloseCode.Superseded;
    for (let attempt = 0; attempt < 5 && code === CloseCode.Superseded; attempt++) {
      const res = await upgrade(dialHeaders(cluster.secret, 'ap-south', await challenge()));
      expect(res.status).toBe(101);
      const ws = res.ws!;
      const closed = new Promise<number>((resolve) => ws.once('close', (c) => resolve(c)));
      ws.send(randomBytes(512));
      code = await closed;
    }
    expect(code).toBe(4400);
    expect((await http(`${target}/healthz`)).status).toBe(200);
    expect((await http<{ keep: boolean }>(`${target}/v1/docs/guard/one`)).body).toEqual({ keep: true });
    expect((await syncStatus(target)).digest).toBe(before);
    // The real peer's link comes back after the impostor's was dropped.
    await waitFor('real link restored', async () => (await syncStatus(target)).peers[0]?.state === 'up', 15_000);
  });
});
