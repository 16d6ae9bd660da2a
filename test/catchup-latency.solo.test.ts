/**
 * A region catching up after a heal keeps serving its own clients.
 * Three region processes take 100 writes/s each for the whole test; one is
 * cut off from every link for 10 s while all keep writing, then healed. The
 * bound is a generous one (no local write slower than 1 s while
 * the region catches up), so only a real stall fails it; the benchmark
 * (`npm run bench -- --only catchup`) reports the figures. The file name
 * ends in `.solo.test.ts`: `npm test` runs it on its own, after the rest,
 * so that the bound measures the region and not the other test files.
 */
import { Agent, request } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import type { VersionVector } from '../src/ids.js';
import { decodeVersion, encodeVersion } from '../src/docs/token.js';
import { AFTER_HEADER, WAIT_HEADER } from '../src/api/session.js';
import { merged, missingCount } from '../src/vv.js';
import { http, startTestCluster, syncStatus, waitFor, waitForConvergence } from './helpers/cluster.js';

type Cluster = Awaited<ReturnType<typeof startTestCluster>>;
let cluster: Cluster | null = null;

afterEach(async () => {
  await cluster?.dispose();
  cluster = null;
});

const REGIONS = ['ap-south', 'eu-west', 'us-east'];
const CUT = 'us-east';
const RATE = 100;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Write {
  dueAt: number;
  ms: number;
  ok: boolean;
}

/**
 * Open-loop PUTs of fresh documents at `RATE`/s to one region, over
 * keep-alive sockets (node:http costs far less CPU than fetch, and the
 * generator shares two cores with three regions). Latency counts from each
 * write's scheduled time, so a stalled region cannot hide behind writes not
 * yet sent.
 */
function writeLoad(url: string, region: string) {
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  const { hostname, port } = new URL(url);
  const writes: Write[] = [];
  const ids = new Set<string>();
  let vv: VersionVector = new Map();
  const put = (i: number): Promise<void> => new Promise((resolve, reject) => {
    const req = request({ host: hostname, port, path: `/v1/docs/cl/${region}-${i}`, method: 'PUT', agent, headers: { 'content-type': 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}`));
        vv = merged(vv, decodeVersion((JSON.parse(Buffer.concat(chunks).toString()) as { version: string }).version));
        ids.add(`${region}-${i}`);
        resolve();
      });
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(`{"i":${i}}`);
  });
  const start = performance.now();
  const running = new Set<Promise<void>>();
  let next = 0;
  const timer = setInterval(() => {
    for (const due = (performance.now() - start) / (1000 / RATE); next < due; next++) {
      const dueAt = start + (next * 1000) / RATE;
      const p: Promise<void> = put(next).then(() => true, () => false)
        .then((ok) => void writes.push({ dueAt, ms: performance.now() - dueAt, ok }))
        .finally(() => running.delete(p));
      running.add(p);
    }
  }, 10);
  return {
    writes, ids, version: () => vv,
    stop: async () => {
      clearInterval(timer);
      await Promise.all([...running]);
      agent.destroy();
    },
  };
}

/** Polls the other regions' view of `CUT`; records a `suspect` or `down` reported after its link came back up. */
function watchPeers(c: Cluster, healedAt: number) {
  const lostAfterUp: string[] = [];
  let running = true;
  const loops = REGIONS.filter((r) => r !== CUT).map(async (observer) => {
    let seenUp = false;
    while (running) {
      const peer = (await syncStatus(c.url(observer)).catch(() => null))?.peers.find((p) => p.region === CUT);
      if (peer?.state === 'up') seenUp = true;
      if (seenUp && (peer?.state === 'down' || peer?.state === 'suspect')) lostAfterUp.push(`${observer}: ${peer.state} at ${Math.round(performance.now() - healedAt)} ms`);
      await sleep(100);
    }
  });
  return { lostAfterUp, stop: async () => { running = false; await Promise.all(loops); } };
}

/** Waits until `region` has applied `vv`: a `/v1/sync` held with `meridian-after` answers 200. */
async function waitForVersion(c: Cluster, region: string, vv: VersionVector): Promise<number> {
  const headers = { [AFTER_HEADER]: encodeVersion(vv), [WAIT_HEADER]: '5000' };
  return waitFor(`${region} to catch up`, async () =>
    (await http(`${c.url(region)}/v1/sync`, { headers, timeoutMs: 8000 })).status === 200 && performance.now(), 30_000, 50);
}

/** Acknowledged documents that `region` does not list. */
async function missingAt(c: Cluster, region: string, acked: Set<string>): Promise<string[]> {
  const listed = new Set<string>();
  let after: string | null = null;
  do {
    const page: { ids: string[]; next: string | null } = (await http<{ ids: string[]; next: string | null }>(
      `${c.url(region)}/v1/docs/cl?limit=1000${after === null ? '' : `&after=${after}`}`)).body;
    for (const id of page.ids) listed.add(id);
    after = page.next;
  } while (after !== null);
  return [...acked].filter((id) => !listed.has(id));
}

describe('a region catching up after a heal keeps serving its own clients', () => {
  it('writes at the catching-up region stay under 1 s, peers never see it suspect or down, every acknowledged write is kept', async () => {
    cluster = await startTestCluster(REGIONS);
    const c = cluster;
    await waitFor('links up', async () => (await Promise.all(REGIONS.map((r) => syncStatus(c.url(r)))))
      .every((s) => s.peers.every((p) => p.state === 'up')), 15_000);
    const loads = new Map(REGIONS.map((r) => [r, writeLoad(c.url(r), r)]));
    await sleep(2000);
    c.isolate(CUT);
    await sleep(10_000);
    const others = REGIONS.filter((r) => r !== CUT);
    const target = others.reduce<VersionVector>((vv, r) => merged(vv, loads.get(r)!.version()), new Map());
    // Guards against a vacuous pass: the cut must have left the region behind.
    expect(missingCount(target, loads.get(CUT)!.version())).toBeGreaterThan(1000);
    const healedAt = performance.now();
    c.heal();
    const watch = watchPeers(c, healedAt);
    const caughtUpAt = await waitForVersion(c, CUT, target);
    await sleep(2000);
    await Promise.all([...loads.values()].map((l) => l.stop()));
    await watch.stop();

    const duringCatchUp = loads.get(CUT)!.writes.filter((w) => w.dueAt >= healedAt && w.dueAt <= caughtUpAt + 2000);
    const slow = duringCatchUp.filter((w) => !w.ok || w.ms > 1000).sort((a, b) => b.ms - a.ms)
      .map((w) => `sent ${Math.round(w.dueAt - healedAt)} ms after the heal: ${w.ok ? `${Math.round(w.ms)} ms` : 'failed'}`);
    expect(duringCatchUp.length).toBeGreaterThan(0);
    // The others' worst write over the same span tells a stall of the catching-up region from a starved machine.
    const context = REGIONS.map((r) => `${r} max ${Math.round(Math.max(...loads.get(r)!.writes
      .filter((w) => w.dueAt >= healedAt && w.dueAt <= caughtUpAt + 2000).map((w) => w.ms)))} ms`).join(', ');
    expect(slow.length, `writes at ${CUT} over 1 s while catching up: ${slow.slice(0, 5).join('; ')} (${context})`).toBe(0);
    expect(watch.lostAfterUp).toEqual([]);
    await waitForConvergence(c);
    const acked = new Set([...loads.values()].flatMap((l) => [...l.ids]));
    for (const r of REGIONS) expect(await missingAt(c, r, acked)).toEqual([]);
  }, 60_000);
});
