/**
 * A peer whose heartbeats keep coming but that never states it holds the
 * entries sent to it (a frame lost, a bug at either end) would otherwise
 * leave them pending for as long as the link stays up: anti-entropy waits
 * for nothing pending, so no repair would ever start. The region sends them
 * again after 3 × deadAfterMs of such heartbeats, and says so; a peer that
 * confirms them is not sent them again.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RegionId, VersionVector } from '../src/ids.js';
import type { Frame } from '../src/replication/protocol.js';
import type { SyncStatus } from '../src/contract.js';
import { http, startTestCluster, waitFor } from './helpers/cluster.js';
import { ImpostorLink } from './helpers/impostor.js';

const PEER = 'ap-south' as RegionId;
const TARGET = 'eu-west' as RegionId;
const DOCS = 5;
const DEAD_AFTER_MS = 1000;

let cluster: Awaited<ReturnType<typeof startTestCluster>>;
let target: string;

beforeAll(async () => {
  cluster = await startTestCluster([PEER, TARGET], { replication: { heartbeatMs: 200, deadAfterMs: DEAD_AFTER_MS } });
  target = cluster.url(TARGET);
  await cluster.stopRegion(PEER);
  for (let i = 0; i < DOCS; i++) {
    expect((await http(`${target}/v1/docs/resend/d${i}`, { method: 'PUT', body: { i } })).status).toBe(200);
  }
}, 60_000);

afterAll(async () => {
  await cluster?.dispose();
});

/** How often each entry was sent on the link, by `origin/seq`. */
function sends(frames: Frame[]): Map<string, number> {
  const count = new Map<string, number>();
  for (const f of frames) {
    if (f.type !== 'entries') continue;
    for (const e of f.entries) count.set(`${e.origin}/${e.seq}`, (count.get(`${e.origin}/${e.seq}`) ?? 0) + 1);
  }
  return count;
}

async function resent(): Promise<number> {
  const text = String((await http(`${target}/metrics`)).body);
  return Number(new RegExp(`meridian_entries_resent_total\\{[^}]*peer="${PEER}"[^}]*\\} (\\d+)`).exec(text)?.[1] ?? 0);
}

it('sends entries again to a live peer that never confirms them, and stops once it does', async () => {
  const link = await ImpostorLink.open(target, PEER, TARGET, cluster.secret);
  await link.next('sync-request');
  const empty: VersionVector = new Map();
  link.send({ type: 'sync-request', vv: empty });
  // Heartbeats that state nothing held, and no acknowledgement: the entries never arrived, as far as the region can tell.
  link.keepAlive(empty);
  await waitFor('entries sent once', async () => sends(link.frames).size === DOCS, 10_000);
  const firstSentAt = Date.now();
  await waitFor('entries sent again', async () => [...sends(link.frames).values()].every((n) => n >= 2), 15_000);
  // Not before 3 × deadAfterMs of heartbeats (less a little for timers).
  expect(Date.now() - firstSentAt).toBeGreaterThanOrEqual(3 * DEAD_AFTER_MS - 300);
  expect(await resent()).toBeGreaterThanOrEqual(1);
  const sync = (await http<SyncStatus>(`${target}/v1/sync`)).body;
  expect(sync.peers.find((p) => p.region === PEER)?.lastError).toMatch(/did not confirm \d+ entries/);

  // Once the peer states it holds them, nothing is sent again.
  const held = (await link.next('sync-request')).vv;
  link.close();
  await link.closed;
  const again = await ImpostorLink.open(target, PEER, TARGET, cluster.secret);
  await again.next('sync-request');
  again.send({ type: 'sync-request', vv: empty });
  await waitFor('entries sent on the new link', async () => sends(again.frames).size === DOCS, 10_000);
  again.send({ type: 'ack', vv: held });
  again.keepAlive(held);
  const before = await resent();
  await new Promise((r) => setTimeout(r, 5 * DEAD_AFTER_MS));
  expect([...sends(again.frames).values()].every((n) => n === 1)).toBe(true);
  expect(await resent()).toBe(before);
  again.close();
  await again.closed;
}, 60_000);
