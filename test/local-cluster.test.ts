/**
 * The local cluster (behind `meridian sim`, `meridian verify` and these tests)
 * when another process on the host takes the port of one of its regions
 * while that region is down: it must never mistake that process for its
 * region, and two clusters on one host must never link up.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalCluster, freePort } from '../src/faults/cluster.js';
import { FAST_REPLICATION, http, startTestCluster, waitFor } from './helpers/cluster.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** An HTTP server on `port` that answers every request as a healthy eu-west would, and records what it was asked. */
async function squat(port: number): Promise<{ server: Server; asked: string[] }> {
  const asked: string[] = [];
  const server = createServer((req, res) => {
    asked.push(`${req.method} ${req.url}`);
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ status: 'ok', region: 'eu-west' }));
  });
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return { server, asked };
}

describe('local cluster', () => {
  it('starts a region whose port was taken while it was down on another port; its peer follows through the proxy', async () => {
    const c = await startTestCluster(['ap-south', 'eu-west']);
    cleanups.push(() => c.dispose());
    const taken = c.region('eu-west').port;
    await c.stopRegion('eu-west');
    const squatter = await squat(taken);

    await c.startRegion('eu-west');
    expect(c.region('eu-west').port).not.toBe(taken);
    expect((await http(`${c.url('ap-south')}/v1/docs/moved/one`, { method: 'PUT', body: { after: 'the move' } })).status).toBe(200);
    const seen = await waitFor('replicated to the moved region', async () => {
      const r = await http<{ after: string }>(`${c.url('eu-west')}/v1/docs/moved/one`);
      return r.status === 200 ? r.body : undefined;
    }, 20_000);
    expect(seen).toEqual({ after: 'the move' });
    expect(squatter.asked).toEqual([]);
  }, 60_000);

  it('refuses to take another process for a region whose fixed port it holds', async () => {
    const baseDir = mkdtempSync(join(tmpdir(), 'meridian-cluster-'));
    const ports = [await freePort(), await freePort()];
    const c = new LocalCluster({
      regions: [{ region: 'ap-south', port: ports[0]! }, { region: 'eu-west', port: ports[1]! }],
      baseDir, extra: FAST_REPLICATION,
    });
    cleanups.push(async () => {
      await c.stop(true);
      rmSync(baseDir, { recursive: true, force: true });
    });
    await c.start();
    await c.stopRegion('eu-west');
    await squat(ports[1]!);
    // The squatter answers /healthz as eu-west would; only the region's own word counts.
    await expect(c.startRegion('eu-west')).rejects.toThrow(/eu-west exited during start/);
  }, 60_000);

  it('never links regions of two clusters, even when one dials a port the other now holds', async () => {
    const a = await startTestCluster(['ap-south', 'eu-west']);
    cleanups.push(() => a.dispose());
    const b = await startTestCluster(['ap-south', 'eu-west']);
    cleanups.push(() => b.dispose());
    expect(a.secret).not.toBe(b.secret);

    // b's ap-south dials its eu-west through the link's proxy: send it to a's eu-west instead.
    const link = b.links.get('ap-south->eu-west')!;
    link.retarget(a.region('eu-west').port);
    link.setFault({ kind: 'down' });
    await b.kill('eu-west');
    link.heal();
    expect((await http(`${b.url('ap-south')}/v1/docs/crossed/one`, { method: 'PUT', body: { from: 'b' } })).status).toBe(200);

    const refused = await waitFor('a refuses the link', async () => {
      const r = await http<{ peers: { region: string; lastError: string | null }[] }>(`${a.url('eu-west')}/v1/sync`);
      return r.body.peers.find((p) => p.region === 'ap-south' && /proof/.test(p.lastError ?? ''))?.lastError;
    }, 20_000);
    expect(refused).toMatch(/bad proof/);
    expect((await http(`${a.url('eu-west')}/v1/docs/crossed/one`)).status).toBe(404);
  }, 60_000);
});
