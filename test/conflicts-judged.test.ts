/**
 * A content conflict of a large document is judged on the render thread.
 * On the event loop, building both states and digesting them held both
 * regions 1.3-2.2 s for a document of 95,000 nested maps, each time a
 * client made its replicas collide. Two regions' write paths here, each
 * with its own store and render thread, meet as anti-entropy has them meet:
 * one offers its state, the other answers with its own.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as Y from 'yjs';
import { pino } from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ColdRenderer } from '../src/docs/cold-render.js';
import { createDocuments } from '../src/docs/documents.js';
import { judge } from '../src/docs/replace.js';
import type { Documents } from '../src/docs/types.js';
import { docDigest, loadDoc } from '../src/crdt/index.js';
import { docKey, type DocKey, type RegionId, type WriterId } from '../src/ids.js';
import { openStore, type SqliteEngine } from '../src/storage/sqlite.js';

const logger = pino({ level: 'silent' });
const THREAD = fileURLToPath(new URL('../dist/src/docs/render-thread.js', import.meta.url));
const EAST = 'us-east' as RegionId;
const WEST = 'eu-west' as RegionId;

interface Region {
  name: RegionId;
  dir: string;
  store: SqliteEngine;
  documents: Documents;
}

function open(name: RegionId, dir: string): Region {
  // The render thread as the region runs it (built by the test setup).
  const store = openStore({ dataDir: dir, region: name, synchronous: 'normal', logger });
  const documents = createDocuments({ store, logger, cacheDocs: 100, yjsUpdateBytes: 1 << 20, compactIntervalMs: 0, renderer: new ColdRenderer(THREAD) });
  return { name, dir, store, documents };
}

async function close(region: Region): Promise<void> {
  await region.documents.close();
  await region.store.close();
}

const regions: Record<string, Region> = {};

beforeAll(() => {
  for (const name of [EAST, WEST]) regions[name] = open(name, mkdtempSync(join(tmpdir(), `meridian-judged-${name}-`)));
});

afterAll(async () => {
  for (const region of Object.values(regions)) {
    await close(region);
    rmSync(region.dir, { recursive: true, force: true });
  }
});

/** Written at us-east in patches, then taken by eu-west: 24,995 keys, past what is judged on the event loop. */
async function largeAtBoth(doc: DocKey): Promise<void> {
  const east = regions[EAST]!.documents;
  for (let part = 0; part < 5; part++) {
    const patch: Record<string, number> = {};
    for (let i = 0; i < 4_999; i++) patch[`k${part}_${i}`] = i;
    await east.patch(doc, patch);
  }
  expect((await regions[WEST]!.documents.applyState(doc, east.readYjs(doc)!, EAST)).refused).toBeNull();
}

/** One client's write under a Yjs client id of its own, made at both regions with other content: the replicas collide. */
async function collide(doc: DocKey, clientId: number): Promise<void> {
  for (const region of [EAST, WEST]) {
    const writer = new Y.Doc();
    writer.clientID = clientId;
    writer.getMap('root').set('title', `written at ${region}`);
    await regions[region]!.documents.applyYjs(doc, Y.encodeStateAsUpdate(writer));
  }
}

/** The region whose state loses under the rule, and the one whose wins. */
function sides(doc: DocKey): { loser: RegionId; winner: RegionId } {
  const [east, west] = [EAST, WEST].map((r) => loadDoc([regions[r]!.documents.readYjs(doc)!], 1));
  const verdict = judge(east!, west!);
  expect(verdict.outcome).not.toBe('unrelated');
  return verdict.outcome === 'kept' ? { loser: WEST, winner: EAST } : { loser: EAST, winner: WEST };
}

it('decides on the thread, the same way at both regions, and stores the winner where it lost', async () => {
  const doc = docKey('c', 'large');
  await largeAtBoth(doc);
  await collide(doc, 31_337);
  const { loser, winner } = sides(doc);
  const [offering, asked] = [regions[WEST]!, regions[EAST]!];
  const judgedBefore = offering.documents.conflictsJudgedOffLoop() + asked.documents.conflictsJudgedOffLoop();

  // The offer, and the state from before sent back with the answer.
  const answer = await asked.documents.replaceState(doc, offering.documents.readYjs(doc)!, offering.name);
  expect(answer.outcome).toBe(asked.name === winner ? 'kept' : 'replaced');
  const back = await offering.documents.replaceState(doc, answer.mine!, asked.name);
  expect(back.outcome).toBe(offering.name === winner ? 'kept' : 'replaced');
  expect(offering.documents.conflictsJudgedOffLoop() + asked.documents.conflictsJudgedOffLoop()).toBe(judgedBefore + 2);

  const values = [EAST, WEST].map((r) => regions[r]!.documents.read(doc).value as Record<string, unknown>);
  expect(values[0]).toEqual(values[1]);
  expect(values[0]!.title).toBe(`written at ${winner}`);
  expect(Object.keys(values[0]!)).toHaveLength(24_996);
  expect(regions[EAST]!.documents.digestParts(doc)).toEqual(regions[WEST]!.documents.digestParts(doc));
  for (const region of [EAST, WEST]) {
    const { conflicts } = await regions[region]!.documents.conflicts(doc, 0, 10, 64 << 20, 'test');
    expect(conflicts.map((c) => c.winner)).toEqual([winner]);
    expect((JSON.parse(conflicts[0]!.valueJson) as { title: string }).title).toBe(`written at ${loser}`);
  }

  // Stored as the winner where it lost: it reads so after a restart, and takes writes.
  const lost = regions[loser]!;
  await close(lost);
  regions[loser] = open(loser, lost.dir);
  const reopened = regions[loser].documents;
  expect(reopened.read(doc).value).toEqual(values[0]);
  await reopened.patch(doc, { after: 1 });
  expect((reopened.read(doc).value as Record<string, unknown>).after).toBe(1);
}, 120_000);

it('never replaces away a write made while the verdict was on the thread', async () => {
  const doc = docKey('c', 'written-meanwhile');
  await largeAtBoth(doc);
  await collide(doc, 41_414);
  const { loser, winner } = sides(doc);
  const lost = regions[loser]!.documents;
  const judging = lost.replaceState(doc, regions[winner]!.documents.readYjs(doc)!, winner);
  // Staged while the thread builds both states: the verdict on the state before it no longer holds.
  await lost.patch(doc, { meanwhile: true });
  const result = await judging;
  // Judged again with the write, the two states no longer hold the same structure: nothing to resolve here.
  expect(result.outcome).toBe('unrelated');
  const value = lost.read(doc).value as Record<string, unknown>;
  expect(value.meanwhile).toBe(true);
  expect(value.title).toBe(`written at ${loser}`);
  expect((await lost.conflicts(doc, 0, 10, 64 << 20, 'test')).conflicts).toHaveLength(0);
}, 120_000);

it('resolves the conflict of a document written steadily, which a verdict from the thread would always find changed', async () => {
  const doc = docKey('c', 'written-steadily');
  await largeAtBoth(doc);
  await collide(doc, 51_515);
  const { loser, winner } = sides(doc);
  // Another client writes every 150 ms, at both regions (as replication would bring it).
  const editor = new Y.Doc();
  editor.clientID = 61_616;
  let writing = true;
  const writes = (async () => {
    for (let n = 0; writing; n++) {
      let update: Uint8Array | null = null;
      editor.once('update', (u: Uint8Array) => (update = u));
      editor.getMap('root').set('counter', n);
      await Promise.all([EAST, WEST].map((r) => regions[r]!.documents.applyYjs(doc, update!)));
      await new Promise((r) => setTimeout(r, 150));
    }
  })();
  const outcomes: string[] = [];
  try {
    // As anti-entropy offers it: the winner's state as it is now, a round at a time.
    for (let round = 0; round < 6 && outcomes.at(-1) !== 'replaced'; round++) {
      outcomes.push((await regions[loser]!.documents.replaceState(doc, regions[winner]!.documents.readYjs(doc)!, winner)).outcome);
      await new Promise((r) => setTimeout(r, 300));
    }
  } finally {
    writing = false;
    await writes;
  }
  expect(outcomes).toContain('replaced');
  expect((regions[loser]!.documents.read(doc).value as { title: string }).title).toBe(`written at ${winner}`);
}, 120_000);

it('builds the winner for a later job of the batch that took the verdict, and stores the digest of what it holds', async () => {
  const doc = docKey('c', 'same-batch');
  await largeAtBoth(doc);
  await collide(doc, 71_717);
  const { loser, winner } = sides(doc);
  const lost = regions[loser]!;
  // A third region's client adds a key; its entry reaches both regions.
  const third = new Y.Doc();
  third.clientID = 81_818;
  third.getMap('root').set('late', 'from ap-south');
  const entry = { origin: 'ap-south~000000000001' as WriterId, seq: 1, doc, ts: Date.now(), update: Y.encodeStateAsUpdate(third) };
  // One batch: a job that takes the document without changing it (a read-write client resending what the region holds:
  // local jobs are staged first), the verdict, then the entry.
  const queue = (lost.documents as unknown as { queue: { push(job: { kind: string }): void } }).queue;
  const push = queue.push.bind(queue);
  const beside: Promise<unknown>[] = [];
  queue.push = (job) => {
    push(job);
    if (job.kind !== 'replace-judged') return;
    queue.push = push;
    beside.push(lost.documents.applyYjs(doc, Y.encodeStateAsUpdate(loadDoc([lost.documents.readYjs(doc)!], 1))));
    beside.push(lost.documents.applyRemote([entry], 'ap-south' as RegionId));
  };
  expect((await lost.documents.replaceState(doc, regions[winner]!.documents.readYjs(doc)!, winner)).outcome).toBe('replaced');
  await Promise.all(beside);
  expect((await regions[winner]!.documents.applyRemote([entry], 'ap-south' as RegionId)).applied).toBe(1);
  const value = lost.documents.read(doc).value as Record<string, unknown>;
  expect(value).toEqual(regions[winner]!.documents.read(doc).value);
  expect(value).toMatchObject({ title: `written at ${winner}`, late: 'from ap-south' });
  // The digest it stores (anti-entropy compares those) is that of what it holds, once computed after the commit.
  const held = docDigest(loadDoc([lost.documents.readYjs(doc)!], 1));
  const deadline = Date.now() + 10_000;
  while (!Buffer.from(lost.store.summary(doc)!.digest!).equals(Buffer.from(held)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  expect(Buffer.from(lost.store.summary(doc)!.digest!).equals(Buffer.from(held))).toBe(true);
}, 120_000);
