import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as encoding from 'lib0/encoding';
import * as Y from 'yjs';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { rebuiltDocs, refusedDocLoads } from '../src/crdt/index.js';
import { contentOf, quadraticMerge } from './helpers/quadratic-merge.js';
import { danglingUpdate } from './helpers/dangling.js';
import { createDocuments } from '../src/docs/documents.js';
import { yDocSkipping } from '../src/docs/loader.js';
import type { Documents } from '../src/docs/types.js';
import { docKey, type RegionId, type WriterId } from '../src/ids.js';
import { openStore } from '../src/storage/sqlite.js';
import type { NewLogEntry, Store } from '../src/storage/types.js';
import { covers } from '../src/vv.js';

const logger = pino({ level: 'silent' });

/** A Yjs update that writes `value` as a document, as another region would. */
function updateOf(value: Record<string, number>): Uint8Array {
  const ydoc = new Y.Doc();
  ydoc.transact(() => {
    const root = ydoc.getMap('root');
    for (const [k, v] of Object.entries(value)) root.set(k, v);
    root.set('\u0000live', true);
  });
  return Y.encodeStateAsUpdate(ydoc);
}
const dirs: string[] = [];
const open: { docs: Documents; store: Store }[] = [];
/** Called with each batch as it is handed to the store (before the commit starts). */
let beforeCommit: ((batch: Parameters<Store['commit']>[0]) => void) | null = null;

function node(dir = mkdtempSync(join(tmpdir(), 'meridian-docs-')), cacheDocs = 1000, decodedDocs?: number, inUseMs?: number, maxMergedDocumentBytes?: number, cacheBytes?: number) {
  if (!dirs.includes(dir)) dirs.push(dir);
  const store = openStore({ dataDir: dir, region: 'r1' as RegionId, synchronous: 'full', logger });
  let commits = 0;
  let loads = 0;
  // Count transactions and document loads by wrapping the real store.
  const counted: Store = Object.create(store) as Store;
  counted.commit = (batch) => {
    commits++;
    beforeCommit?.(batch);
    return store.commit(batch);
  };
  counted.loadDoc = (doc) => {
    loads++;
    return store.loadDoc(doc);
  };
  const docs = createDocuments({
    store: counted, logger, cacheDocs, ...(decodedDocs ? { decodedDocs } : {}), ...(inUseMs ? { inUseMs } : {}), yjsUpdateBytes: 1 << 20, compactIntervalMs: 0,
    ...(maxMergedDocumentBytes ? { maxMergedDocumentBytes } : {}),
    ...(cacheBytes ? { cacheBytes } : {}),
  });
  const handle = { docs, store, dir, commits: () => commits, loads: () => loads };
  open.push(handle);
  return handle;
}

/**
 * A source whose committed entries are kept, to be sent to a target as one
 * peer's log; the target holds at most 4 documents decoded, the rest encoded.
 */
function backlogPair(maxMergedDocumentBytes?: number) {
  const source = node();
  const t = node(undefined, 1000, 4, undefined, maxMergedDocumentBytes);
  const updates: { doc: ReturnType<typeof docKey>; update: Uint8Array }[] = [];
  source.docs.onCommitted((entries) => entries.forEach((e) => updates.push({ doc: e.doc, update: e.update })));
  /** Every entry committed so far, numbered as the source's log. */
  const entries = () => updates.map((u, i) => ({ origin: source.docs.writer, seq: i + 1, doc: u.doc, ts: Date.now(), update: u.update }));
  return { source, t, entries };
}

/** A Y.Doc holding `state`. */
function loadedFrom(state: Uint8Array): Y.Doc {
  const doc = new Y.Doc();
  Y.applyUpdate(doc, state);
  return doc;
}

/** The update `change` makes to `ydoc`. */
function captured(ydoc: Y.Doc, change: () => void): Uint8Array {
  const before = Y.encodeStateVector(ydoc);
  ydoc.transact(change);
  return Y.encodeStateAsUpdate(ydoc, before);
}

async function closeNode(h: { docs: Documents; store: Store }) {
  await h.docs.close();
  await h.store.close();
  open.splice(open.indexOf(h), 1);
}

afterEach(async () => {
  beforeCommit = null;
  for (const h of [...open]) await closeNode(h);
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('the write path', () => {
  it('groups concurrent writes into few commits and acknowledges each', async () => {
    const n = node();
    const acks = await Promise.all(Array.from({ length: 200 }, (_, i) => n.docs.put(docKey('c', `d${i}`), { i })));
    expect(new Set(acks.map((a) => a.seq)).size).toBe(200);
    expect(n.commits()).toBeLessThan(10);
    expect(n.docs.versionVector().get(n.docs.writer)).toBe(200);
  });

  it('keeps the document cache within its bound while reading many documents', async () => {
    const n = node(undefined, 50);
    for (let i = 0; i < 400; i += 100) {
      await Promise.all(Array.from({ length: 100 }, (_, k) => n.docs.put(docKey('c', `d${i + k}`), { v: i + k })));
    }
    expect(n.docs.cachedDocs()).toBeLessThanOrEqual(50);
    for (let i = 0; i < 400; i++) {
      expect(n.docs.read(docKey('c', `d${i}`)).value).toEqual({ v: i });
      expect(n.docs.cachedDocs()).toBeLessThanOrEqual(50);
    }
  });

  it('keeps the heap documents take within its byte bound, written or only read, and serves each whole', async () => {
    const bound = 4 << 20;
    // A document of 3,000 small keys weighs about 1.9 MB decoded (600 bytes a struct, twice its size): ten are 19 MB.
    const keysOf = (i: number) => Object.fromEntries(Array.from({ length: 3000 }, (_, k) => [`k${k}`, i]));
    const keys = Array.from({ length: 10 }, (_, i) => docKey('c', `big${i}`));
    const n = node(undefined, 1000, 1000, undefined, undefined, bound);
    const heaviest = { bytes: 0 };
    for (const [i, key] of keys.entries()) {
      await n.docs.put(key, keysOf(i));
      heaviest.bytes = Math.max(heaviest.bytes, n.docs.cachedBytes());
    }
    // At most the bound, and the document just used whatever it weighs.
    expect(heaviest.bytes).toBeGreaterThan(0);
    expect(heaviest.bytes).toBeLessThanOrEqual(bound + 2.5 * 1024 * 1024);
    await closeNode(n);
    // Only read, after a restart: loaded from the store, weighed by what they were built from.
    const reopened = node(n.dir, 1000, 1000, undefined, undefined, bound);
    for (const [i, key] of keys.entries()) {
      expect(reopened.docs.read(key).value).toEqual(keysOf(i));
      expect(reopened.docs.cachedBytes()).toBeLessThanOrEqual(bound + 2.5 * 1024 * 1024);
    }
    // A document small when held grows by a commit: weighed again, it pushes the others out.
    const small = docKey('c', 'small');
    await reopened.docs.put(small, { a: 1 });
    for (let round = 0; round < 3; round++) await reopened.docs.patch(small, keysOf(round));
    expect(reopened.docs.cachedBytes()).toBeLessThanOrEqual(bound + 2.5 * 1024 * 1024);
    for (const [i, key] of keys.entries()) expect(reopened.docs.read(key).value).toEqual(keysOf(i));
  });

  it('serves documents it holds encoded without reading the store, and keeps its digest index true', async () => {
    const n = node(undefined, 100, 4);
    const docs = n.docs;
    const keys = Array.from({ length: 40 }, (_, i) => docKey('c', `d${i}`));
    for (const [i, key] of keys.entries()) await docs.put(key, { v: i });
    await docs.digests.settled();
    const before = n.loads();
    const decodedBefore = docs.decodedAgain();
    keys.forEach((key, i) => expect(docs.read(key).value).toEqual({ v: i }));
    expect(n.loads()).toBe(before);
    // Each was held encoded when read (four decoded at most, read oldest first), and is counted.
    expect(docs.decodedAgain() - decodedBefore).toBe(keys.length);
    expect(docs.read(keys[keys.length - 1]!).value).toEqual({ v: keys.length - 1 });
    expect(docs.decodedAgain() - decodedBefore).toBe(keys.length);
    // Written again once revived: each under its own client id, as before it was encoded.
    const clients = new Set<number>();
    await Promise.all(keys.map((key, i) => docs.patch(key, { w: i })));
    for (const key of keys) for (const client of Y.decodeStateVector(docs.stateVector(key)!).keys()) clients.add(client);
    expect(clients.size).toBe(keys.length);
    keys.forEach((key, i) => expect(docs.read(key).value).toEqual({ v: i, w: i }));
    expect(docs.cachedDocs()).toBeLessThanOrEqual(100);
    // The index kept as documents changed agrees with one built from the store.
    const digest = docs.digests.regionDigest();
    await closeNode(n);
    const reopened = node(n.dir);
    expect(reopened.docs.digests.regionDigest()).toBe(digest);
    keys.forEach((key, i) => expect(reopened.docs.read(key).value).toEqual({ v: i, w: i }));
  });

  it('reads, merges and digests documents only peers changed, held encoded, as decoded ones', async () => {
    const source = node();
    const t = node(undefined, 100, 4);
    const target = t.docs;
    const updates: { doc: ReturnType<typeof docKey>; update: Uint8Array }[] = [];
    source.docs.onCommitted((entries) => entries.forEach((e) => updates.push({ doc: e.doc, update: e.update })));
    const keys = Array.from({ length: 30 }, (_, i) => docKey('c', `p${i}`));
    await Promise.all(keys.map((key, i) => source.docs.put(key, { v: i })));
    await Promise.all(keys.slice(0, 15).map((key, i) => source.docs.patch(key, { w: i })));
    const entries = updates.map((u, i) => ({ origin: source.docs.writer, seq: i + 1, doc: u.doc, ts: Date.now(), update: u.update }));
    // In several commits: later entries change documents earlier commits already hold encoded.
    for (let i = 0; i < entries.length; i += 10) await target.applyRemote(entries.slice(i, i + 10), 'r0' as RegionId);
    keys.forEach((key, i) => expect(target.read(key).value).toEqual(i < 15 ? { v: i, w: i } : { v: i }));
    expect(target.digests.regionDigest()).toBe(source.docs.digests.regionDigest());
    // A client's write to one of them: merged with what the peer wrote, under this region's own client id.
    await target.patch(keys[20]!, { mine: true });
    expect(target.read(keys[20]!).value).toEqual({ v: 20, mine: true });
    const digest = target.digests.regionDigest();
    await closeNode(t);
    const reopened = node(t.dir);
    expect(reopened.docs.digests.regionDigest()).toBe(digest);
    expect(reopened.docs.read(keys[20]!).value).toEqual({ v: 20, mine: true });
  });

  it('takes a backlog of peer entries beside documents held encoded, and reads, lists and digests them as if applied', async () => {
    const { source, t, entries: entriesSoFar } = backlogPair();
    const keys = Array.from({ length: 100 }, (_, i) => docKey('c', `b${i}`));
    for (let round = 0; round < 60; round++) await Promise.all(keys.map((key, i) => source.docs.patch(key, { [`r${round}`]: i })));
    const removed = keys.slice(0, 10);
    await Promise.all(removed.map((key) => source.docs.remove(key)));
    const entries = entriesSoFar();
    // The first round alone: new here, each document is held encoded once committed.
    await t.docs.applyRemote(entries.slice(0, keys.length), 'r0' as RegionId);
    // The rest at once, as a healed link brings it: a backlog, of which most is held beside the encoded states.
    const before = t.docs.decodedAgain();
    const applying = t.docs.applyRemote(entries.slice(keys.length), 'r0' as RegionId);
    // Meanwhile the sync status neither waits for digests nor reports one that another region could.
    const partial = t.docs.digests.statusDigest();
    expect(partial.exact).toBe(false);
    expect(partial.digest).toMatch(/^[0-9a-f]{64}$/);
    expect(partial.digest).not.toBe(source.docs.digests.regionDigest());
    let settled = false;
    void t.docs.digests.settled().then(() => (settled = true));
    await Promise.resolve();
    expect(settled).toBe(true);
    const result = await applying;
    expect(t.docs.digests.statusDigest()).toEqual({ digest: source.docs.digests.regionDigest(), exact: true });
    expect(result).toMatchObject({ applied: entries.length - keys.length, quarantined: 0 });
    const decoded = t.docs.decodedAgain() - before;
    expect(decoded).toBeLessThan(entries.length / 4);
    const expected = (i: number) => Object.fromEntries(Array.from({ length: 60 }, (_, r) => [`r${r}`, i]));
    keys.forEach((key, i) => expect(t.docs.read(key).value).toEqual(i < removed.length ? null : expected(i)));
    expect(t.docs.digests.regionDigest()).toBe(source.docs.digests.regionDigest());
    // Anti-entropy reads the store's summaries: exact, deleted flags included, once it has settled them.
    await t.docs.digests.bucketDigests();
    await source.docs.digests.bucketDigests();
    expect(t.store.staleSummaries(null, 1000)).toEqual([]);
    for (const key of keys) expect(t.store.summary(key)).toEqual(source.store.summary(key));
    expect(t.docs.list('c', null, 1000).ids).toEqual(source.docs.list('c', null, 1000).ids);
    const digest = t.docs.digests.regionDigest();
    await closeNode(t);
    const reopened = node(t.dir);
    expect(reopened.docs.digests.regionDigest()).toBe(digest);
    keys.forEach((key, i) => expect(reopened.docs.read(key).value).toEqual(i < removed.length ? null : expected(i)));
  });

  it('applies a backlog\'s entries past what may be held beside a document, building it with those held in the same commit', async () => {
    const { source, t, entries: entriesSoFar } = backlogPair();
    // 150 changes per document: more than the 64 held beside one, so commits meet a document with some held already.
    const keys = Array.from({ length: 20 }, (_, i) => docKey('c', `cap${i}`));
    for (let round = 0; round < 150; round++) await Promise.all(keys.map((key, i) => source.docs.patch(key, { [`r${round % 10}`]: round * 100 + i })));
    const entries = entriesSoFar();
    await t.docs.applyRemote(entries.slice(0, keys.length), 'r0' as RegionId);
    const result = await t.docs.applyRemote(entries.slice(keys.length), 'r0' as RegionId);
    expect(result).toMatchObject({ applied: entries.length - keys.length, quarantined: 0 });
    for (const key of keys) expect(t.docs.read(key).value).toEqual(source.docs.read(key).value);
    expect(t.docs.digests.regionDigest()).toBe(source.docs.digests.regionDigest());
  });

  it('counts structs waiting for others in a document read while the backlog entries held beside it were committed', async () => {
    const { source, t, entries: entriesSoFar } = backlogPair();
    const key = docKey('c', 'waits');
    const others = Array.from({ length: 100 }, (_, i) => docKey('c', `w${i}`));
    const keys = [key, ...others];
    await Promise.all(keys.map((k, i) => source.docs.patch(k, { r0: i })));
    // Only the others change again: no later entry of the backlog builds the document.
    for (let round = 1; round < 40; round++) await Promise.all(others.map((k, i) => source.docs.patch(k, { [`r${round}`]: i })));
    // Two changes by an editor of the document; only the second reaches this region, so it waits for the first.
    const editor = new Y.Doc();
    editor.clientID = 7;
    Y.applyUpdate(editor, source.docs.readYjs(key)!);
    const before = Y.encodeStateVector(editor);
    editor.getMap('root').set('first', 1);
    const afterFirst = Y.encodeStateVector(editor);
    editor.getMap('root').set('second', 2);
    const second = Y.encodeStateAsUpdate(editor, afterFirst);
    expect(Y.encodeStateAsUpdate(editor, before).byteLength).toBeGreaterThan(second.byteLength);
    const entries = entriesSoFar();
    entries.splice(keys.length + 1, 0, { origin: source.docs.writer, seq: 0, doc: key, ts: Date.now(), update: second });
    entries.forEach((e, i) => (e.seq = i + 1));
    await t.docs.applyRemote(entries.slice(0, keys.length), 'r0' as RegionId);
    expect(t.docs.pendingDocs()).toBe(0);
    // A reader builds the document just as the commit holding the waiting change (beside its encoded state) starts.
    let readDuring = false;
    beforeCommit = (batch) => {
      if (readDuring || !batch.entries.some((e) => e.update === second)) return;
      readDuring = true;
      // Held beside the encoded state, not applied: the commit cannot say whether the document holds content.
      expect(batch.docs.find((d) => d.doc === key)).toEqual({ doc: key });
      expect(t.docs.read(key).value).not.toHaveProperty('second');
    };
    await t.docs.applyRemote(entries.slice(keys.length), 'r0' as RegionId);
    expect(readDuring).toBe(true);
    expect(t.docs.pendingDocs()).toBe(1);
    expect(t.docs.read(key).value).not.toHaveProperty('second');
  });

  it('builds a document from the parts Yjs takes, one by one, skipping each it refuses', () => {
    const editor = new Y.Doc();
    editor.clientID = 3;
    const parts: Uint8Array[] = [];
    editor.on('update', (u: Uint8Array) => parts.push(u));
    for (let i = 0; i < 50; i++) editor.getMap('root').set(`k${i % 7}`, i);
    const whole = Y.encodeStateAsUpdate(editor);
    // Two parts Yjs refuses among them.
    parts.splice(40, 0, Uint8Array.from([0xff, 0xff, 0xff]));
    parts.splice(10, 0, Uint8Array.from([1, 200]));
    const { ydoc, skipped } = yDocSkipping(parts, 77);
    expect(skipped).toBe(2);
    expect(ydoc.clientID).toBe(77);
    expect(Y.encodeStateAsUpdate(ydoc)).toEqual(whole);
  });

  it('skips a stored entry Yjs refuses when it builds a document, and marks the document for repair', async () => {
    const n = node();
    const key = docKey('c', 'refused');
    await n.docs.put(key, { a: 1 });
    await n.docs.patch(key, { b: 2 });
    await closeNode(n);
    // Stored as entries held beside an encoded state are: checked, but not applied until the document is built.
    const raw = openStore({ dataDir: n.dir, region: 'r1' as RegionId, synchronous: 'full', logger });
    await raw.commit({ entries: [{ origin: 'r0~x' as never, seq: 1, doc: key, ts: 0, update: new Uint8Array([1, 2, 3, 250, 250, 250]) }], docs: [{ doc: key }] });
    await raw.close();
    const again = node(n.dir);
    expect(again.docs.read(key).value).toEqual({ a: 1, b: 2 });
    expect(again.store.summary(key)?.digest.every((b) => b === 0)).toBe(true);
    // Written on under a fresh client id: the skipped entry's clocks are not reused.
    await again.docs.patch(key, { c: 3 });
    expect(again.docs.read(key).value).toEqual({ a: 1, b: 2, c: 3 });
  });

  it('holds decoded what peers change again within its in-use window, and encoded what they change once', async () => {
    const source = node();
    // A window of a second here (30 s by default), so that the test can outwait it.
    const t = node(undefined, 1000, 100, 1000);
    const updates: { doc: ReturnType<typeof docKey>; update: Uint8Array }[] = [];
    source.docs.onCommitted((entries) => entries.forEach((e) => updates.push({ doc: e.doc, update: e.update })));
    const even = Array.from({ length: 10 }, (_, i) => docKey('c', `e${i}`));
    const odd = Array.from({ length: 10 }, (_, i) => docKey('c', `o${i}`));
    // The source writes them in the order the target receives them (a peer's log is applied in order).
    const order = [[even, 0], [odd, 0], [even, 1], [even, 2], [odd, 1], [odd, 2]] as const;
    for (const [keys, round] of order) await Promise.all(keys.map((key, i) => source.docs.patch(key, { [`r${round}`]: i })));
    const entries = updates.map((u, i) => ({ origin: source.docs.writer, seq: i + 1, doc: u.doc, ts: Date.now(), update: u.update }));
    let next = 0;
    const decodedAgain = async (): Promise<number> => {
      const before = t.docs.decodedAgain();
      await t.docs.applyRemote(entries.slice(next, next + 10), 'r0' as RegionId);
      next += 10;
      return t.docs.decodedAgain() - before;
    };
    // New to this region: held encoded once committed.
    expect(await decodedAgain()).toBe(0);
    expect(await decodedAgain()).toBe(0);
    // Changed again at once: decoded, and held decoded from then on.
    expect(await decodedAgain()).toBe(10);
    expect(await decodedAgain()).toBe(0);
    // Changed again only after more than a second: decoded for the change, then held encoded again.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect(await decodedAgain()).toBe(10);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect(await decodedAgain()).toBe(10);
    expect(next).toBe(entries.length);
    for (const keys of [even, odd]) keys.forEach((key, i) => expect(t.docs.read(key).value).toEqual({ r0: i, r1: i, r2: i }));
    expect(t.docs.digests.regionDigest()).toBe(source.docs.digests.regionDigest());
  });

  it('by default holds decoded what peers change again seconds later', async () => {
    const source = node();
    const t = node(undefined, 1000, 100);
    const keys = Array.from({ length: 10 }, (_, i) => docKey('c', `w${i}`));
    const updates: { doc: ReturnType<typeof docKey>; update: Uint8Array }[] = [];
    source.docs.onCommitted((committed) => committed.forEach((e) => updates.push({ doc: e.doc, update: e.update })));
    for (let round = 0; round < 3; round++) await Promise.all(keys.map((key, i) => source.docs.patch(key, { [`r${round}`]: i })));
    const entries = updates.map((u, i) => ({ origin: source.docs.writer, seq: i + 1, doc: u.doc, ts: Date.now(), update: u.update }));
    const decodedAgain = async (round: number): Promise<number> => {
      const before = t.docs.decodedAgain();
      await t.docs.applyRemote(entries.slice(round * 10, round * 10 + 10), 'r0' as RegionId);
      return t.docs.decodedAgain() - before;
    };
    expect(await decodedAgain(0)).toBe(0);
    // A document changed every few seconds is in use: decoded once, then held decoded.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(await decodedAgain(1)).toBe(10);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(await decodedAgain(2)).toBe(0);
    keys.forEach((key, i) => expect(t.docs.read(key).value).toEqual({ r0: i, r1: i, r2: i }));
  });

  it('holds a document a client created encoded until it is written again', async () => {
    const n = node(undefined, 1000, 100);
    const keys = Array.from({ length: 10 }, (_, i) => docKey('c', `n${i}`));
    const decoded = async (round: number): Promise<number> => {
      const before = n.docs.decodedAgain();
      await Promise.all(keys.map((key, i) => n.docs.patch(key, { [`r${round}`]: i })));
      return n.docs.decodedAgain() - before;
    };
    expect(await decoded(0)).toBe(0);
    // Written again (however long after): decoded once, then held decoded.
    expect(await decoded(1)).toBe(10);
    expect(await decoded(2)).toBe(0);
    keys.forEach((key, i) => expect(n.docs.read(key).value).toEqual({ r0: i, r1: i, r2: i }));
  });

  it('stores the digest of a document only peers changed, held encoded, with the commit that changed it', async () => {
    const source = node();
    const t = node(undefined, 100, 4);
    const keys = Array.from({ length: 30 }, (_, i) => docKey('c', `s${i}`));
    await Promise.all(keys.map((key, i) => source.docs.put(key, { v: i })));
    // Merged by state, as a rebuild does, and by entries, as a catch-up does.
    await Promise.all(keys.slice(0, 20).map((key) => t.docs.applyState(key, source.docs.stateForPeer(key)!, 'r0' as RegionId)));
    const updates = keys.slice(20).map((key) => source.docs.readYjs(key)!);
    await t.docs.applyRemote(keys.slice(20).map((doc, i) => ({ origin: source.docs.writer, seq: i + 1, doc, ts: Date.now(), update: updates[i]! })), 'r0' as RegionId);
    // Nothing left for the digester: no document's stored digest is stale, and each is the source's.
    expect(t.store.staleSummaries(null, 100)).toEqual([]);
    await source.docs.digests.bucketDigests();
    for (const key of keys) expect(t.store.summary(key)!.digest).toEqual(source.store.summary(key)!.digest);
    expect(t.docs.digests.regionDigest()).toBe(source.docs.digests.regionDigest());
    keys.forEach((key, i) => expect(t.docs.read(key).value).toEqual({ v: i }));
  });

  it('keeps each document\'s Yjs client id across restarts, so state vectors do not grow', async () => {
    const first = node();
    const key = docKey('c', 'stable');
    await first.docs.put(key, { a: 1 });
    await closeNode(first);
    const second = node(first.dir);
    await second.docs.patch(key, { b: 2 });
    const doc = new Y.Doc();
    Y.applyUpdate(doc, second.docs.readYjs(key)!);
    expect(Y.decodeStateVector(Y.encodeStateVector(doc)).size).toBe(1);
    expect(second.docs.read(key).value).toEqual({ a: 1, b: 2 });
  });

  it('gives a peer the whole state of a document not in memory from the store, whole and mergeable', async () => {
    const n = node(undefined, 2);
    const key = docKey('c', 'cold');
    await n.docs.put(key, { a: 1, gone: 0 });
    await n.docs.patch(key, { b: 2, gone: null });
    await n.docs.put(docKey('c', 'x'), { x: 1 });
    await n.docs.put(docKey('c', 'y'), { y: 1 });
    // Evicted: the state is the stored parts merged, not a loaded document.
    const state = n.docs.stateForPeer(key)!;
    const peer = node();
    await peer.docs.applyState(key, state, 'r1' as RegionId);
    expect(peer.docs.read(key).value).toEqual({ a: 1, b: 2 });
    const merged = new Y.Doc();
    Y.applyUpdate(merged, state);
    expect(Y.encodeStateVector(merged)).toEqual(n.docs.stateVector(key));
  });

  it('diffs against a state vector naming many clients the document does not hold as against its own clients alone, and refuses one cut short', async () => {
    const n = node();
    const key = docKey('c', 'sv');
    await n.docs.put(key, { a: 1 });
    const first = n.docs.stateVector(key)!;
    await n.docs.patch(key, { b: 2 });
    // The document's vector after the first write, amid 100,000 clients it never heard of.
    const own = Y.decodeStateVector(first);
    const e = encoding.createEncoder();
    encoding.writeVarUint(e, own.size + 100_000);
    for (let i = 0; i < 100_000; i++) {
      encoding.writeVarUint(e, 2_000_000_000 + i);
      encoding.writeVarUint(e, 5);
    }
    for (const [client, clock] of own) {
      encoding.writeVarUint(e, client);
      encoding.writeVarUint(e, clock);
    }
    const wide = encoding.toUint8Array(e);
    const diff = n.docs.readYjs(key, wide)!;
    expect(diff).toEqual(n.docs.readYjs(key, first));
    const reader = new Y.Doc();
    Y.applyUpdate(reader, n.docs.readYjs(key, Y.encodeStateVector(new Y.Doc()))!);
    expect(reader.getMap('root').get('b')).toBe(2);
    expect(() => n.docs.readYjs(key, wide.subarray(0, wide.length - 3))).toThrow(/sv is not a valid Yjs state vector/);
  });

  it('diffs the structs it holds waiting for others against a state vector as well, sending nothing a reader holds', async () => {
    const n = node();
    const key = docKey('c', 'waiting');
    const first = new Y.Doc();
    first.clientID = 5;
    const opening = captured(first, () => first.getXmlFragment('prosemirror').insert(0, [new Y.XmlElement('paragraph')]));
    const other = new Y.Doc();
    other.clientID = 6;
    Y.applyUpdate(other, opening);
    // A long text inside the paragraph, arriving before the paragraph: it waits.
    const text = captured(other, () => (other.getXmlFragment('prosemirror').get(0) as Y.XmlElement).insert(0, [new Y.XmlText('y'.repeat(50_000))]));
    expect(await n.docs.applyRemote([{ origin: 'r9~aa' as WriterId, seq: 1, doc: key, ts: Date.now(), update: text }], 'r9' as RegionId))
      .toMatchObject({ applied: 1, quarantined: 0 });
    expect(n.docs.pendingDocs()).toBe(1);
    expect(n.docs.readYjs(key)!.byteLength).toBeGreaterThan(50_000);
    // A reader holding what is waiting is sent next to nothing.
    expect(n.docs.readYjs(key, Y.encodeStateVector(other))!.byteLength).toBeLessThan(100);
  });

  it('stores, reloads and hands peers an editor document whose changes wait for missing ones, losing none', async () => {
    // An editor's document: an element, then another client's heading with formatted text inside it.
    const editor = new Y.Doc();
    editor.clientID = 5;
    const first = captured(editor, () => {
      const p = new Y.XmlElement('paragraph');
      p.setAttribute('align', 'left');
      editor.getXmlFragment('prosemirror').insert(0, [p]);
    });
    const other = new Y.Doc();
    other.clientID = 6;
    Y.applyUpdate(other, first);
    const second = captured(other, () => {
      const heading = new Y.XmlElement('heading');
      const text = new Y.XmlText();
      text.insert(0, 'hello', { bold: true });
      heading.insert(0, [text]);
      (other.getXmlFragment('prosemirror').get(0) as Y.XmlElement).insert(0, [heading]);
    });
    const dir = mkdtempSync(join(tmpdir(), 'meridian-docs-'));
    const key = docKey('c', 'waiting-editor');
    const n = node(dir);
    // The second change alone: it waits for the first, and the merge is stored as a snapshot.
    await n.docs.applyState(key, second, 'r0' as RegionId);
    expect(n.docs.pendingDocs()).toBe(1);
    await closeNode(n);
    // Read back from the store: the state a peer gets, and the document loaded again.
    const again = node(dir);
    const marked: string[] = [];
    again.store.onCorrupt((doc) => marked.push(doc));
    const forPeer = loadedFrom(again.docs.stateForPeer(key)!);
    Y.applyUpdate(forPeer, first);
    expect(forPeer.getXmlFragment('prosemirror').toString()).toBe(other.getXmlFragment('prosemirror').toString());
    await again.docs.applyState(key, first, 'r0' as RegionId);
    expect(again.docs.pendingDocs()).toBe(0);
    const loaded = loadedFrom(again.docs.readYjs(key)!);
    expect(loaded.getXmlFragment('prosemirror').toString()).toBe('<paragraph align="left"><heading><bold>hello</bold></heading></paragraph>');
    // Nothing stored was taken for damage.
    expect(marked).toEqual([]);
  });

  it('applies entries from a peer once, in order, and skips entries beyond a gap', async () => {
    const source = node();
    const target = node();
    const key = docKey('c', 'remote');
    const updates: Uint8Array[] = [];
    source.docs.onCommitted((entries) => entries.forEach((e) => updates.push(e.update)));
    await source.docs.put(key, { n: 1 });
    await source.docs.patch(key, { m: 2 });
    const entries = updates.map((update, i) => ({ origin: source.docs.writer, seq: i + 1, doc: key, ts: Date.now(), update }));
    const gap = await target.docs.applyRemote([entries[1]!], 'r0' as RegionId);
    expect(gap).toEqual({ applied: 0, duplicates: 0, gaps: 1, quarantined: 0 });
    expect(await target.docs.applyRemote(entries, 'r0' as RegionId)).toEqual({ applied: 2, duplicates: 0, gaps: 0, quarantined: 0 });
    expect(await target.docs.applyRemote(entries, 'r0' as RegionId)).toEqual({ applied: 0, duplicates: 2, gaps: 0, quarantined: 0 });
    expect(target.docs.read(key).value).toEqual({ m: 2, n: 1 });
    expect(target.docs.digests.regionDigest()).toBe(source.docs.digests.regionDigest());
  });

  it('applies entries that wait for an origin behind the others, and converges once it arrives', async () => {
    // Two regions write one document, each after taking the other's writes:
    // b's updates depend on a's. A third region gets b's first.
    const a = node();
    const b = node();
    const key = docKey('c', 'hot');
    const fromA: NewLogEntry[] = [];
    const fromB: NewLogEntry[] = [];
    a.docs.onCommitted((entries) => entries.forEach((e) => e.origin === a.docs.writer && fromA.push(e)));
    b.docs.onCommitted((entries) => entries.forEach((e) => e.origin === b.docs.writer && fromB.push(e)));
    for (let round = 0; round < 40; round++) {
      // Each overwrites `last` as the other left it: its update names the other's value as its origin.
      await a.docs.ops(key, [{ op: 'increment', path: ['n'], by: 1 }, { op: 'add', path: ['seen'], value: `a${round}` }, { op: 'set', path: ['last'], value: `a${round}` }]);
      await b.docs.applyRemote(fromA.slice(-1), 'r0' as RegionId);
      await b.docs.ops(key, [{ op: 'increment', path: ['n'], by: 1 }, { op: 'add', path: ['seen'], value: `b${round}` }, { op: 'set', path: ['last'], value: `b${round}` }]);
    }
    const target = node();
    const early = await target.docs.applyRemote(fromB.slice(0, 30), 'r2' as RegionId);
    expect(early).toEqual({ applied: 30, duplicates: 0, gaps: 0, quarantined: 0 });
    expect(target.docs.pendingDocs()).toBe(1);
    expect(await target.docs.applyRemote(fromA, 'r0' as RegionId)).toEqual({ applied: 40, duplicates: 0, gaps: 0, quarantined: 0 });
    expect(await target.docs.applyRemote(fromB, 'r2' as RegionId)).toEqual({ applied: 10, duplicates: 30, gaps: 0, quarantined: 0 });
    expect(target.docs.pendingDocs()).toBe(0);
    expect(target.docs.read(key).value).toEqual(b.docs.read(key).value);
    expect(target.docs.digestParts(key)).toEqual(b.docs.digestParts(key));
    // What it logged replays to the same document.
    await closeNode(target);
    const reopened = node(target.dir);
    expect(reopened.docs.read(key).value).toEqual(b.docs.read(key).value);
  });

  it('keeps an invalid entry aside alone when it falls amid entries applied together', async () => {
    const a = node();
    const b = node();
    const key = docKey('c', 'hot-bad');
    const fromA: NewLogEntry[] = [];
    const fromB: NewLogEntry[] = [];
    a.docs.onCommitted((entries) => entries.forEach((e) => e.origin === a.docs.writer && fromA.push(e)));
    b.docs.onCommitted((entries) => entries.forEach((e) => e.origin === b.docs.writer && fromB.push(e)));
    for (let round = 0; round < 10; round++) {
      await a.docs.ops(key, [{ op: 'increment', path: ['n'], by: 1 }]);
      await b.docs.applyRemote(fromA.slice(-1), 'r0' as RegionId);
      await b.docs.ops(key, [{ op: 'increment', path: ['n'], by: 1 }]);
    }
    const target = node();
    // b's entries wait for a's; the sixth is garbage a buggy peer sent in its place.
    const frame = fromB.map((e, i) => (i === 5 ? { ...e, update: new Uint8Array([200, 1, 2]) } : e));
    expect(await target.docs.applyRemote(frame, 'r2' as RegionId)).toEqual({ applied: 9, duplicates: 0, gaps: 0, quarantined: 1 });
    expect(target.docs.versionVector().get(b.docs.writer)).toBe(10);
    // The rest of the stream goes on: a's entries land; b's after the sixth wait for it until the repair by state.
    expect(await target.docs.applyRemote(fromA, 'r0' as RegionId)).toEqual({ applied: 10, duplicates: 0, gaps: 0, quarantined: 0 });
    expect(target.docs.pendingDocs()).toBe(1);
    await target.docs.applyState(key, b.docs.readYjs(key)!, 'r2' as RegionId);
    expect(target.docs.pendingDocs()).toBe(0);
    expect(target.docs.digestParts(key)).toEqual(b.docs.digestParts(key));
  });

  it('announces what a merge by state added, or that the whole state must be read while updates wait', async () => {
    const a = node();
    const b = node();
    const key = docKey('c', 'merged');
    await a.docs.put(key, { big: 'x'.repeat(100_000) });
    await b.docs.applyState(key, a.docs.readYjs(key)!, 'r0' as RegionId);
    const heard: { doc: string; replaced: boolean; added: Uint8Array[] | null }[] = [];
    b.docs.onStateChanged((changes) => heard.push(...changes));
    // A client of b holds what b held: what the next merge adds brings it level.
    const client = new Y.Doc();
    Y.applyUpdate(client, b.docs.readYjs(key)!);
    await a.docs.patch(key, { small: 1 });
    await b.docs.applyState(key, a.docs.readYjs(key)!, 'r0' as RegionId);
    expect(heard).toHaveLength(1);
    const added = heard[0]!.added!;
    expect(added.reduce((n, u) => n + u.byteLength, 0)).toBeLessThan(1000);
    for (const u of added) Y.applyUpdate(client, u);
    expect(Y.encodeStateAsUpdate(client)).toEqual(Y.encodeStateAsUpdate(loadedFrom(b.docs.readYjs(key)!)));
    // The same state again adds nothing: nothing is announced.
    await b.docs.applyState(key, a.docs.readYjs(key)!, 'r0' as RegionId);
    expect(heard).toHaveLength(1);

    // A state that lacks what its newest structs build on: they wait in b, and
    // only the whole state (which carries them) tells a client what b holds.
    await a.docs.patch(key, { gap: 1 });
    const skipped = a.docs.readYjs(key)!;
    await a.docs.patch(key, { after: 2, small: null });
    const later = Y.diffUpdate(a.docs.readYjs(key)!, Y.encodeStateVectorFromUpdate(skipped));
    await b.docs.applyState(key, later, 'r0' as RegionId);
    expect(b.docs.pendingDocs()).toBe(1);
    expect(heard).toHaveLength(2);
    expect(heard[1]).toEqual({ doc: key, replaced: false, added: null });
  });

  it('commits a burst of peer entries in bounded turns, applying every one', async () => {
    const source = node();
    const target = node();
    const updates: { doc: ReturnType<typeof docKey>; update: Uint8Array }[] = [];
    source.docs.onCommitted((entries) => entries.forEach((e) => updates.push({ doc: e.doc, update: e.update })));
    await Promise.all(Array.from({ length: 3000 }, (_, i) => source.docs.put(docKey('c', `burst${i % 300}`), { i })));
    const entries = updates.map((u, i) => ({ origin: source.docs.writer, seq: i + 1, doc: u.doc, ts: Date.now(), update: u.update }));
    // 30 frames of 100 entries arrive in one turn, as from a peer streaming its log.
    const frames = Array.from({ length: 30 }, (_, f) => entries.slice(f * 100, f * 100 + 100));
    const applied = Promise.all(frames.map((frame) => target.docs.applyRemote(frame, 'r0' as RegionId)));
    // A client write made while the burst waits goes into the first commit, not behind the burst.
    let commitsAtAck = -1;
    const local = target.docs.put(docKey('c', 'mine'), { local: true }).then(() => (commitsAtAck = target.commits()));
    const results = await applied;
    await local;
    expect(commitsAtAck).toBe(1);
    expect(results.reduce((n, r) => n + r.applied, 0)).toBe(3000);
    // Bounded turns: at most 1024 peer entries (and a few ms of staging) per commit.
    expect(target.commits()).toBeGreaterThanOrEqual(3);
    for (const id of ['burst0', 'burst299']) {
      expect(target.docs.digestParts(docKey('c', id))).toEqual(source.docs.digestParts(docKey('c', id)));
    }
  });

  it('shows corruption in its digest however it is found, and a merge from a peer restores it', async () => {
    const key = docKey('c', 'fragile');
    const first = node();
    await first.docs.put(key, { kept: 'safe' });
    const good = first.docs.readYjs(key)!;
    const digest = first.docs.digests.regionDigest();
    await closeNode(first);
    const db = new Database(join(first.dir, 'meridian.db'));
    db.prepare('UPDATE log SET data = zeroblob(length(data))').run();
    db.close();

    const second = node(first.dir);
    expect(second.docs.digests.regionDigest()).toBe(digest);
    // Streaming the log to a peer finds the bad entry before any read loads the document.
    expect(second.store.readLog(0, 10)).toEqual([]);
    expect(second.docs.digests.regionDigest()).not.toBe(digest);
    const marked = second.docs.digests.regionDigest();
    expect(second.docs.read(key).value).toBeNull();
    expect(second.docs.digests.regionDigest()).toBe(marked);
    // Anti-entropy brings the state back, and with it the digest.
    await second.docs.applyState(key, good, 'r0' as RegionId);
    expect(second.docs.read(key).value).toEqual({ kept: 'safe' });
    expect(second.docs.digests.regionDigest()).toBe(digest);
  });

  it('keeps its digest index true to the store when merged state cannot be stored', async () => {
    const source = node();
    const key = docKey('c', 'merged');
    await source.docs.put(key, { v: 1 });
    const dir = mkdtempSync(join(tmpdir(), 'meridian-docs-'));
    dirs.push(dir);
    const store = openStore({ dataDir: dir, region: 'r1' as RegionId, synchronous: 'full', logger });
    const failing: Store = Object.create(store) as Store;
    // Merged state is stored in the commit that changes its summary: that commit fails whole.
    failing.commit = (batch) => {
      if ((batch.snapshots ?? []).length > 0) throw new Error('disk full');
      return store.commit(batch);
    };
    const docs = createDocuments({ store: failing, logger, cacheDocs: 10, yjsUpdateBytes: 1 << 20, compactIntervalMs: 0 });
    open.push({ docs, store });
    expect(docs.storageFault()).toBeNull();
    await expect(docs.applyState(key, source.docs.readYjs(key)!, 'r0' as RegionId)).rejects.toThrow(/storage refused the write/);
    // Readiness says why until a commit succeeds (test/storage-fault.test.ts).
    expect(docs.storageFault()).toBe('disk full');
    expect(docs.refusedCommits()).toBe(1);
    await docs.put(docKey('c', 'other'), { v: 2 });
    expect(docs.storageFault()).toBeNull();
    // Nothing of it is stored or indexed, so the digests still differ; a fresh index built from the store agrees.
    const digest = docs.digests.regionDigest();
    await closeNode({ docs, store });
    expect(node(dir).docs.digests.regionDigest()).toBe(digest);
    expect(digest).not.toBe(source.docs.digests.regionDigest());
  });

  it('quarantines an entry from a peer it cannot apply, holds its seq, and marks the document for repair', async () => {
    const target = node();
    const key = docKey('c', 'guarded');
    await target.docs.put(key, { safe: true });
    const before = target.docs.digests.regionDigest();
    const origin = 'r0~x' as never;
    const garbage = { origin, seq: 1, doc: key, ts: 0, update: new Uint8Array([1, 2, 3, 250, 250, 250]) };
    const later = { origin, seq: 2, doc: docKey('c', 'other'), ts: 0, update: updateOf({ n: 1 }) };
    // The commit marks it, not a write of its own on the event loop's connection (which would wait for the writer thread's lock).
    let marks = 0;
    target.store.markCorrupt = () => void marks++;
    const result = await target.docs.applyRemote([garbage, later], 'r0' as RegionId);
    expect(marks).toBe(0);
    expect(result).toMatchObject({ applied: 1, quarantined: 1, gaps: 0 });
    expect(target.docs.versionVector().get(origin)).toBe(2);
    expect(target.docs.read(key).value).toEqual({ safe: true });
    expect(target.docs.read(docKey('c', 'other')).value).toEqual({ n: 1 });
    expect(target.store.summary(key)?.digest.every((b) => b === 0)).toBe(true);
    expect(target.docs.digests.regionDigest()).not.toBe(before);
    expect(target.store.quarantine.counts().get('r0' as RegionId)).toBe(1);
    expect(target.store.quarantine.list(0, 10)).toMatchObject([{ origin, seq: 1, doc: key, peer: 'r0' }]);
    // Sent again (a reconnect), it is a duplicate: nothing more is kept.
    await target.docs.applyRemote([garbage], 'r0' as RegionId);
    expect(target.store.quarantine.counts().get('r0' as RegionId)).toBe(1);
    // The index followed the mark exactly: as one built afresh from the store says.
    const digest = target.docs.digests.regionDigest();
    await closeNode(target);
    expect(node(target.dir).docs.digests.regionDigest()).toBe(digest);
  });

  it('takes out of the index the digest the store held at the mark, though one was on its way to the disk when the entry was staged', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meridian-docs-'));
    dirs.push(dir);
    const store = openStore({ dataDir: dir, region: 'r1' as RegionId, synchronous: 'full', logger });
    // The store's writes run in order, when released: as a writer thread runs them.
    let held = false;
    const queue: (() => void)[] = [];
    const inTurn = <T>(write: () => T): Promise<T> => new Promise((resolve, reject) => {
      const go = (): void => {
        try {
          resolve(write());
        } catch (err) {
          reject(err as Error);
        }
      };
      if (held) queue.push(go);
      else go();
    });
    const ordered: Store = Object.create(store) as Store;
    ordered.commit = (batch) => inTurn(() => store.commit(batch));
    ordered.setDigests = (digests) => inTurn(() => void store.setDigests(digests));
    const docs = createDocuments({ store: ordered, logger, cacheDocs: 100, yjsUpdateBytes: 1 << 20, compactIntervalMs: 0 });
    open.push({ docs, store });
    const key = docKey('c', 'racing');
    await docs.put(key, { a: 1 });
    await docs.digests.bucketDigests();
    await docs.put(key, { a: 2 });
    docs.digests.regionDigest();
    // The new digest is posted to be stored alone; the entry is staged while it waits.
    held = true;
    void docs.digests.bucketDigests();
    const garbage = { origin: 'r0~x' as never, seq: 1, doc: key, ts: 0, update: new Uint8Array([1, 2, 3, 250, 250, 250]) };
    const applied = docs.applyRemote([garbage], 'r0' as RegionId);
    await new Promise((r) => setTimeout(r, 20));
    held = false;
    while (queue.length > 0) queue.shift()!();
    expect(await applied).toMatchObject({ quarantined: 1 });
    await new Promise((r) => setTimeout(r, 20));
    const digest = docs.digests.regionDigest();
    expect(store.summary(key)!.digest.every((b) => b === 0)).toBe(true);
    await docs.close();
    store.close();
    open.splice(open.findIndex((o) => o.docs === docs), 1);
    expect(node(dir).docs.digests.regionDigest()).toBe(digest);
  });

  it('quarantines peer entries and refuses a peer state that would grow a document past what merges may, and takes what deletes', async () => {
    const LIMIT = 4096;
    const target = node(undefined, 1000, undefined, undefined, LIMIT);
    const key = docKey('c', 'grown');
    const origin = 'r0~a' as never;
    const peer = new Y.Doc();
    const root = peer.getMap('root');
    const first = captured(peer, () => {
      root.set('\u0000live', true);
      root.set('a', 'x'.repeat(2000));
    });
    const big = captured(peer, () => root.set('b', 'y'.repeat(3000)));
    const shrink = captured(peer, () => root.delete('a'));
    const entry = (seq: number, update: Uint8Array) => ({ origin, seq, doc: key, ts: 0, update });
    // One by one, as separate frames bring them, and all three in one frame.
    expect(await target.docs.applyRemote([entry(1, first)], 'r0' as RegionId)).toMatchObject({ applied: 1, quarantined: 0 });
    expect(await target.docs.applyRemote([entry(2, big)], 'r0' as RegionId)).toMatchObject({ applied: 0, quarantined: 1 });
    expect(await target.docs.applyRemote([entry(3, shrink)], 'r0' as RegionId)).toMatchObject({ applied: 1, quarantined: 0 });
    expect(target.docs.versionVector().get(origin)).toBe(3);
    expect(target.docs.read(key).value).toEqual({});
    expect(target.store.quarantine.list(0, 10)).toMatchObject([{ origin, seq: 2, doc: key, peer: 'r0', reason: expect.stringMatching(/past the 4096 that merges from peers may grow a document to/) }]);
    // The peer's whole state holds the refused change: refused too, and the document left as it was.
    const whole = Y.encodeStateAsUpdate(peer);
    expect(await target.docs.applyState(key, whole, 'r0' as RegionId)).toEqual({ refused: expect.stringMatching(/past the 4096/) });
    expect(target.docs.read(key).value).toEqual({});
    // Once the peer has deleted it, its state is taken: after the second or so the document counts as full
    // for (see size-guard.ts), in which a state that adds structs is refused without being measured.
    root.delete('b');
    expect(await target.docs.applyState(key, Y.encodeStateAsUpdate(peer), 'r0' as RegionId)).toEqual({ refused: expect.stringMatching(/measured at \d+ bytes of state moments ago/) });
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect(await target.docs.applyState(key, Y.encodeStateAsUpdate(peer), 'r0' as RegionId)).toEqual({ refused: null });
    expect(target.docs.read(key).value).toEqual({});
    expect(Y.encodeStateAsUpdate(loadedFrom(target.docs.readYjs(key, new Uint8Array([0]))!)).byteLength).toBeLessThanOrEqual(LIMIT);
    // A new document (a rebuild's) larger than the bound is refused whole.
    const other = new Y.Doc();
    other.getMap('root').set('c', 'z'.repeat(5000));
    expect(await target.docs.applyState(docKey('c', 'new'), Y.encodeStateAsUpdate(other), 'r0' as RegionId)).toEqual({ refused: expect.stringMatching(/past the 4096/) });
    expect(target.docs.read(docKey('c', 'new')).value).toBeNull();
  });

  it('holds a backlog of peer entries to what merges may grow a document to, beside documents held encoded too', async () => {
    const LIMIT = 4096;
    const { source, t, entries: entriesSoFar } = backlogPair(LIMIT);
    const keys = Array.from({ length: 100 }, (_, i) => docKey('c', `g${i}`));
    for (let round = 0; round < 30; round++) await Promise.all(keys.map((key) => source.docs.patch(key, { [`r${round}`]: 'v'.repeat(300) })));
    const entries = entriesSoFar();
    await t.docs.applyRemote(entries.slice(0, keys.length), 'r0' as RegionId);
    const result = await t.docs.applyRemote(entries.slice(keys.length), 'r0' as RegionId);
    expect(result.quarantined).toBeGreaterThan(0);
    expect(result.applied + result.quarantined).toBe(entries.length - keys.length);
    for (const key of keys) {
      const size = t.docs.readYjs(key, new Uint8Array([0]))!.byteLength;
      // The guard's slack (1/64) at most past the bound; the source's documents are each about 20 KB.
      expect(size).toBeLessThanOrEqual(LIMIT + LIMIT / 64);
      expect(size).toBeGreaterThan(LIMIT / 2);
    }
  });

  it('refuses a local write whose update exceeds the limit, keeping what the same commit already staged', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meridian-docs-'));
    dirs.push(dir);
    const store = openStore({ dataDir: dir, region: 'r1' as RegionId, synchronous: 'full', logger });
    const docs = createDocuments({ store, logger, cacheDocs: 10, yjsUpdateBytes: 4096, compactIntervalMs: 0 });
    open.push({ docs, store });
    const key = docKey('c', 'd');
    // Both writes are staged in one commit; the second is refused.
    const [first, second] = await Promise.allSettled([docs.put(key, { a: 1 }), docs.patch(key, { big: 'x'.repeat(10_000) })]);
    expect(first.status).toBe('fulfilled');
    expect(second).toMatchObject({ status: 'rejected', reason: { code: 'body_too_large' } });
    expect(docs.read(key).value).toEqual({ a: 1 });
    await docs.patch(key, { b: 2 });
    expect(docs.read(key).value).toEqual({ a: 1, b: 2 });
    expect(docs.versionVector().get(docs.writer)).toBe(2);
  });

  it('refuses a write of more JSON nodes than the limit before any work', async () => {
    const n = node();
    const body = Object.fromEntries(Array.from({ length: 90_000 }, (_, i) => [i.toString(36), {}]));
    await expect(n.docs.put(docKey('c', 'huge'), body)).rejects.toMatchObject({ code: 'too_complex' });
    await expect(n.docs.ops(docKey('c', 'huge'), [{ op: 'set', path: ['v'], value: body }])).rejects.toMatchObject({ code: 'too_complex' });
    expect(n.docs.read(docKey('c', 'huge')).value).toBeNull();
    expect(n.docs.versionVector().size).toBe(0);
  });
});

describe('heartbeat digests', () => {
  it('leave out a large document written often while it rests between digests; anti-entropy gets the exact one', async () => {
    const { docs } = node();
    const big = docKey('notes', 'big');
    // About 6 MB: its digest takes milliseconds, well over the digester's slow mark.
    for (let part = 0; part < 12; part++) await docs.patch(big, Object.fromEntries(Array.from({ length: 500 }, (_, i) => [`k${part}_${i}`, 'x'.repeat(1000)])));
    await docs.put(docKey('notes', 'small'), { n: 0 });
    // Digested twice, slow both times: surely large.
    expect(docs.digests.regionDigestIfCheap()).not.toBeNull();
    await docs.patch(big, { n: 1 });
    expect(docs.digests.regionDigestIfCheap()).not.toBeNull();
    for (let n = 2; n < 6; n++) {
      await docs.patch(big, { n });
      await docs.patch(docKey('notes', 'small'), { n });
      expect(docs.digests.heartbeatDigest()).toBeNull();
    }
    const exact = docs.digests.regionDigestIfCheap();
    expect(exact).not.toBeNull();
    expect(docs.digests.heartbeatDigest()).toBe(exact);
    expect(docs.digests.regionDigest()).toBe(exact);
  });
});

describe('lists while a backlog is applied', () => {
  it('leave out a document deleted, and show one created again, as soon as the region covers the change', async () => {
    const { source, t, entries } = backlogPair();
    const keys = Array.from({ length: 50 }, (_, i) => docKey('notes', `d${i}`));
    for (const [i, key] of keys.entries()) await source.docs.put(key, { i });
    await source.docs.remove(keys[8]!);
    const before = entries().length;
    await t.docs.applyRemote(entries(), 'r0' as RegionId);
    // Cut off meanwhile: one document deleted, one created again, thousands of other writes.
    const deleted = (await source.docs.remove(keys[7]!))!;
    const recreated = await source.docs.put(keys[8]!, { again: true });
    for (let i = 0; i < 2000; i++) await source.docs.put(docKey('other', `o${i}`), { i });
    for (const [i, key] of keys.entries()) if (i !== 7 && i !== 8) await source.docs.patch(key, { j: 1 });
    // Healed: the backlog arrives in frames, applied as they come.
    const backlog = entries().slice(before);
    const applying = [];
    for (let i = 0; i < backlog.length; i += 200) applying.push(t.docs.applyRemote(backlog.slice(i, i + 200), 'r0' as RegionId));
    const want = new Map([[deleted.origin, Math.max(deleted.seq, recreated.seq)]]);
    await expect.poll(() => covers(t.docs.versionVector(), want), { interval: 1 }).toBe(true);
    const listed = t.docs.list('notes', null, 100).ids;
    expect(listed).not.toContain('d7');
    expect(listed).toContain('d8');
    await Promise.all(applying);
    expect(t.docs.list('notes', null, 100).ids).toEqual(source.docs.list('notes', null, 100).ids);
  }, 60_000);
});

describe('an editor that moved from another region', () => {
  it('is told to send again the writes of that region not replicated here yet, not refused for good, and they compare as held once they are', async () => {
    const { source, t, entries } = backlogPair();
    const key = docKey('c', 'moved');
    await source.docs.put(key, { a: 1 });
    await source.docs.patch(key, { b: 2 });
    // Here: the first write only (the region that took the second failed before it replicated).
    await t.docs.applyRemote(entries().slice(0, 1), 'r0' as RegionId);
    // The editor synced with the source region, then edited; its sync sends what this region lacks.
    const editor = loadedFrom(source.docs.readYjs(key)!);
    editor.clientID = 77;
    editor.getMap('root').set('c', 3);
    const sync = Y.encodeStateAsUpdate(editor, t.docs.stateVector(key)!);
    await expect(t.docs.applyYjs(key, sync)).rejects.toMatchObject({ code: 'invalid_update' });
    expect(t.docs.read(key).value).toEqual({ a: 1 });
    // Under a region's id no writer here knows of, it is refused for good, as before.
    const forged = new Y.Doc();
    forged.clientID = 2 ** 32 + 7;
    forged.getMap('root').set('x', 1);
    await expect(t.docs.applyYjs(key, Y.encodeStateAsUpdate(forged))).rejects.toMatchObject({ code: 'client_id_conflict' });
    // Replicated: the same sync is taken, the region's structs compared as held.
    await t.docs.applyRemote(entries().slice(1), 'r0' as RegionId);
    await t.docs.applyYjs(key, sync);
    expect(t.docs.read(key).value).toEqual({ a: 1, b: 2, c: 3 });
  });
});

describe('concurrent inserts at one place at two regions', () => {
  it('are merged without Yjs placing each item against all the others, and the document reloads the same', async () => {
    const { source, t, entries } = backlogPair();
    const key = docKey('c', 'prepends');
    const n = 10_000;
    /** N characters inserted one by one at the start of one text, by a client with this Yjs id. */
    const prepends = (clientId: number, char: string): Uint8Array => {
      const editor = new Y.Doc();
      editor.clientID = clientId;
      for (let i = 0; i < n; i++) editor.getText('t').insert(0, char);
      return Y.encodeStateAsUpdate(editor);
    };
    const here = prepends(1_000, 'a');
    const there = prepends(2_000, 'b');
    // Each region admits its own client's update: nothing concurrent there.
    await t.docs.applyYjs(key, here);
    await source.docs.applyYjs(key, there);
    // Applied here one item at a time, each of the peer's (the higher id)
    // would scan all of this region's: 10^8 steps, about half a minute.
    const before = rebuiltDocs();
    const result = await t.docs.applyRemote(entries(), 'r0' as RegionId);
    expect(result).toMatchObject({ applied: 1, quarantined: 0 });
    // Built anew (once as it is applied, or as held beside its encoded state, once more for each copy read from it).
    expect(rebuiltDocs()).toBeGreaterThan(before);
    // What a replica holding both has, built in Yjs's own order.
    const expected = loadedFrom(Y.mergeUpdates([here, there])).getText('t').toString();
    expect(expected).toHaveLength(2 * n);
    expect(loadedFrom(t.docs.readYjs(key)!).getText('t').toString()).toBe(expected);
    // The other way round (the lower id's items placed among the higher's) costs a pass.
    await t.docs.digests.settled();
    const afterFirst = rebuiltDocs();
    await source.docs.applyRemote([{ origin: t.docs.writer, seq: 1, doc: key, ts: Date.now(), update: here }], 'r1' as RegionId);
    await source.docs.digests.settled();
    expect(rebuiltDocs()).toBe(afterFirst);
    expect(loadedFrom(source.docs.readYjs(key)!).getText('t').toString()).toBe(expected);
    expect(t.docs.digestParts(key)).toEqual(source.docs.digestParts(key));
    // Loaded from the store (its own entry, then the peer's), it is built the same way.
    await t.docs.close();
    const again = node(t.dir);
    expect(loadedFrom(again.docs.readYjs(key)!).getText('t').toString()).toBe(expected);
    expect(again.docs.digestParts(key)).toEqual(source.docs.digestParts(key));
    expect(rebuiltDocs()).toBeGreaterThan(afterFirst);
  });

  it('keep a peer\'s state merged into the document earlier in the same commit when it is built anew', async () => {
    const t = node();
    const key = docKey('c', 'state-then-entry');
    const editor = new Y.Doc();
    editor.clientID = 1_000;
    for (let i = 0; i < 10_000; i++) editor.getText('t').insert(0, 'a');
    await t.docs.applyYjs(key, Y.encodeStateAsUpdate(editor));
    // A peer's state adding a key, then a peer's entry of 100 prepends by a higher id concurrent with this region's.
    const stated = new Y.Doc();
    stated.clientID = 3_000;
    stated.getMap('m').set('s1', 'from a state');
    const prepends = new Y.Doc();
    prepends.clientID = 2_000;
    for (let i = 0; i < 100; i++) prepends.getText('t').insert(0, 'b');
    // Staged in one commit: no client wrote for a while, so peer work is not held back for them.
    await new Promise((r) => setTimeout(r, 1_200));
    const before = rebuiltDocs();
    const merged = t.docs.applyState(key, Y.encodeStateAsUpdate(stated), 'r0' as RegionId);
    const applied = t.docs.applyRemote([{ origin: 'r0~01' as WriterId, seq: 1, doc: key, ts: Date.now(), update: Y.encodeStateAsUpdate(prepends) }], 'r0' as RegionId);
    expect(await merged).toEqual({ refused: null });
    expect(await applied).toMatchObject({ applied: 1 });
    expect(rebuiltDocs()).toBeGreaterThan(before);
    const held = (): { m: unknown; length: number } => {
      const doc = loadedFrom(t.docs.readYjs(key)!);
      return { m: doc.getMap('m').toJSON(), length: doc.getText('t').length };
    };
    expect(held()).toEqual({ m: { s1: 'from a state' }, length: 10_100 });
    await t.docs.close();
    const again = node(t.dir);
    expect(loadedFrom(again.docs.readYjs(key)!).getMap('m').toJSON()).toEqual({ s1: 'from a state' });
  });

  it('are counted in an entry that also writes under an id the region holds, and past the bound quarantined', async () => {
    const t = node();
    const key = docKey('c', 'colliding');
    const n = 3_000;
    const editor = (clientId: number, after: readonly Uint8Array[] = []): Y.Doc => {
      const doc = new Y.Doc();
      doc.clientID = clientId;
      for (const u of after) Y.applyUpdate(doc, u);
      return doc;
    };
    const baseDoc = editor(5);
    const baseUpdate = captured(baseDoc, () => baseDoc.getText('t').insert(0, 'or'));
    // Here: a client's run of n embeds between o and r (separate items), under Yjs id 10.
    const low = editor(10, [baseUpdate]);
    const run = captured(low, () => {
      for (let i = 0; i < n; i++) low.getText('t').insertEmbed(1 + i, { i });
    });
    await t.docs.applyYjs(key, baseUpdate);
    await t.docs.applyYjs(key, run);
    // At a peer, at once: n prepends at the same place under a higher id, and other content under id 10, clock 0.
    const high = editor(1_000, [baseUpdate]);
    const prepends = captured(high, () => {
      for (let i = 0; i < n; i++) high.getText('t').insert(1, 'h');
    });
    const other = editor(10);
    const sameId = captured(other, () => other.getMap('m').set('k', 'other content'));
    const entry = Y.mergeUpdates([prepends, sameId]);
    const refused = refusedDocLoads();
    const result = await t.docs.applyRemote([{ origin: 'r0~01' as WriterId, seq: 1, doc: key, ts: Date.now(), update: entry }], 'r0' as RegionId);
    // Applied in turn (as colliding updates are) each prepend would scan the whole run: n x n steps.
    expect(result).toMatchObject({ applied: 0, quarantined: 1 });
    expect(refusedDocLoads()).toBeGreaterThan(refused);
    const held = loadedFrom(t.docs.readYjs(key)!);
    // The document as it was: o, the run, r.
    expect(held.getText('t').toString()).toBe('or');
    expect(held.getText('t').toDelta()).toHaveLength(n + 2);
  });

  it('are placed one by one while that costs less than building the document anew', async () => {
    const { source, t, entries } = backlogPair();
    const small = docKey('c', 'small');
    const large = docKey('c', 'large');
    /** A client's updates: `fill` map keys (in updates of 25,000), then `n` characters inserted one by one at the start of a text. */
    const prepends = (clientId: number, n: number, fill = 0): Uint8Array[] => {
      const editor = new Y.Doc();
      editor.clientID = clientId;
      const updates: Uint8Array[] = [];
      for (let from = 0; from < fill; from += 25_000) {
        updates.push(captured(editor, () => {
          for (let i = from; i < from + 25_000; i++) editor.getMap('m').set(`k${i}`, i);
        }));
      }
      updates.push(captured(editor, () => {
        for (let i = 0; i < n; i++) editor.getText('t').insert(0, 'a');
      }));
      return updates;
    };
    // 1,100 x 500 = 550,000 steps of scanning, in both documents.
    for (const u of prepends(1_000, 1_100)) await t.docs.applyYjs(small, u);
    for (const u of prepends(1_000, 1_100, 100_000)) await t.docs.applyYjs(large, u);
    for (const u of prepends(2_000, 500)) await source.docs.applyYjs(small, u);
    for (const u of prepends(2_000, 500)) await source.docs.applyYjs(large, u);
    const before = rebuiltDocs();
    await t.docs.applyRemote(entries().slice(0, 1), 'r0' as RegionId);
    expect(loadedFrom(t.docs.readYjs(small)!).getText('t').toString()).toHaveLength(1_600);
    await t.docs.digests.settled();
    const afterSmall = rebuiltDocs();
    expect(afterSmall).toBeGreaterThan(before);
    // Rebuilding a document of 100,000 structs costs more than the scan.
    await t.docs.applyRemote(entries().slice(1), 'r0' as RegionId);
    expect(loadedFrom(t.docs.readYjs(large)!).getText('t').toString()).toHaveLength(1_600);
    await t.docs.digests.settled();
    expect(rebuiltDocs()).toBe(afterSmall);
  });
});

describe('updates held back for missing dependencies', () => {
  it('are named by their mark without decoding a large document held encoded; a small one is named', async () => {
    // One document held decoded at a time: the others are held encoded.
    const t = node(undefined, 1000, 1);
    const large = docKey('c', 'held-back-large');
    const small = docKey('c', 'held-back-small');
    for (let part = 0; part < 5; part++) {
      const fields: Record<string, string> = {};
      for (let i = 0; i < 4_000; i++) fields[`k${part}_${i}`] = `value ${i}`;
      await t.docs.patch(large, fields);
    }
    await t.docs.put(small, { a: 1 });
    const origin = 'r0~01' as WriterId;
    await t.docs.applyRemote([large, small].map((doc, i) => ({ origin, seq: i + 1, doc, ts: Date.now(), update: danglingUpdate() })), 'r0' as RegionId);
    await t.docs.put(docKey('c', 'other'), { b: 2 });
    expect(t.docs.pendingDocs()).toBe(2);
    const decoded = t.docs.decodedAgain();
    expect(t.docs.pendingMark(large)).toBeNull();
    expect(t.docs.decodedAgain()).toBe(decoded);
    expect(t.docs.pendingMark(small)).not.toBeNull();
  });
});

describe('conflict records', () => {
  it('are paged by the bytes of their lost states as well as by count', async () => {
    const n = node();
    const doc = docKey('c', 'conflicted');
    await n.docs.put(doc, { kept: 1 });
    // Records as a commit keeps them, each lost state about 400 bytes.
    const db = new Database(join(n.dir, 'meridian.db'));
    const insert = db.prepare('INSERT INTO conflicts (doc, at, winner, kept_digest, lost_digest, lost_state) VALUES (?, ?, ?, ?, ?, ?)');
    for (let i = 0; i < 5; i++) {
      const lost = new Y.Doc();
      lost.getMap('root').set('lost', `${i}`.repeat(400));
      insert.run(doc, Date.now(), 'r2', Buffer.alloc(32), Buffer.alloc(32, i + 1), Buffer.from(Y.encodeStateAsUpdate(lost)));
    }
    db.close();

    const seen: string[] = [];
    let after = 0;
    for (let pages = 1; ; pages++) {
      const page = await n.docs.conflicts(doc, after, 100, 1000, 'test');
      expect(page.conflicts.length).toBe(pages < 3 ? 2 : 1);
      seen.push(...page.conflicts.map((c) => String((JSON.parse(c.valueJson) as { lost: string }).lost[0])));
      if (page.next === null) break;
      after = page.next;
    }
    expect(seen).toEqual(['0', '1', '2', '3', '4']);
    // A state larger than the bound still comes, alone; the count bounds a page too.
    expect((await n.docs.conflicts(doc, 0, 100, 10, 'test')).conflicts).toHaveLength(1);
    const three = await n.docs.conflicts(doc, 0, 3, 1 << 20, 'test');
    expect(three.conflicts).toHaveLength(3);
    expect(three.next).toBe(three.conflicts[2]!.id);
    expect((await n.docs.conflicts(doc, three.next!, 3, 1 << 20, 'test')).next).toBeNull();
  });
});

describe('compaction of a large document', () => {
  it('waits for entries in proportion to its snapshot, while a small document is compacted at every tick', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meridian-docs-'));
    dirs.push(dir);
    const store = openStore({ dataDir: dir, region: 'r1' as RegionId, synchronous: 'off', logger });
    const docs = createDocuments({ store, logger, cacheDocs: 100, yjsUpdateBytes: 1 << 20, compactIntervalMs: 20, compactAfterEntries: 1 });
    open.push({ docs, store });
    const big = docKey('c', 'big');
    const small = docKey('c', 'small');
    // About 400 KB of state: a hundred entries' worth at BYTES_PER_ENTRY.
    await docs.put(big, Object.fromEntries(Array.from({ length: 400 }, (_, i) => [`k${i}`, 'x'.repeat(1000)])));
    await docs.put(small, { n: 0 });
    const snapshotLsn = (doc: typeof big): number => store.loadDoc(doc)?.snapshotLsn ?? 0;
    await waitUntil(() => snapshotLsn(big) > 0 && snapshotLsn(small) > 0);
    const compactedBig = snapshotLsn(big);
    for (let i = 1; i <= 20; i++) {
      await docs.patch(big, { n: i });
      await docs.patch(small, { n: i });
    }
    await waitUntil(() => store.loadDoc(small)!.entries.length === 0);
    // Many ticks later the large one still waits: 20 entries are far fewer than its size asks for.
    await new Promise((r) => setTimeout(r, 200));
    expect(snapshotLsn(big)).toBe(compactedBig);
    expect(store.loadDoc(big)!.entries).toHaveLength(20);
    expect(docs.read(big)?.value).toMatchObject({ n: 20 });
  });
});

describe('compaction of updates whose merge every load places item by item', () => {
  it('keeps them in the order taken, so that the document loads within the bound after a restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meridian-docs-'));
    dirs.push(dir);
    const opened = (): { docs: Documents; store: Store } => {
      const store = openStore({ dataDir: dir, region: 'r1' as RegionId, synchronous: 'off', logger });
      const docs = createDocuments({ store, logger, cacheDocs: 100, yjsUpdateBytes: 1 << 20, compactIntervalMs: 20, compactAfterEntries: 1 });
      const handle = { docs, store };
      open.push(handle);
      return handle;
    };
    const first = opened();
    const key = docKey('c', 'quadratic');
    const plain = docKey('c', 'plain');
    // 10^6 steps merged, past the bound of 500,000, in a state small enough for the compactor to try (under 64 KiB).
    const { updates, content } = quadraticMerge(1_000);
    // Each admitted as a client's update, cheap in this order; taken together, so that no compaction comes between.
    await Promise.all(updates.map((u) => first.docs.applyYjs(key, u)));
    await first.docs.put(plain, { n: 1 });
    // Until it is compacted, or a compaction of it was withheld (and the other document compacted).
    await waitUntil(() => (first.docs.withheldSnapshots() > 0 || first.store.loadDoc(key)!.entries.length === 0)
      && (first.store.loadDoc(plain)?.snapshotLsn ?? 0) > 0);
    // At least its last entry is kept apart (earlier ones may have been compacted before the last came: their merge
    // loads in a pass).
    expect(first.store.loadDoc(key)!.entries.length).toBeGreaterThan(0);
    expect(first.docs.withheldSnapshots()).toBeGreaterThan(0);
    await first.docs.close();
    const again = opened();
    const refused = refusedDocLoads();
    const loaded = new Y.Doc();
    Y.applyUpdate(loaded, again.docs.readYjs(key)!);
    expect(contentOf(loaded)).toBe(content);
    expect(refusedDocLoads()).toBe(refused);
  });

  it('refuse a snapshot of their merge (as an earlier version stored it) at once, and serve other documents', async () => {
    const t = node();
    const key = docKey('c', 'quadratic');
    const { updates } = quadraticMerge(3_000);
    for (const u of updates) await t.docs.applyYjs(key, u);
    await t.docs.put(docKey('c', 'plain'), { n: 1 });
    await t.docs.close();
    const store = openStore({ dataDir: t.dir, region: 'r1' as RegionId, synchronous: 'off', logger });
    await store.saveSnapshots([{ doc: key, state: Y.mergeUpdates(updates), uptoLsn: store.loadDoc(key)!.entries.at(-1)!.lsn }]);
    store.close();
    const again = node(t.dir);
    const refused = refusedDocLoads();
    expect(() => again.docs.read(key)).toThrow(expect.objectContaining({ code: 'unavailable', status: 503 }));
    expect(refusedDocLoads()).toBe(refused + 1);
    // Refused again at once (nothing changed that could change the outcome), and counted.
    const loads = again.loads();
    expect(() => again.docs.read(key)).toThrow(expect.objectContaining({ code: 'unavailable' }));
    expect(refusedDocLoads()).toBe(refused + 2);
    expect(again.loads()).toBe(loads + 1);
    expect(again.docs.read(docKey('c', 'plain')).value).toEqual({ n: 1 });
    // Its state and state vector are still read, from the store without building it; its digest is not known.
    expect(Buffer.from(Y.encodeStateVectorFromUpdate(again.docs.readYjs(key)!)).equals(Buffer.from(Y.encodeStateVectorFromUpdate(Y.mergeUpdates(updates))))).toBe(true);
    expect(again.docs.stateVector(key)).not.toBeNull();
    expect(again.docs.digestParts(key)).toBeNull();
    // A peer's state for it is refused, and its offer of a conflict left unresolved: neither fails the link.
    expect((await again.docs.applyState(key, updateOf({ s: 1 }), 'r0' as RegionId)).refused).toMatch(/bound on placement work/);
    expect(await again.docs.replaceState(key, updateOf({ s: 1 }), 'r0' as RegionId)).toEqual({ outcome: 'unrelated', mine: null });
  });

  it('are not stored merged by a peer\'s state that adds nothing to them', async () => {
    const t = node();
    const key = docKey('c', 'quadratic');
    const { updates } = quadraticMerge(3_000);
    for (const u of updates) await t.docs.applyYjs(key, u);
    // What anti-entropy sends for a document whose digests differ, when the peer holds nothing more.
    expect(await t.docs.applyState(key, Y.encodeStateAsUpdate(new Y.Doc()), 'r0' as RegionId)).toEqual({ refused: null });
    await t.docs.settled(key);
    expect(t.store.loadDoc(key)).toMatchObject({ snapshot: null, entries: updates.map(() => expect.anything()) });
  });

  it('a peer\'s state that adds only what waits for missing dependencies is stored all the same', async () => {
    const t = node();
    const key = docKey('c', 'waiting');
    const first = new Y.Doc();
    first.clientID = 60;
    first.getArray('l').insert(0, ['x0']);
    const x0 = Y.encodeStateAsUpdate(first);
    const editor = new Y.Doc();
    editor.clientID = 50;
    Y.applyUpdate(editor, x0);
    const a1 = captured(editor, () => editor.getArray('l').insert(1, ['a1']));
    const a2 = captured(editor, () => editor.getArray('l').insert(2, ['a2']));
    // Here a1 waits for x0; a peer that lacks x0 too sends its state, a1 and a2, both waiting (Yjs emits nothing).
    await t.docs.applyRemote([{ origin: 'r0~01' as WriterId, seq: 1, doc: key, ts: Date.now(), update: a1 }], 'r0' as RegionId);
    expect(await t.docs.applyState(key, Y.mergeUpdates([a1, a2]), 'r2' as RegionId)).toEqual({ refused: null });
    await t.docs.applyRemote([{ origin: 'r3~01' as WriterId, seq: 1, doc: key, ts: Date.now(), update: x0 }], 'r3' as RegionId);
    expect(loadedFrom(t.docs.readYjs(key)!).getArray('l').toJSON()).toEqual(['x0', 'a1', 'a2']);
    await t.docs.close();
    const again = node(t.dir);
    expect(loadedFrom(again.docs.readYjs(key)!).getArray('l').toJSON()).toEqual(['x0', 'a1', 'a2']);
  });

  it('a peer\'s state that adds held-back structs between others held back is stored all the same', async () => {
    const t = node();
    const key = docKey('c', 'waiting-gap');
    const first = new Y.Doc();
    first.clientID = 60;
    first.getMap('m').set('k', 1);
    const x = Y.encodeStateAsUpdate(first);
    const editor = new Y.Doc();
    editor.clientID = 50;
    Y.applyUpdate(editor, x);
    const k2 = captured(editor, () => editor.getMap('m').set('k', 2));
    const a = captured(editor, () => editor.getMap('m').set('a', 1));
    const b = captured(editor, () => editor.getMap('m').set('b', 2));
    // All wait for x (client 60's). Held back first: clocks 0 and 2; then a peer's state brings clock 1 between them.
    expect(await t.docs.applyState(key, Y.mergeUpdates([k2, b]), 'r2' as RegionId)).toEqual({ refused: null });
    expect(await t.docs.applyState(key, Y.mergeUpdates([k2, a]), 'r2' as RegionId)).toEqual({ refused: null });
    await t.docs.close();
    const again = node(t.dir);
    await again.docs.applyRemote([{ origin: 'r3~01' as WriterId, seq: 1, doc: key, ts: Date.now(), update: x }], 'r3' as RegionId);
    expect(loadedFrom(again.docs.readYjs(key)!).getMap('m').toJSON()).toEqual({ k: 2, a: 1, b: 2 });
  });

  it('stored merged by a peer\'s state that adds: a change refused later keeps what its commit took before it', async () => {
    const t = node();
    const key = docKey('c', 'quadratic');
    const { updates, content } = quadraticMerge(3_000);
    for (const u of updates) await t.docs.applyYjs(key, u);
    // Held live here, built in the order taken; the peer's state that adds a key is stored as the merged state.
    const peer = new Y.Doc();
    peer.clientID = 9_000;
    peer.getMap('m').set('state', 1);
    expect(await t.docs.applyState(key, Y.encodeStateAsUpdate(peer), 'r0' as RegionId)).toEqual({ refused: null });
    await t.docs.settled(key);
    expect(t.store.loadDoc(key)!.snapshot).not.toBeNull();
    // In one commit: a client's update taken, then a write refused (over yjsUpdateBytes) after it changed the live
    // copy, which is then built again from the store and its staged update: past the cap.
    const editor = new Y.Doc();
    editor.clientID = 9_001;
    const kept = captured(editor, () => editor.getMap('m').set('kept', 1));
    const refused = refusedDocLoads();
    const taken = t.docs.applyYjs(key, kept);
    const oversized = t.docs.patch(key, { big: 'x'.repeat(1.2 * (1 << 20)) });
    await expect(oversized).rejects.toMatchObject({ code: 'body_too_large' });
    await expect(taken).resolves.toBeTruthy();
    expect(refusedDocLoads()).toBeGreaterThan(refused);
    await t.docs.settled(key);
    // Not built here now: refused, while its state (with the update taken) is still read from the store.
    expect(() => t.docs.read(key)).toThrow(expect.objectContaining({ code: 'unavailable' }));
    const held = (state: Uint8Array): { text: string; m: unknown } => {
      const doc = new Y.Doc();
      Y.applyUpdate(doc, state);
      return { text: contentOf(doc), m: doc.getMap('m').toJSON() };
    };
    expect(held(t.docs.readYjs(key)!)).toEqual({ text: content, m: { state: 1, kept: 1 } });
    await t.docs.close();
    expect(held(node(t.dir).docs.readYjs(key)!)).toEqual({ text: content, m: { state: 1, kept: 1 } });
  });

  it('refuse a peer\'s state that is their merge, and leave the document as it was', async () => {
    const t = node();
    const key = docKey('c', 'quadratic');
    await t.docs.put(key, { n: 1 });
    const { updates } = quadraticMerge(3_000);
    const result = await t.docs.applyState(key, Y.mergeUpdates(updates), 'r0' as RegionId);
    expect(result.refused).toMatch(/bound on placement work/);
    expect(t.docs.read(key).value).toEqual({ n: 1 });
    await t.docs.put(key, { n: 2 });
    expect(t.docs.read(key).value).toEqual({ n: 2 });
  });
});

async function waitUntil(ok: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}
