/**
 * A region catching a peer up by state sends every document, then the
 * round's floor; the peer applies the states in order and only then states
 * the floor in its acknowledgements. A peer being rebuilt under load may take
 * a minute to get there, and meanwhile it still looks as if it lacked
 * everything: the region must not start the whole state over every two
 * seconds. A peer that links again (it restarted before it got there) is
 * sent the state again.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { DocKey, RegionId, VersionVector, WriterId } from '../src/ids.js';
import type { Frame } from '../src/replication/protocol.js';
import { http, startTestCluster, syncStatus, waitFor } from './helpers/cluster.js';
import { danglingUpdate } from './helpers/dangling.js';
import { ImpostorLink } from './helpers/impostor.js';

const PEER = 'ap-south' as RegionId;
const TARGET = 'eu-west' as RegionId;
const DOCS = 20;

let cluster: Awaited<ReturnType<typeof startTestCluster>>;
let target: string;

beforeAll(async () => {
  // Entries older than a second leave the log even though the peer lacks them: it can only be caught up by state.
  cluster = await startTestCluster([PEER, TARGET], { storage: { logRetentionMs: 1000, gcIntervalMs: 200, compactIntervalMs: 100 } });
  target = cluster.url(TARGET);
  await cluster.stopRegion(PEER);
  for (let i = 0; i < DOCS; i++) {
    expect((await http(`${target}/v1/docs/floor/d${i}`, { method: 'PUT', body: { i } })).status).toBe(200);
  }
  await waitFor('log collected', async () => {
    const text = String((await http(`${target}/metrics`)).body);
    return Number(/meridian_log_entries_collected_total\{[^}]*\} (\d+)/.exec(text)?.[1] ?? 0) >= DOCS;
  }, 15_000);
}, 90_000);

afterAll(async () => {
  await cluster?.dispose();
});

/** Answers every round the region starts as a peer that holds nothing would, and never states a floor itself. */
function answerRounds(link: ImpostorLink, answered: Set<number>): void {
  const timer = setInterval(() => {
    for (const f of link.frames as Frame[]) {
      if (f.type !== 'ae-buckets' || answered.has(f.round)) continue;
      answered.add(f.round);
      // Every bucket differs, and this side lists no document in any.
      const buckets = f.buckets.map((b) => b.map((x) => x ^ 0xff));
      link.send({ type: 'ae-buckets', round: f.round, buckets });
      for (let bucket = 0; bucket < buckets.length; bucket++) link.send({ type: 'ae-docs', round: f.round, bucket, docs: [] });
    }
  }, 50);
  void link.closed.then(() => clearInterval(timer));
}

it('sends a wiped peer the state once while it has not yet applied it, and again on its next link', async () => {
  const link = await ImpostorLink.open(target, PEER, TARGET, cluster.secret);
  const empty: VersionVector = new Map();
  await link.next('sync-request');
  // The peer was wiped: it holds nothing, and says so in every heartbeat.
  link.send({ type: 'sync-request', vv: empty });
  link.keepAlive(empty);
  const answered = new Set<number>();
  answerRounds(link, answered);
  const done = await link.next('ae-done', 15_000);
  const states = () => link.frames.filter((f) => f.type === 'doc-state').length;
  expect(states()).toBe(DOCS);
  expect(done.floor.size).toBeGreaterThan(0);
  // Ten seconds of heartbeats that still state nothing: before, a round started every two seconds.
  await new Promise((r) => setTimeout(r, 10_000));
  expect(answered.size).toBe(1);
  expect(states()).toBe(DOCS);
  link.close();
  await link.closed;
  // A new link from the same peer, still holding nothing (it restarted before applying the state): sent it again.
  const again = await ImpostorLink.open(target, PEER, TARGET, cluster.secret);
  await again.next('sync-request');
  again.send({ type: 'sync-request', vv: empty });
  again.keepAlive(empty);
  answerRounds(again, new Set());
  await again.next('ae-done', 15_000);
  expect(again.frames.filter((f) => f.type === 'doc-state')).toHaveLength(DOCS);
  again.close();
  await again.closed;
}, 60_000);

it('states the floor while an entry it holds waits for a dependency no region holds', async () => {
  // A faulty peer sends one entry whose only item follows one that no region holds: it waits for good.
  const faulty = await ImpostorLink.open(target, PEER, TARGET, cluster.secret);
  const theirs = await faulty.next('sync-request');
  faulty.send({ type: 'sync-request', vv: theirs.vv });
  faulty.send({ type: 'entries', entries: [{ origin: `${PEER}~0a0b0c0d0e0f` as WriterId, seq: 1, doc: 'floor/dangling' as DocKey, ts: Date.now(), update: danglingUpdate() }] });
  await waitFor('the entry waiting', async () => (await syncStatus(target)).pendingDocs === 1);
  faulty.close();
  await faulty.closed;
  // The peer, wiped, links again: its round ends with a floor covering what the region holds, so it catches up.
  const link = await ImpostorLink.open(target, PEER, TARGET, cluster.secret);
  await link.next('sync-request');
  link.send({ type: 'sync-request', vv: new Map() });
  link.keepAlive(new Map());
  answerRounds(link, new Set());
  const done = await link.next('ae-done', 15_000);
  const writer = (await syncStatus(target)).writer as WriterId;
  expect(done.floor?.get(writer)).toBeGreaterThanOrEqual(DOCS);
  link.close();
  await link.closed;
}, 60_000);
