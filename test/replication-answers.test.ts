/**
 * A region answers a peer's requests (its anti-entropy rounds' bucket lists,
 * doc-sv) beside the link's inbound frames. A peer that is itself busy
 * (applying a rebuild this region sends it) empties the link slowly, and an
 * answer waits for room; if the inbound frames waited behind it, the region
 * would stop reading the peer, hear nothing from it, and close a live link
 * as silent, again and again, so that a large rebuild never finished.
 * A peer that asks and never reads is still bounded: past a few hundred
 * unanswered requests the link is closed, saying why.
 */
import { randomBytes } from 'node:crypto';
import * as Y from 'yjs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { DocKey, RegionId, VersionVector } from '../src/ids.js';
import { digestParts } from '../src/crdt/index.js';
import { DOC_PARTS_BYTES } from '../src/replication/protocol.js';
import { FAST_REPLICATION, http, startTestCluster, syncStatus } from './helpers/cluster.js';
import { ImpostorLink } from './helpers/impostor.js';

const PEER = 'ap-south' as RegionId;
const TARGET = 'eu-west' as RegionId;
const BIG = 'answers/big' as DocKey;
/** A small send bound, so that the kernel's buffers and this one fill with a few states of the big document. */
const REPLICATION = { ...FAST_REPLICATION.replication, maxBufferedBytes: 16 * 1024 };
const EMPTY_SV = Y.encodeStateVector(new Y.Doc());

let cluster: Awaited<ReturnType<typeof startTestCluster>>;
let target: string;

beforeAll(async () => {
  cluster = await startTestCluster([PEER, TARGET], {}, { [TARGET]: { replication: REPLICATION } });
  target = cluster.url(TARGET);
  // About 2 MB of state: a handful of its answers fill every buffer between the two ends.
  for (let i = 0; i < 4; i++) {
    const put = await http(`${target}/v1/docs/${BIG}`, { method: 'PATCH', body: { [`part${i}`]: `${i}`.repeat(500_000) } });
    expect(put.status).toBe(200);
  }
  await cluster.stopRegion(PEER);
}, 90_000);

afterAll(async () => {
  await cluster?.dispose();
});

async function linkState(): Promise<string | undefined> {
  return (await syncStatus(target)).peers.find((p) => p.region === PEER)?.state;
}

/** A link as PEER that states it holds what the target holds, keeps heartbeats going, and reads nothing until resumed. */
async function quietLink(): Promise<{ link: ImpostorLink; vv: VersionVector }> {
  const link = await ImpostorLink.open(target, PEER, TARGET, cluster.secret);
  const vv = (await link.next('sync-request')).vv;
  link.send({ type: 'sync-request', vv });
  link.keepAlive(vv);
  link.pause();
  return { link, vv };
}

it('keeps reading a peer whose requests wait for room on the link: the link stays up and every answer arrives', async () => {
  const { link, vv } = await quietLink();
  // A round of the peer's (every bucket differs from all-zero digests), then
  // more state than the buffers hold, then a stream of small frames.
  link.send({ type: 'ae-buckets', round: 7, buckets: Array.from({ length: 1024 }, () => new Uint8Array(8)) });
  const asks = 12;
  for (let i = 0; i < asks; i++) link.send({ type: 'doc-sv', round: 7, doc: BIG, sv: EMPTY_SV, parts: null });
  for (let i = 0; i < 200; i++) link.send({ type: 'ack', vv });
  // Four dead timeouts (1.5 s each) without reading: the region still hears the peer.
  expect(await link.closeCode(6_000)).toBe('open');
  expect(await linkState()).toBe('up');
  link.resume();
  const deadline = Date.now() + 30_000;
  while (link.frames.filter((f) => f.type === 'doc-state').length < asks && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  const states = link.frames.filter((f) => f.type === 'doc-state');
  expect(states).toHaveLength(asks);
  // Each answer is the whole document (2 MB of text), sent after the round's lists.
  for (const s of states) expect(s.type === 'doc-state' && s.update.byteLength).toBeGreaterThan(2_000_000);
  expect(link.frames.findIndex((f) => f.type === 'ae-buckets')).toBeLessThan(link.frames.findIndex((f) => f.type === 'doc-state'));
  expect(link.frames.some((f) => f.type === 'ae-docs')).toBe(true);
  expect(await linkState()).toBe('up');
  link.close();
  await link.closed;
}, 60_000);

it('answers only the latest of the rounds a peer starts without waiting for their answers', async () => {
  const { link } = await quietLink();
  // States that fill the link first, so the rounds' answers queue behind them.
  for (let i = 0; i < 12; i++) link.send({ type: 'doc-sv', round: 99, doc: BIG, sv: EMPTY_SV, parts: null });
  const rounds = Array.from({ length: 10 }, (_, i) => 100 + i);
  for (const round of rounds) link.send({ type: 'ae-buckets', round, buckets: Array.from({ length: 1024 }, () => new Uint8Array(8)) });
  await new Promise((r) => setTimeout(r, 1_000));
  link.resume();
  const last = rounds[rounds.length - 1]!;
  const answered = (): Set<number> => new Set(link.frames.flatMap((f) => (f.type === 'ae-buckets' ? [f.round] : [])));
  const deadline = Date.now() + 20_000;
  while (!answered().has(last) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  // By the time their turn came the peer had started the last one: the others are given up unanswered.
  expect([...answered()]).toEqual([last]);
  link.close();
  await link.closed;
}, 30_000);

it('closes the link to a peer that asks far more than it reads, says why, and keeps serving', async () => {
  const { link } = await quietLink();
  for (let i = 0; i < 400; i++) link.send({ type: 'doc-sv', round: 9, doc: BIG, sv: EMPTY_SV, parts: null });
  // The region reads them all while its answers wait for room; then the close is read.
  await new Promise((r) => setTimeout(r, 2_000));
  link.resume();
  // Closed while the link is full: the close frame may not get through, the reason is in the region's status.
  await link.closed;
  const peer = (await syncStatus(target)).peers.find((p) => p.region === PEER);
  expect(peer?.lastError).toMatch(/more than 256 requests unanswered: the peer asks faster than it reads/);
  const put = await http(`${target}/v1/docs/answers/after`, { method: 'PUT', body: { ok: true } });
  expect(put.status).toBe(200);
}, 60_000);

it('compares a document\'s digest parts with a peer\'s once a second at most, however often the peer asks about it', async () => {
  const { link } = await quietLink();
  link.resume();
  const held = new Y.Doc();
  Y.applyUpdate(held, new Uint8Array(await (await fetch(`${target}/v1/docs/${BIG}/yjs`)).arrayBuffer()));
  // The region's structure with other content: a conflict each time the region compares them, which it answers with an offer.
  const parts = new Uint8Array(DOC_PARTS_BYTES);
  parts.set(digestParts(held).structure, 0);
  parts.set(randomBytes(32), 32);
  const asks = 20;
  for (let i = 0; i < asks; i++) link.send({ type: 'doc-sv', round: 300, doc: BIG, sv: Y.encodeStateVector(held), parts });
  const answers = (): number => link.frames.filter((f) => f.type === 'doc-state' && f.round === 300).length;
  const deadline = Date.now() + 20_000;
  while (answers() < asks && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  expect(answers()).toBe(asks);
  const offers = link.frames.filter((f) => f.type === 'doc-replace' && f.kind === 'offer' && f.doc === BIG).length;
  // One per second the answers took (a slow machine may take two or three).
  expect(offers).toBeGreaterThanOrEqual(1);
  expect(offers).toBeLessThan(5);
  link.close();
  await link.closed;
}, 30_000);
