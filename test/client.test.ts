import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  OutcomeUnknownError,
  createClient,
  type ClientOptions,
  type MeridianClient,
  type Op,
  type RegionEndpoint,
} from '../src/client/index.js';
import { SessionVersion } from '../src/client/session.js';
import { startFaultProxy, type FaultProxy } from '../src/faults/proxy.js';
import { http, startTestCluster, syncStatus, waitFor, waitForConvergence } from './helpers/cluster.js';

type Cluster = Awaited<ReturnType<typeof startTestCluster>>;

const A = 'ap-south';
const B = 'eu-west';
const C = 'us-east';
const INCREMENT: Op = { op: 'increment', path: ['n'], by: 1 };

let cluster: Cluster;
/** One proxy per region between the client and the region's API, to add latency or lose answers. */
const proxies = new Map<string, FaultProxy>();
const clients: MeridianClient[] = [];

beforeAll(async () => {
  cluster = await startTestCluster([A, B, C]);
  for (const name of [A, B, C]) {
    const port = cluster.region(name).port;
    proxies.set(name, await startFaultProxy({ upstreamHost: '127.0.0.1', upstreamPort: port, name: `client->${name}` }));
  }
}, 60_000);

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  for (const proxy of proxies.values()) proxy.heal();
  cluster.heal();
  for (const name of [A, B, C]) if (!cluster.region(name).proc) await cluster.startRegion(name);
  // A restarted region is skipped by clients until it takes writes again.
  await Promise.all([A, B, C].map((name) => cluster.waitReady(name)));
});

afterAll(async () => {
  await Promise.all([...proxies.values()].map((p) => p.close()));
  await cluster.dispose();
});

function proxy(name: string): FaultProxy {
  const p = proxies.get(name);
  if (!p) throw new Error(`no proxy for ${name}`);
  return p;
}

/** The region as a client sees it: directly, or through its proxy with `latencyMs` each way. */
function endpoint(name: string, latencyMs?: number): RegionEndpoint {
  if (latencyMs === undefined) return { name, url: cluster.url(name) };
  const p = proxy(name);
  p.setFault(latencyMs > 0 ? { kind: 'latency', ms: latencyMs } : { kind: 'none' });
  return { name, url: `http://127.0.0.1:${p.address().port}` };
}

/** A client whose periodic probes do not run during the test unless asked for. */
async function client(regions: RegionEndpoint[], extra: Partial<ClientOptions> = {}): Promise<MeridianClient> {
  const c = createClient({ regions, timeoutMs: 3000, waitMs: 1000, probeIntervalMs: 60_000, ...extra });
  clients.push(c);
  await c.ready();
  return c;
}

async function readDirect(name: string, collection: string, id: string): Promise<{ status: number; body: unknown }> {
  return http(`${cluster.url(name)}/v1/docs/${collection}/${id}`);
}

/** Waits until `name` has a live replication link to every peer. */
async function linked(name: string): Promise<void> {
  await waitFor(`${name} linked`, async () => (await syncStatus(cluster.url(name))).peers.every((p) => p.state === 'up'));
}

describe('client SDK against three region processes', () => {
  it('routes requests to the nearest healthy region', async () => {
    const c = await client([endpoint(C, 50), endpoint(A), endpoint(B, 20)]);
    const status = c.status();
    expect(status.current).toBe(A);
    expect(status.regions.map((r) => r.name)).toEqual([A, B, C]);
    expect(status.regions.every((r) => r.healthy === true)).toBe(true);
    const [ra, rb, rc] = status.regions.map((r) => r.rttMs ?? Infinity);
    expect(ra).toBeLessThan(rb ?? 0);
    expect(rb).toBeLessThan(rc ?? 0);

    const before = [proxy(B).stats().bytesUpstream, proxy(C).stats().bytesUpstream];
    const version = await c.put('routing', 'doc', { n: 1 });
    expect(version).toMatch(/^v1\./);
    expect(c.status().lastRegion).toBe(A);
    expect(await c.get('routing', 'doc')).toEqual({ value: { n: 1 }, version: expect.any(String) });
    expect(c.status().lastRegion).toBe(A);
    // Nothing was sent to the farther regions.
    expect([proxy(B).stats().bytesUpstream, proxy(C).stats().bytesUpstream]).toEqual(before);
  });

  it('fails over when the current region dies and still reads its own writes', async () => {
    await linked(A);
    // Far enough apart that a probe of A slowed by a busy machine still finds it nearest.
    const c = await client([endpoint(A), endpoint(B, 40), endpoint(C, 60)], { replicas: 2 });
    // Concurrent writes: the session must cover all three, not only the last to answer.
    await Promise.all([
      c.put('failover', 'p', { kind: 'put' }),
      c.patch('failover', 'm', { kind: 'patch' }),
      c.ops('failover', 'o', [{ op: 'set', path: ['kind'], value: 'ops' }]),
    ]);
    expect(c.status().lastRegion).toBe(A);
    await cluster.kill(A);

    expect((await c.get('failover', 'p'))?.value).toEqual({ kind: 'put' });
    expect(c.status().lastRegion).not.toBe(A);
    expect((await c.get('failover', 'm'))?.value).toEqual({ kind: 'patch' });
    expect((await c.get('failover', 'o'))?.value).toEqual({ kind: 'ops' });
    expect(c.status().regions.find((r) => r.name === A)?.healthy).toBe(false);
    // Writes continue at the new region, and the session moves on with them.
    const session = c.status().session;
    await c.put('failover', 'after', { ok: true }, { replicas: 1 });
    expect(c.status().session).not.toBe(session);
    expect((await c.get('failover', 'after'))?.value).toEqual({ ok: true });
  });

  it('shows a region the tokens of writes made at once in one request, not one request each', async () => {
    const sent: { url: string; after: string | null }[] = [];
    const fetchCounting = (input: string, init: RequestInit): Promise<Response> => {
      if (input.includes('/v1/')) sent.push({ url: input, after: new Headers(init.headers).get('meridian-after') });
      return fetch(input, init);
    };
    const c = await client([endpoint(A)], { fetch: fetchCounting });
    await c.put('fold', 'first', { n: 0 });
    // Twenty writes at once: each answer but the first is to a request sent before the others were known.
    await Promise.all(Array.from({ length: 20 }, (_, i) => c.put('fold', `w${i}`, { n: i })));
    sent.length = 0;
    const read = await c.get('fold', 'w19');
    expect(read?.value).toEqual({ n: 19 });
    expect(sent).toHaveLength(1);
    expect(sent[0]!.after!.split(', ').length).toBeGreaterThan(1);
    // Its answer covers them all: the next request carries one token.
    sent.length = 0;
    await c.get('fold', 'w0');
    expect(sent).toHaveLength(1);
    expect(sent[0]!.after).not.toContain(',');
  });

  it('shows a region the tokens of writes made at once one at a time when they are more than one request may list', async () => {
    const sent: (string | null)[] = [];
    const fetchCounting = (input: string, init: RequestInit): Promise<Response> => {
      if (input.includes('/v1/')) sent.push(new Headers(init.headers).get('meridian-after'));
      return fetch(input, init);
    };
    const c = await client([endpoint(A)], { fetch: fetchCounting });
    await c.put('fold', 'first', { n: 0 });
    // More writes at once than a meridian-after list takes (64 tokens).
    await Promise.all(Array.from({ length: 80 }, (_, i) => c.put('fold', `m${i}`, { n: i })));
    sent.length = 0;
    const read = await c.get('fold', 'm79');
    expect(read?.value).toEqual({ n: 79 });
    expect(sent.length).toBeGreaterThan(1);
    expect(sent.every((after) => after !== null && !after.includes(','))).toBe(true);
    // Shown, they are folded into the session: the next call is one request again.
    sent.length = 0;
    await c.get('fold', 'm0');
    expect(sent).toHaveLength(1);
  });

  it('skips a region that lacks the session\'s writes (lagging) for one that has them', async () => {
    await linked(A);
    cluster.isolate(C);
    await waitFor('C isolated', async () => (await syncStatus(cluster.url(C))).isolated);
    // After A, C is nearer than B: without the session version the client would read C's stale state.
    const c = await client([endpoint(A), endpoint(C, 10), endpoint(B, 30)], { waitMs: 500 });
    await c.put('lagging', 'doc', { v: 1 }, { replicas: 2 });
    await cluster.kill(A);
    expect((await readDirect(C, 'lagging', 'doc')).status).toBe(404);

    const cBytes = proxy(C).stats().bytesUpstream;
    expect(await c.get('lagging', 'doc')).toMatchObject({ value: { v: 1 } });
    expect(c.status().lastRegion).toBe(B);
    // C was asked first and answered `lagging`: it stays healthy and first in line.
    expect(proxy(C).stats().bytesUpstream).toBeGreaterThan(cBytes);
    expect(c.status().current).toBe(C);
    expect(c.status().regions.find((r) => r.name === C)?.healthy).toBe(true);
  });

  it('reports an increment or a put whose answer was lost as outcome unknown, and sends neither to another region', async () => {
    const regions = [endpoint(A, 0), endpoint(B, 20), endpoint(C, 40)];
    const counting = await client(regions, { timeoutMs: 800 });
    const putting = await client(regions, { timeoutMs: 800 });
    proxy(A).setFault({ kind: 'blackhole', direction: 'downstream' });

    await expect(counting.ops('unknown', 'ctr', [INCREMENT])).rejects.toBeInstanceOf(OutcomeUnknownError);
    expect(counting.status().regions.find((r) => r.name === A)?.healthy).toBe(false);
    // A put in the same situation is sent once more to A, then reported as unknown too, and not sent to B:
    // there its copy would be concurrent with A's, which, arriving later, could undo the client's later writes
    // (a field set since, in a map each copy made anew).
    const sentElsewhere = () => proxy(B).stats().bytesUpstream + proxy(C).stats().bytesUpstream;
    const before = sentElsewhere();
    await expect(putting.put('unknown', 'doc', { a: { b: 1 } })).rejects.toBeInstanceOf(OutcomeUnknownError);
    expect(sentElsewhere()).toBe(before);

    // The lost increment was applied once at A, and nowhere else.
    expect((await readDirect(A, 'unknown', 'ctr')).body).toEqual({ n: 1 });
    proxy(A).heal();
    await waitForConvergence(cluster);
    for (const name of [A, B, C]) expect((await readDirect(name, 'unknown', 'ctr')).body).toEqual({ n: 1 });
    // Written again once A's copy has reached B, the later write stands.
    await putting.patch('unknown', 'doc', { a: { c: 2 } });
    await waitForConvergence(cluster);
    for (const name of [A, B, C]) expect((await readDirect(name, 'unknown', 'doc')).body).toEqual({ a: { b: 1, c: 2 } });
  }, 45_000);

  it('does not send a put elsewhere when its answer was lost and the region then refused it or could not be reached', async () => {
    const regions = [endpoint(A, 0), endpoint(B, 20), endpoint(C, 40)];
    const aUrl = regions[0]!.url;
    for (const second of ['refused', 'unavailable'] as const) {
      let putsAtA = 0;
      // The first PUT reaches A and is stored there, its answer lost; the second meets A refusing or gone.
      const fetchLosing: typeof fetch = async (input, init) => {
        const url = String(input instanceof Request ? input.url : input);
        if (!url.startsWith(aUrl) || init?.method !== 'PUT') return fetch(input, init);
        putsAtA++;
        if (putsAtA === 1) {
          await fetch(input, init);
          throw new TypeError('fetch failed', { cause: Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }) });
        }
        if (second === 'refused') throw new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) });
        return new Response(JSON.stringify({ error: 'unavailable', message: 'writes are held' }), { status: 503, headers: { 'content-type': 'application/json' } });
      };
      const c = await client(regions, { fetch: fetchLosing });
      const sentElsewhere = () => proxy(B).stats().bytesUpstream + proxy(C).stats().bytesUpstream;
      const before = sentElsewhere();
      await expect(c.put('twice', second, { a: { b: 1 } })).rejects.toBeInstanceOf(OutcomeUnknownError);
      expect(putsAtA).toBe(2);
      expect(sentElsewhere()).toBe(before);
      expect((await readDirect(A, 'twice', second)).body).toEqual({ a: { b: 1 } });
    }
  });

  it('retries an increment elsewhere when the connection was refused (nothing was sent)', async () => {
    const c = await client([endpoint(A), endpoint(B, 20), endpoint(C, 40)]);
    await cluster.kill(A);
    // Let the pooled connection to A see its close, so the next request must connect anew.
    await new Promise((r) => setTimeout(r, 200));
    await c.ops('refused', 'ctr', [INCREMENT]);
    expect(c.status().lastRegion).toBe(B);
    await cluster.startRegion(A);
    await waitForConvergence(cluster);
    for (const name of [A, B, C]) expect((await readDirect(name, 'refused', 'ctr')).body).toEqual({ n: 1 });
  });

  it('uses a region again once it answers probes after a restart', async () => {
    const c = await client([endpoint(A), endpoint(B, 10), endpoint(C, 30)], { probeIntervalMs: 200 });
    await c.put('recovery', 'doc', { v: 1 });
    expect(c.status().lastRegion).toBe(A);
    await cluster.kill(A);
    expect((await c.get('recovery', 'doc'))?.value).toEqual({ v: 1 });
    expect(c.status().lastRegion).toBe(B);
    expect(c.status().regions.find((r) => r.name === A)?.healthy).toBe(false);

    await cluster.startRegion(A);
    await waitFor('A healthy again', async () => c.status().regions.find((r) => r.name === A)?.healthy === true);
    // A just-started process answers its first probes slower (cold code, a loaded machine): the client
    // stays with B until A's round trip, sampled every 200 ms, is clearly the shorter one.
    await waitFor('A preferred again', async () => c.status().current === A, 10_000);
    expect((await c.get('recovery', 'doc'))?.value).toEqual({ v: 1 });
    expect(c.status().lastRegion).toBe(A);
  });
});

describe('session version', () => {
  it('keeps a concurrent write\'s token until a later request covers it', () => {
    const s = new SessionVersion();
    const first = s.begin();
    const second = s.begin();
    s.observe(first, 'v-first', true);
    // Sent before `v-first` was known: its answer need not cover it, so it cannot replace it.
    s.observe(second, 'v-second', true);
    expect(s.current).toBe('v-first');
    expect(s.unmerged).toEqual(['v-second']);

    const next = s.begin();
    expect(next).toMatchObject({ after: 'v-first', pending: ['v-second'] });
    s.observe(next, 'v-both', false);
    expect(s.current).toBe('v-both');
    expect(s.unmerged).toEqual([]);
  });

  it('sets its tokens aside and takes them back as pending', () => {
    const s = new SessionVersion('v-lost');
    s.observe(s.begin(), 'v-lost-2', true);
    s.observe({ after: 'v-old', pending: [], generation: -1 }, 'v-concurrent', true);
    expect(s.setAside()).toEqual(['v-lost-2', 'v-concurrent']);
    expect(s.begin()).toMatchObject({ after: null, pending: [] });
    s.observe(s.begin(), 'v-new', true);
    s.restore(['v-lost-2', 'v-concurrent']);
    expect(s.begin()).toMatchObject({ after: 'v-new', pending: ['v-lost-2', 'v-concurrent'] });
  });

  it('drops a stale read answer instead of going back', () => {
    const s = new SessionVersion('v-start');
    const read = s.begin();
    const write = s.begin();
    s.observe(write, 'v-write', true);
    s.observe(read, 'v-read', false);
    expect(s.current).toBe('v-write');
    expect(s.unmerged).toEqual([]);
  });
});
