import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  UnavailableError,
  createClient,
  type ClientOptions,
  type MeridianClient,
  type Staleness,
} from '../src/client/index.js';
import { startFaultProxy, type FaultProxy } from '../src/faults/proxy.js';
import { http, startTestCluster, syncStatus, waitFor, waitForConvergence } from './helpers/cluster.js';

type Cluster = Awaited<ReturnType<typeof startTestCluster>>;

const A = 'ap-south';
const B = 'eu-west';
const C = 'us-east';

let cluster: Cluster;
const clients: MeridianClient[] = [];
/** Latency proxies between the client and B and C, so that A is nearest, then B, then C. */
const proxies: FaultProxy[] = [];
const endpoints: { name: string; url: string }[] = [];

beforeAll(async () => {
  cluster = await startTestCluster([A, B, C]);
  endpoints.push({ name: A, url: cluster.url(A) });
  for (const [name, ms] of [[B, 40], [C, 80]] as const) {
    const proxy = await startFaultProxy({ upstreamHost: '127.0.0.1', upstreamPort: cluster.region(name).port, name: `client->${name}` });
    proxy.setFault({ kind: 'latency', ms });
    proxies.push(proxy);
    endpoints.push({ name, url: `http://127.0.0.1:${proxy.address().port}` });
  }
}, 60_000);

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  cluster.heal();
  for (const name of [A, B, C]) if (!cluster.region(name).proc) await cluster.startRegion(name);
  await Promise.all([A, B, C].map((name) => cluster.waitReady(name)));
});

afterAll(async () => {
  await Promise.all(proxies.map((p) => p.close()));
  await cluster.dispose();
});

/** A client that prefers A, then B, then C (by round-trip time; probes run rarely). */
async function client(extra: Partial<ClientOptions> = {}): Promise<MeridianClient> {
  const c = createClient({
    regions: endpoints,
    timeoutMs: 3000, waitMs: 300, probeIntervalMs: 60_000, ...extra,
  });
  clients.push(c);
  await c.ready();
  return c;
}

/**
 * The session's latest write stands at A alone: A's links are cut (fault
 * proxies), the write lands there, then A is SIGKILLed before it replicates.
 * Returns A's writer id.
 */
async function loseRegionHoldingWrite(c: MeridianClient, collection: string, id: string): Promise<string> {
  const writerA = (await syncStatus(cluster.url(A))).writer;
  cluster.isolate(A);
  await waitFor('A isolated', async () => (await syncStatus(cluster.url(A))).isolated);
  await c.put(collection, id, { at: 'A only' });
  expect(c.status().lastRegion).toBe(A);
  await cluster.kill(A);
  return writerA;
}

describe('a session stuck waiting for a lost region', () => {
  it('fails every later call, even on unrelated documents, until resetSession()', async () => {
    const c = await client();
    await loseRegionHoldingWrite(c, 'stuck', 'lost');
    expect((await http(`${cluster.url(B)}/v1/docs/stuck/lost`)).status).toBe(404);

    const refused = await c.put('unrelated', 'doc', { n: 1 }).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(UnavailableError);
    const reasons = Object.fromEntries((refused as UnavailableError).attempts.map((a) => [a.region, a.reason]));
    expect(reasons).toMatchObject({ [B]: 'lagging', [C]: 'lagging' });
    await expect(c.get('unrelated', 'other')).rejects.toBeInstanceOf(UnavailableError);

    const session = c.status().session;
    const dropped = c.resetSession();
    expect(dropped).toContain(session);
    expect(c.status().session).toBeNull();

    // Later calls proceed, and read-your-writes holds again for writes made from now on.
    await c.put('unrelated', 'doc', { n: 1 });
    expect(c.status().lastRegion).not.toBe(A);
    expect((await c.get('unrelated', 'doc'))?.value).toEqual({ n: 1 });
    // What was given up: the lost write is not visible while A is down...
    expect(await c.get('stuck', 'lost')).toBeNull();

    // ...and is not undone: it replicates once A returns, and a dropped token waits for it again.
    cluster.heal();
    await cluster.startRegion(A);
    await waitForConvergence(cluster);
    expect((await http(`${cluster.url(C)}/v1/docs/stuck/lost`)).body).toEqual({ at: 'A only' });
    const resumed = await client({ session: dropped[0] });
    expect((await resumed.get('stuck', 'lost'))?.value).toEqual({ at: 'A only' });
  }, 60_000);

  it('goes on from a region lacking the session\'s writes after staleAfterMs, reporting the staleness', async () => {
    const events: (Staleness | null)[] = [];
    const c = await client({ staleAfterMs: 1000, onStale: (s) => events.push(s) });
    await c.put('stale', 'shared', { v: 0 }, { replicas: 3 });
    const writerA = await loseRegionHoldingWrite(c, 'stale', 'shared');
    const lostSession = c.status().session;

    // Before the deadline the call fails as it always did.
    await expect(c.get('stale', 'shared')).rejects.toBeInstanceOf(UnavailableError);
    expect(c.status().stale).toBeNull();
    await new Promise((r) => setTimeout(r, 1100));

    const read = await c.get('stale', 'shared');
    expect(read?.value).toEqual({ v: 0 });
    expect(read?.stale?.behind).toContain(lostSession);
    expect(read?.stale?.missing[writerA]).toBeGreaterThanOrEqual(1);
    expect(c.status().stale).not.toBeNull();
    expect(events).toHaveLength(1);

    // Writes made meanwhile are read back: the new session keeps read-your-writes.
    await c.put('stale', 'meanwhile', { n: 1 });
    expect((await c.get('stale', 'meanwhile'))?.value).toEqual({ n: 1 });
    expect((await c.list('stale')).stale).toBeDefined();

    // Once a region has the writes set aside, results are whole again and include them.
    cluster.heal();
    await cluster.startRegion(A);
    await waitForConvergence(cluster);
    const whole = await c.get('stale', 'shared');
    expect(whole?.value).toEqual({ at: 'A only' });
    expect(whole?.stale).toBeUndefined();
    expect(c.status().stale).toBeNull();
    expect(events.at(-1)).toBeNull();
  }, 60_000);
});

describe('sync()', () => {
  it('returns /v1/sync of the nearest region, even while the session is stuck', async () => {
    const c = await client();
    const status = await c.sync();
    expect(status.region).toBe(A);
    expect(status.peers.map((p) => p.region).sort()).toEqual([B, C]);
    expect(typeof status.digest).toBe('string');

    await loseRegionHoldingWrite(c, 'sync', 'lost');
    const after = await c.sync();
    expect(after.region).toBe(B);
    expect(after.peers.find((p) => p.region === A)?.state).not.toBe('up');
  });
});
