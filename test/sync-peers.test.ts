/**
 * `GET /v1/sync` shows what each peer's last heartbeat said: its region
 * digest and its own links, so one region sees the whole graph and whether
 * the regions truly agree. Real region processes behind fault proxies.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { http, startTestCluster, waitFor, waitForConvergence } from './helpers/cluster.js';

interface PeerView {
  region: string;
  state: string;
  digest: string | null;
  links: { region: string; state: string }[];
  reportAgeMs: number | null;
}
interface SyncView {
  region: string;
  digest: string;
  agree: boolean;
  peers: PeerView[];
}

describe('peers in /v1/sync', () => {
  let cluster: Awaited<ReturnType<typeof startTestCluster>> | undefined;

  beforeAll(async () => {
    cluster = await startTestCluster();
  }, 120_000);

  afterAll(async () => {
    await cluster?.dispose();
  });

  const sync = async (region: string): Promise<SyncView> => {
    const r = await http<SyncView>(`${cluster!.url(region)}/v1/sync`);
    expect(r.status).toBe(200);
    return r.body;
  };
  const peer = (s: SyncView, region: string): PeerView => {
    const p = s.peers.find((x) => x.region === region);
    if (!p) throw new Error(`${s.region} has no peer ${region}`);
    return p;
  };
  const reported = (s: SyncView, by: string, about: string): string | undefined =>
    peer(s, by).links.find((l) => l.region === about)?.state;

  test('after convergence every peer reports this digest and its links up, and the regions agree', async () => {
    await http(`${cluster!.url('ap-south')}/v1/docs/notes/a`, { method: 'PUT', body: { v: 1 } });
    const digest = await waitForConvergence(cluster!);
    const s = await waitFor('agreement at ap-south', async () => {
      const body = await sync('ap-south');
      return body.agree && body.digest === digest ? body : undefined;
    });
    for (const p of s.peers) {
      expect(p.digest).toBe(digest);
      expect(p.reportAgeMs).not.toBeNull();
      expect(p.reportAgeMs).toBeGreaterThanOrEqual(0);
      expect(p.links.map((l) => l.region).sort()).toEqual(['ap-south', 'eu-west', 'us-east'].filter((r) => r !== p.region));
      expect(p.links.every((l) => l.state === 'up')).toBe(true);
    }
  }, 60_000);

  test('a link between two other regions, cut, is reported down by both ends', async () => {
    const c = cluster!;
    c.setFault({ kind: 'down' }, 'eu-west', 'us-east');
    try {
      const s = await waitFor('eu-west and us-east report their link down', async () => {
        const body = await sync('ap-south');
        return reported(body, 'eu-west', 'us-east') === 'down' && reported(body, 'us-east', 'eu-west') === 'down' ? body : undefined;
      }, 30_000);
      // Their links to this region stay up, and this region's own view is unchanged.
      expect(reported(s, 'eu-west', 'ap-south')).toBe('up');
      expect(peer(s, 'eu-west').state).toBe('up');
      expect(peer(s, 'us-east').state).toBe('up');
    } finally {
      c.heal();
    }
    await waitFor('link reported up again', async () => {
      const body = await sync('ap-south');
      return reported(body, 'eu-west', 'us-east') === 'up' && reported(body, 'us-east', 'eu-west') === 'up';
    }, 30_000);
  }, 90_000);

  test('a cut-off region with writes has a digest its peers do not, until it heals', async () => {
    const c = cluster!;
    c.isolate('us-east');
    try {
      await waitFor('us-east isolated', async () => (await sync('us-east')).peers.every((p) => p.state === 'down'), 30_000);
      const written = await http(`${c.url('us-east')}/v1/docs/notes/cut-off`, { method: 'PUT', body: { v: 2 } });
      expect(written.status).toBeLessThan(300);
      const alone = await waitFor('us-east digest moved', async () => {
        const body = await sync('us-east');
        return body.peers.every((p) => p.digest !== null && p.digest !== body.digest) ? body : undefined;
      });
      expect(alone.agree).toBe(false);
      // The peers' last reports are kept, and age.
      for (const p of alone.peers) expect(p.reportAgeMs).toBeGreaterThan(0);
      const other = await sync('ap-south');
      expect(other.digest).not.toBe(alone.digest);
      expect(other.agree).toBe(false);
      expect(peer(other, 'us-east').state).toBe('down');
    } finally {
      c.heal();
    }
    const digest = await waitForConvergence(c);
    for (const region of ['ap-south', 'eu-west', 'us-east']) {
      await waitFor(`agreement at ${region}`, async () => {
        const body = await sync(region);
        return body.agree && body.digest === digest && body.peers.every((p) => p.digest === digest);
      }, 30_000);
    }
  }, 120_000);
});
