/**
 * An entry that depends on changes no region holds (a faulty peer's) is
 * held back by Yjs for good, and kept `pendingDocs` at 1 and `agree` false
 * at every region it reached. Once every configured peer's anti-entropy
 * answer has left the same updates held back, each region lets go of them;
 * while any peer has not answered (it is down: it could hold what they
 * wait for), nothing is let go of.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { DocKey, RegionId, WriterId } from '../src/ids.js';
import { http, startTestCluster, syncStatus, waitFor, waitForConvergence } from './helpers/cluster.js';
import { danglingUpdate } from './helpers/dangling.js';
import { ImpostorLink } from './helpers/impostor.js';

const [A, B, C] = ['ap-south', 'eu-west', 'us-east'] as [RegionId, RegionId, RegionId];
const DOC = 'held/dangling' as DocKey;

let cluster: Awaited<ReturnType<typeof startTestCluster>>;

beforeAll(async () => {
  cluster = await startTestCluster([A, B, C]);
}, 60_000);

afterAll(async () => {
  await cluster?.dispose();
});

async function dropped(region: RegionId): Promise<number> {
  const text = String((await http(`${cluster.url(region)}/metrics`)).body);
  return Number(/meridian_pending_dropped_total(?:\{[^}]*\})? (\d+)/.exec(text)?.[1] ?? NaN);
}

async function value(region: RegionId): Promise<unknown> {
  return (await http(`${cluster.url(region)}/v1/docs/${DOC}`)).body;
}

it('lets go of updates that wait for changes no region holds once every peer has answered, and not while one is down', async () => {
  expect((await http(`${cluster.url(A)}/v1/docs/${DOC}`, { method: 'PUT', body: { kept: 1 } })).status).toBe(200);
  await waitForConvergence(cluster);
  await cluster.stopRegion(A);
  await waitFor('ap-south seen down', async () => (await syncStatus(cluster.url(B))).peers.find((p) => p.region === A)?.state !== 'up');
  // A faulty peer, linked as ap-south (which dials the others), sends one such entry to eu-west, which relays it to us-east.
  const faulty = await ImpostorLink.open(cluster.url(B), A, B, cluster.secret);
  const theirs = await faulty.next('sync-request');
  faulty.send({ type: 'sync-request', vv: theirs.vv });
  // First 70 new documents made of such an entry alone (more than a round asks about), then one to the document above.
  const docs = [...Array.from({ length: 70 }, (_, i) => `held/only-${i}` as DocKey), DOC];
  const origin = `${A}~0a0b0c0d0e0f` as WriterId;
  faulty.send({ type: 'entries', entries: docs.map((doc, i) => ({ origin, seq: i + 1, doc, ts: Date.now(), update: danglingUpdate() })) });
  await waitFor('the entries held back at both', async () => (await syncStatus(cluster.url(B))).pendingDocs === docs.length && (await syncStatus(cluster.url(C))).pendingDocs === docs.length);
  faulty.close();
  await faulty.closed;

  // ap-south is down: it could hold what the entry waits for. Four anti-entropy intervals (1.5 s each) change nothing.
  await new Promise((resolve) => setTimeout(resolve, 6000));
  for (const region of [B, C]) {
    expect((await syncStatus(cluster.url(region))).pendingDocs).toBe(docs.length);
    expect(await dropped(region)).toBe(0);
  }

  // Back up, ap-south gets the entry too; every peer's answer leaves it waiting: each region lets go of it.
  await cluster.startRegion(A);
  await waitFor('every region let go of it, and the regions agree', async () => {
    const all = await Promise.all([A, B, C].map(async (r) => syncStatus(cluster.url(r))));
    return all.every((s) => s.pendingDocs === 0 && s.agree);
  }, 30_000);
  for (const region of [A, B, C]) {
    expect(await dropped(region)).toBe(docs.length);
    expect(await value(region)).toEqual({ kept: 1 });
  }
  // The document takes writes and replicates as before.
  expect((await http(`${cluster.url(C)}/v1/docs/${DOC}`, { method: 'PATCH', body: { more: 2 } })).status).toBe(200);
  await waitForConvergence(cluster);
  for (const region of [A, B, C]) expect(await value(region)).toEqual({ kept: 1, more: 2 });

  // Stored without it: a restart does not hold it back again.
  // (A document's held-back updates are counted once it is built: a read builds it.)
  await cluster.restart(B);
  expect(await value(B)).toEqual({ kept: 1, more: 2 });
  expect((await syncStatus(cluster.url(B))).pendingDocs).toBe(0);
  await waitForConvergence(cluster);
  expect((await syncStatus(cluster.url(B))).pendingDocs).toBe(0);
}, 120_000);
