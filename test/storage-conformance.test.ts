/**
 * The storage contract (src/storage/types.ts), asserted the same way over
 * every engine: SQLite on real files in a temp dir, writing through its
 * writer thread, and the in-memory engine. An engine is a few lines of
 * setup below; every assertion is shared. Every write is awaited, as the
 * contract allows any engine to answer with a promise.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { docKey, type DocKey, type RegionId, type WriterId } from '../src/ids.js';
import { MemoryStore, memoryVolume } from '../src/storage/memory.js';
import { openStore } from '../src/storage/sqlite.js';
import { PENDING_READ_LIMIT } from '../src/storage/pending.js';
import { MAX_CONFLICTS_PER_DOC, MAX_QUARANTINED_PER_PEER, type NewLogEntry, type Store } from '../src/storage/types.js';
import { bucketOf } from '../src/buckets.js';

const REGION = 'us-east' as RegionId;
const OTHER = 'eu-west~0123456789ab' as WriterId;
const B = 'eu-west' as RegionId;
const C = 'ap-south' as RegionId;
/** The compiled thread (the test setup builds dist/ before the tests). */
const THREAD = resolve('dist/src/storage/writer-thread.js');
const logger = pino({ level: 'silent' });

/** Opens a store, and opens it again on the same data after it was closed. */
interface Engine {
  name: string;
  open(): { store: Store; reopen: () => Store; dispose: () => void };
}

/** Bytes of lost states each engine keeps over all documents, lowered from the default for the test that fills it. */
const CONFLICT_BYTES = 16 * 1024;

const ENGINES: Engine[] = [
  {
    name: 'SQLite, through the writer thread',
    open: () => {
      const dir = mkdtempSync(join(tmpdir(), 'meridian-conformance-'));
      const open = (): Store => openStore({ dataDir: dir, region: REGION, synchronous: 'full', writerThread: true, writerThreadFile: THREAD, logger, maxConflictBytes: CONFLICT_BYTES });
      return { store: open(), reopen: open, dispose: () => rmSync(dir, { recursive: true, force: true }) };
    },
  },
  {
    name: 'memory',
    open: () => {
      const volume = memoryVolume();
      const open = (): Store => new MemoryStore(volume, REGION, CONFLICT_BYTES);
      return { store: open(), reopen: open, dispose: () => undefined };
    },
  },
];

const X = docKey('notes', 'x');
const Y = docKey('notes', 'y');

function entry(origin: WriterId, seq: number, doc: DocKey, ts = 1000 + seq): NewLogEntry {
  return { origin, seq, doc, ts, update: Uint8Array.from([seq & 0xff, 1, 2, 3]) };
}

function digest(n: number): Uint8Array {
  return new Uint8Array(32).fill(n);
}

/** Bytes as a plain array: engines may answer with a Buffer or a Uint8Array, both Uint8Array. */
function bytes(u: Uint8Array | null | undefined): number[] | null {
  return u ? [...u] : null;
}

describe.each(ENGINES)('storage contract: $name', (engine) => {
  let opened: Store[] = [];
  let dispose: () => void = () => undefined;

  function start(): { store: Store; reopen: () => Promise<Store> } {
    const { store, reopen, dispose: d } = engine.open();
    opened.push(store);
    dispose = d;
    return {
      store,
      reopen: async () => {
        await store.close();
        opened = opened.filter((s) => s !== store);
        const again = reopen();
        opened.push(again);
        return again;
      },
    };
  }

  afterEach(async () => {
    for (const store of opened) await store.close();
    opened = [];
    dispose();
  });

  it('appends in commit order under increasing lsns, and pages through the log', async () => {
    const { store } = start();
    const w = store.writer;
    const first = await store.commit({ entries: [entry(w, 1, X), entry(OTHER, 1, Y)], docs: [] });
    const second = await store.commit({ entries: [entry(w, 2, Y)], docs: [] });
    const lsns = [...first, ...second];
    expect(lsns.every((lsn, i) => i === 0 || lsn > lsns[i - 1]!)).toBe(true);
    const log = store.readLog(0, 10);
    expect(log.map((e) => e.lsn)).toEqual(lsns);
    expect(log.map((e) => [e.origin, e.seq, e.doc])).toEqual([[w, 1, X], [OTHER, 1, Y], [w, 2, Y]]);
    expect(bytes(log[0]!.update)).toEqual([1, 1, 2, 3]);
    expect(store.readLog(lsns[0]!, 1).map((e) => e.lsn)).toEqual([lsns[1]]);
    expect(store.readLog(lsns[2]!, 10)).toEqual([]);
    expect(store.hasEntry(w, 2)).toBe(true);
    expect(store.hasEntry(w, 3)).toBe(false);
    // Positions alone, as the feed reads them.
    expect(store.readLogPositions(0, 10)).toEqual(log.map(({ lsn, origin, seq, doc }) => ({ lsn, origin, seq, doc })));
    expect(store.readLogPositions(lsns[0]!, 1)).toEqual([{ lsn: lsns[1], origin: OTHER, seq: 1, doc: Y }]);
  });

  it('ends a page of the log at a byte bound, after at least one entry', async () => {
    const { store } = start();
    const w = store.writer;
    const large = (seq: number): NewLogEntry => ({ ...entry(w, seq, X), update: new Uint8Array(1000).fill(seq) });
    const lsns = await store.commit({ entries: [large(1), large(2), large(3)], docs: [] });
    expect(store.readLog(0, 10, 1500).map((e) => e.lsn)).toEqual(lsns.slice(0, 2));
    expect(store.readLog(0, 10, 1000).map((e) => e.lsn)).toEqual(lsns.slice(0, 1));
    expect(store.readLog(0, 10, 1).map((e) => e.lsn)).toEqual(lsns.slice(0, 1));
    expect(store.readLog(lsns[1]!, 10, 1).map((e) => e.lsn)).toEqual(lsns.slice(2));
    expect(store.readLog(0, 10, 3000).map((e) => e.lsn)).toEqual(lsns);
    expect(store.readLog(lsns[2]!, 10, 1)).toEqual([]);
  });

  it('says up to which lsn a version vector covers the whole log', async () => {
    const { store } = start();
    const w = store.writer;
    expect(store.heldThrough(new Map())).toBe(0);
    const lsns = await store.commit({ entries: [entry(w, 1, X), entry(OTHER, 1, X), entry(w, 2, Y), entry(OTHER, 2, Y)], docs: [] });
    expect(store.heldThrough(new Map())).toBe(lsns[0]! - 1);
    expect(store.heldThrough(new Map([[w, 1]]))).toBe(lsns[0]);
    expect(store.heldThrough(new Map([[w, 2], [OTHER, 1]]))).toBe(lsns[2]);
    expect(store.heldThrough(new Map([[w, 1], [OTHER, 2]]))).toBe(lsns[1]);
    expect(store.heldThrough(new Map([[w, 2], [OTHER, 2]]))).toBe(lsns[3]);
    expect(store.heldThrough(new Map([[w, 9], [OTHER, 9]]))).toBe(lsns[3]);
  });

  it('stores an (origin, seq) once: a duplicate gets -1 and changes nothing', async () => {
    const { store } = start();
    const [lsn] = await store.commit({ entries: [entry(OTHER, 1, X)], docs: [] });
    const again = await store.commit({ entries: [entry(OTHER, 1, X), entry(OTHER, 2, X)], docs: [] });
    expect(again[0]).toBe(-1);
    expect(again[1]).toBeGreaterThan(lsn!);
    expect(store.readLog(0, 10).map((e) => e.seq)).toEqual([1, 2]);
    expect(store.versionVector().get(OTHER)).toBe(2);
    expect(store.stats().logEntries).toBe(2);
  });

  it('writes nothing of a batch that fails', async () => {
    const { store } = start();
    await expect(Promise.resolve().then(() =>
      store.commit({ entries: [entry(OTHER, 1, X)], docs: [{ doc: X, deleted: false, digest: new Uint8Array(5) }] }))).rejects.toThrow(/digest/);
    expect(store.readLog(0, 10)).toEqual([]);
    expect(store.versionVector().size).toBe(0);
    expect(store.summary(X)).toBeNull();
  });

  it('lists a document for compaction once its entries reach one per bytesPerEntry of its snapshot', async () => {
    const { store } = start();
    const w = store.writer;
    const lsns = await store.commit({ entries: [1, 2].map((s) => entry(w, s, X)), docs: [{ doc: X, deleted: false, digest: digest(1) }] });
    // No snapshot yet: nothing to weigh against.
    expect(store.docsNeedingCompaction(1, 10, 100)).toEqual([X]);
    await store.saveSnapshots([{ doc: X, state: new Uint8Array(1000), uptoLsn: lsns[0]! }]);
    expect(store.docsNeedingCompaction(1, 10)).toEqual([X]);
    expect(store.docsNeedingCompaction(1, 10, 999)).toEqual([]);
    expect(store.docsNeedingCompaction(1, 10, 1000)).toEqual([X]);
    await store.commit({ entries: [3, 4].map((s) => entry(w, s, X)), docs: [{ doc: X, deleted: false, digest: digest(2) }] });
    expect(store.docsNeedingCompaction(1, 10, 333)).toEqual([]);
    expect(store.docsNeedingCompaction(1, 10, 334)).toEqual([X]);
    // Few entries, but large ones: once they hold a quarter of the snapshot's bytes.
    expect(store.docsNeedingCompaction(1, 10, 1)).toEqual([]);
    await store.commit({ entries: [{ ...entry(w, 5, X), update: new Uint8Array(300) }], docs: [{ doc: X, deleted: false, digest: digest(3) }] });
    expect(store.docsNeedingCompaction(1, 10, 1)).toEqual([X]);
  });

  it('loads a document from its snapshot and the entries after it; an older snapshot is ignored', async () => {
    const { store } = start();
    const w = store.writer;
    const lsns = await store.commit({ entries: [1, 2, 3, 4].map((s) => entry(w, s, X)), docs: [{ doc: X, deleted: false, digest: digest(1) }] });
    expect(store.docsNeedingCompaction(4, 10)).toEqual([X]);
    await store.saveSnapshots([{ doc: X, state: Uint8Array.from([7]), uptoLsn: lsns[1]! }]);
    let loaded = store.loadDoc(X)!;
    expect(bytes(loaded.snapshot)).toEqual([7]);
    expect(loaded.snapshotLsn).toBe(lsns[1]);
    expect(loaded.entries.map((e) => e.seq)).toEqual([3, 4]);
    expect(store.docsNeedingCompaction(3, 10)).toEqual([]);
    expect(store.docsNeedingCompaction(2, 10)).toEqual([X]);
    await store.saveSnapshots([{ doc: X, state: Uint8Array.from([1]), uptoLsn: lsns[0]! }]);
    loaded = store.loadDoc(X)!;
    expect(bytes(loaded.snapshot)).toEqual([7]);
    expect(store.loadDoc(Y)).toBeNull();
    await expect(Promise.resolve().then(() =>
      store.saveSnapshots([{ doc: Y, state: Uint8Array.from([1]), uptoLsn: 1 }]))).rejects.toThrow(/unknown document/);
  });

  it('stores a merged state with the summary it changed, in one commit', async () => {
    const { store } = start();
    await store.commit({ entries: [], docs: [{ doc: Y, deleted: false, digest: digest(4) }], snapshots: [{ doc: Y, state: Uint8Array.from([5]), uptoLsn: 0 }] });
    expect(bytes(store.loadDoc(Y)!.snapshot)).toEqual([5]);
    expect(store.loadDoc(Y)!.entries).toEqual([]);
    expect(bytes(store.summary(Y)!.digest)).toEqual(bytes(digest(4)));
  });

  it('advances the version vector over contiguous seqs, raises it with a commit, never lowers it', async () => {
    const { store } = start();
    await store.commit({ entries: [entry(OTHER, 1, X), entry(OTHER, 2, X), entry(OTHER, 4, X)], docs: [] });
    expect(store.versionVector().get(OTHER)).toBe(2);
    await store.commit({ entries: [entry(OTHER, 3, X)], docs: [] });
    expect(store.versionVector().get(OTHER)).toBe(4);
    await store.commit({ entries: [], docs: [], raise: new Map([[OTHER, 9]]) });
    expect(store.versionVector().get(OTHER)).toBe(9);
    // Seqs 5..9 were never stored: the log cannot serve them.
    expect(store.logFloor().get(OTHER)).toBe(10);
    await store.commit({ entries: [], docs: [], raise: new Map([[OTHER, 3]]) });
    expect(store.versionVector().get(OTHER)).toBe(9);
    // A raise that fails takes the batch's entries with it.
    await expect(async () => store.commit({ entries: [entry(OTHER, 10, X)], docs: [], raise: new Map([[OTHER, 2 ** 48]]) })).rejects.toThrow(/MAX_SEQ/);
    expect(store.hasEntry(OTHER, 10)).toBe(false);
    expect(store.oldestBeyond(new Map([[OTHER, 2]]))).toEqual({ ts: 1003, count: 2, bytes: 8 });
    expect(store.oldestBeyond(new Map([[OTHER, 9]]))).toBeNull();
  });

  it('answers what a peer lacks from a bounded read: past the read limit, counted by seq and sized by the mean', async () => {
    const { store } = start();
    const n = PENDING_READ_LIMIT + 500;
    // The first half of the entries are 4 bytes, the rest 8: the estimate follows what the read saw.
    const sized = (seq: number) => ({ ...entry(OTHER, seq, X), update: new Uint8Array(seq <= n / 2 ? 4 : 8).fill(1) });
    await store.commit({ entries: Array.from({ length: n }, (_, i) => sized(i + 1)), docs: [] });
    const whole = store.oldestBeyond(new Map([[OTHER, n - 10]]));
    expect(whole).toEqual({ ts: 1000 + n - 9, count: 10, bytes: 80 });
    const capped = store.oldestBeyond(new Map())!;
    expect(capped.ts).toBe(1001);
    expect(capped.count).toBe(n);
    const read = (n / 2) * 4 + (PENDING_READ_LIMIT - n / 2) * 8;
    expect(capped.bytes).toBe(Math.round((read / PENDING_READ_LIMIT) * n));
  });

  it('answers per-document log questions', async () => {
    const { store } = start();
    const w = store.writer;
    await store.commit({ entries: [entry(w, 1, X), entry(OTHER, 1, X), entry(OTHER, 2, X), entry(OTHER, 3, Y)], docs: [] });
    expect(store.latestEntry(X, OTHER)).toEqual({ origin: OTHER, seq: 2 });
    expect(store.latestEntry(Y, w)).toBeNull();
    expect(store.docHeads(X)).toEqual([
      { origin: OTHER, seq: 2, ts: 1002 },
      { origin: w, seq: 1, ts: 1001 },
    ].sort((a, b) => (a.origin < b.origin ? -1 : 1)));
    expect(store.docEntriesBeyond(X, OTHER, 1, 100)).toEqual({ count: 1, ts: 1002 });
    expect(store.docEntriesBeyond(X, OTHER, 2, 100)).toBeNull();
  });

  it('counts a document\'s entries beyond a seq only up to the limit asked for', async () => {
    const { store } = start();
    await store.commit({ entries: Array.from({ length: 30 }, (_, i) => entry(OTHER, i + 1, i % 3 === 2 ? Y : X)), docs: [] });
    expect(store.docEntriesBeyond(X, OTHER, 0, 100)).toEqual({ count: 20, ts: 1001 });
    expect(store.docEntriesBeyond(X, OTHER, 0, 5)).toEqual({ count: 5, ts: 1001 });
    expect(store.docEntriesBeyond(X, OTHER, 10, 5)).toEqual({ count: 5, ts: 1011 });
    expect(store.docEntriesBeyond(X, OTHER, 29, 5)).toBeNull();
    expect(store.docHeads(X)).toEqual([{ origin: OTHER, seq: 29, ts: 1029 }]);
    expect(store.docHeads(Y)).toEqual([{ origin: OTHER, seq: 30, ts: 1030 }]);
  });

  it('keeps what each peer acknowledged, replacing what it said before', async () => {
    const { store } = start();
    await store.setPeerAcks(B, new Map([[OTHER, 5], [store.writer, 2]]));
    expect(store.peerAcks(B)).toEqual(new Map([[OTHER, 5], [store.writer, 2]]));
    await store.setPeerAcks(B, new Map([[OTHER, 1]]));
    expect(store.peerAcks(B)).toEqual(new Map([[OTHER, 1]]));
    expect(store.peerAcks(C).size).toBe(0);
  });

  it('collects only compacted entries that every peer acknowledged, or that are older than the cutoff', async () => {
    const { store } = start();
    const w = store.writer;
    const lsns = await store.commit({ entries: [1, 2, 3, 4].map((s) => entry(w, s, X, s * 10)), docs: [] });
    await store.saveSnapshots([{ doc: X, state: Uint8Array.from([1]), uptoLsn: lsns[2]! }]);
    await store.setPeerAcks(B, new Map([[w, 2]]));
    await store.setPeerAcks(C, new Map([[w, 1]]));
    expect(await store.collectGarbage([B, C], 0)).toBe(1);
    expect(store.hasEntry(w, 1)).toBe(false);
    expect(store.logFloor().get(w)).toBe(2);
    // Seq 2 is acknowledged by B only, but older than the cutoff; seq 4 is not compacted.
    expect(await store.collectGarbage([B, C], 21)).toBe(1);
    expect(await store.collectGarbage([], 1_000_000)).toBe(1);
    expect(store.readLog(0, 10).map((e) => e.seq)).toEqual([4]);
    expect(store.loadDoc(X)!.entries.map((e) => e.seq)).toEqual([4]);
    expect(store.stats().logEntries).toBe(1);
  });

  it('lists live documents of a collection and pages through summaries in key order', async () => {
    const { store } = start();
    const ids = ['b', 'a', 'd', 'c', 'e'];
    await store.commit({ entries: [], docs: ids.map((id, i) => ({ doc: docKey('notes', id), deleted: id === 'd', digest: digest(i + 1) })) });
    await store.commit({ entries: [], docs: [{ doc: docKey('notesx', 'z'), deleted: false, digest: digest(9) }, { doc: docKey('other', 'a'), deleted: false }] });
    expect(store.listDocs('notes', null, 2)).toEqual(['a', 'b']);
    expect(store.listDocs('notes', 'b', 10)).toEqual(['c', 'e']);
    const all = store.docSummaries(null, 3);
    expect(all.map((s) => s.doc)).toEqual(['notes/a', 'notes/b', 'notes/c']);
    expect(store.docSummaries(all[2]!.doc, 10).map((s) => s.doc)).toEqual(['notes/d', 'notes/e', 'notesx/z', 'other/a']);
    expect(store.summary(docKey('notes', 'd'))).toMatchObject({ doc: 'notes/d', deleted: true });
    expect(bytes(store.summary(docKey('notes', 'd'))!.digest)).toEqual(bytes(digest(3)));
    expect(store.staleSummaries(null, 10).map((s) => s.doc)).toEqual(['other/a']);
    await store.setDigests([{ doc: docKey('other', 'a'), digest: digest(7) }]);
    expect(store.staleSummaries(null, 10)).toEqual([]);
    expect(store.stats().documents).toBe(6);
  });

  it('keeps a document\'s deleted flag when a change does not say it, and takes it with a digest that does', async () => {
    const { store } = start();
    await store.commit({ entries: [], docs: [{ doc: X, deleted: true, digest: digest(1) }, { doc: Y, deleted: false, digest: digest(2) }] });
    // Changed by entries not yet applied: marked stale, flag unknown until the digest is computed.
    await store.commit({ entries: [entry(OTHER, 1, X), entry(OTHER, 2, Y)], docs: [{ doc: X }, { doc: Y }] });
    expect(store.staleSummaries(null, 10).map((s) => [s.doc, s.deleted])).toEqual([[X, true], [Y, false]]);
    expect(store.listDocs('notes', null, 10)).toEqual(['y']);
    await store.setDigests([{ doc: X, digest: digest(3), deleted: false }, { doc: Y, digest: digest(4) }]);
    expect(store.staleSummaries(null, 10)).toEqual([]);
    expect(store.listDocs('notes', null, 10)).toEqual(['x', 'y']);
    // Carried by a commit, before its summaries (which win).
    await store.commit({ entries: [], docs: [{ doc: X, deleted: true }], digests: [{ doc: X, digest: digest(5), deleted: false }, { doc: Y, digest: digest(6), deleted: true }] });
    expect(store.summary(X)).toMatchObject({ deleted: true });
    expect(store.summary(Y)).toMatchObject({ deleted: true });
    expect(bytes(store.summary(Y)!.digest)).toEqual(bytes(digest(6)));
    expect(store.staleSummaries(null, 10).map((s) => s.doc)).toEqual([X]);
  });

  it('lists the documents of one anti-entropy bucket, however they were stored, across a reopen', async () => {
    const { store, reopen } = start();
    const w = store.writer;
    const docs = Array.from({ length: 40 }, (_, i) => docKey('buckets', `d${i}`));
    // Three ways a document row is made: by a log entry, by a summary with a digest, by a stale summary.
    await store.commit({ entries: docs.slice(0, 14).map((doc, i) => entry(w, i + 1, doc)), docs: [] });
    await store.commit({ entries: [], docs: docs.slice(14, 27).map((doc, i) => ({ doc, deleted: false, digest: digest(i + 1) })) });
    await store.commit({ entries: [], docs: docs.slice(27).map((doc) => ({ doc, deleted: true })) });
    const expected = (bucket: number): string[] => docs.filter((d) => bucketOf(d) === bucket).sort();
    const buckets = [...new Set(docs.map((d) => bucketOf(d)))];
    for (const b of buckets) expect(store.bucketSummaries(b).map((s) => s.doc)).toEqual(expected(b));
    const again = await reopen();
    for (const b of buckets) expect(again.bucketSummaries(b).map((s) => s.doc)).toEqual(expected(b));
    const empty = Array.from({ length: 1024 }, (_, b) => b).find((b) => !buckets.includes(b))!;
    expect(again.bucketSummaries(empty)).toEqual([]);
    expect(bytes(again.bucketSummaries(bucketOf(docs[14]!)).find((s) => s.doc === docs[14])!.digest)).toEqual(bytes(digest(1)));
  });

  it('marks a corrupt document with an all-zero digest and tells its listeners', async () => {
    const { store } = start();
    await store.commit({ entries: [], docs: [{ doc: X, deleted: false, digest: digest(5) }] });
    const heard: [DocKey, Uint8Array][] = [];
    const stop = store.onCorrupt((doc, before) => heard.push([doc, before]));
    store.markCorrupt(X);
    store.markCorrupt(X);
    stop();
    expect(bytes(store.summary(X)!.digest)).toEqual(bytes(new Uint8Array(32)));
    expect(heard.map(([doc, before]) => [doc, bytes(before)])).toEqual([[X, bytes(digest(5))]]);
  });

  it('keeps quarantined entries (once per origin and seq) and conflict records with the commit that met them', async () => {
    const { store, reopen } = start();
    const lost = { doc: X, at: 5, winner: B, keptDigest: digest(1), lostDigest: digest(2), lostState: Uint8Array.from([9, 9]) };
    await store.commit({
      entries: [entry(OTHER, 1, X)], docs: [{ doc: X, deleted: false, digest: digest(1) }], raise: new Map([[OTHER, 2]]),
      quarantined: [{ ...entry(OTHER, 2, Y), peer: B, reason: 'x'.repeat(2000) }], conflicts: [lost],
    });
    // The same entry again (a resend) is not kept twice.
    await store.commit({ entries: [], docs: [], quarantined: [{ ...entry(OTHER, 2, Y), peer: C, reason: 'again' }, { ...entry(OTHER, 3, Y), peer: C, reason: 'bad' }] });
    expect(store.quarantine.counts()).toEqual(new Map([[B, 1], [C, 1]]));
    const kept = store.quarantine.list(0, 10);
    expect(kept.map((q) => [q.peer, q.seq])).toEqual([[B, 2], [C, 3]]);
    expect(kept[0]!.reason.length).toBeLessThanOrEqual(500);
    expect(store.conflicts.count()).toBe(1);
    expect(store.conflicts.list(X, 0, 10, 1 << 20).records.map((c) => [c.winner, bytes(c.lostState)])).toEqual([[B, [9, 9]]]);
    const again = await reopen();
    expect(again.quarantine.counts()).toEqual(new Map([[B, 1], [C, 1]]));
    expect(again.conflicts.count()).toBe(1);
    expect(again.versionVector().get(OTHER)).toBe(2);
  });

  it('keeps the newest quarantined entries of each peer only, and counts every one', async () => {
    const { store, reopen } = start();
    const sent = MAX_QUARANTINED_PER_PEER + 6;
    for (let seq = 1; seq <= sent; seq += 2) {
      await store.commit({ entries: [], docs: [], quarantined: [seq, seq + 1].map((n) => ({ ...entry(OTHER, n, Y), peer: B, reason: 'bad' })) });
    }
    await store.commit({ entries: [], docs: [], quarantined: [{ ...entry(OTHER, sent + 1, X), peer: C, reason: 'bad' }] });
    const check = (s: typeof store): void => {
      expect(s.quarantine.counts()).toEqual(new Map([[B, sent], [C, 1]]));
      const kept = s.quarantine.list(0, 1000);
      expect(kept.filter((q) => q.peer === B).map((q) => q.seq)).toEqual(Array.from({ length: MAX_QUARANTINED_PER_PEER }, (_, i) => sent - MAX_QUARANTINED_PER_PEER + 1 + i));
      expect(kept.filter((q) => q.peer === C).map((q) => q.seq)).toEqual([sent + 1]);
      // Row ids keep growing: a reader paging by id misses none of the newest.
      expect(kept.map((q) => q.id)).toEqual([...kept.map((q) => q.id)].sort((a, b) => a - b));
    };
    check(store);
    check(await reopen());
  });

  it('keeps the newest conflict records of a document only, and counts every one', async () => {
    const { store, reopen } = start();
    const lost = (doc: DocKey, n: number) => ({ doc, at: n, winner: B, keptDigest: digest(1), lostDigest: digest(2), lostState: Uint8Array.from([n]) });
    await store.commit({ entries: [], docs: [{ doc: Y, deleted: false, digest: digest(1) }], conflicts: [lost(Y, 0)] });
    await store.commit({ entries: [], docs: [], conflicts: Array.from({ length: MAX_CONFLICTS_PER_DOC + 3 }, (_, i) => lost(X, i)) });
    await store.commit({ entries: [], docs: [], conflicts: [lost(X, 100)] });
    const kept = store.conflicts.list(X, 0, 100, 1 << 20).records.map((c) => c.at);
    expect(kept).toEqual([...Array.from({ length: MAX_CONFLICTS_PER_DOC - 1 }, (_, i) => i + 4), 100]);
    // Another document's records are not touched.
    expect(store.conflicts.list(Y, 0, 100, 1 << 20).records.map((c) => c.at)).toEqual([0]);
    expect(store.conflicts.count()).toBe(MAX_CONFLICTS_PER_DOC + 5);
    expect((await reopen()).conflicts.count()).toBe(MAX_CONFLICTS_PER_DOC + 5);
  });

  it('keeps the newest conflict records within a bound on their bytes over all documents, and counts every one', async () => {
    const { store, reopen } = start();
    const docs = Array.from({ length: 8 }, (_, i) => docKey('notes', `c${i}`));
    const lost = (doc: DocKey, n: number) => ({ doc, at: n, winner: B, keptDigest: digest(1), lostDigest: digest(2), lostState: new Uint8Array(3000).fill(n) });
    for (const [i, doc] of docs.entries()) await store.commit({ entries: [], docs: [], conflicts: [lost(doc, i + 1)] });
    const held = (s: Store) => docs.map((doc) => s.conflicts.list(doc, 0, 10, 1 << 20).records.map((c) => c.at)).flat();
    // 8 × 3,000 bytes over a bound of 16 KiB: the oldest three dropped.
    expect(held(store)).toEqual([4, 5, 6, 7, 8]);
    expect(store.conflicts.count()).toBe(8);
    // The bytes kept are counted across a restart: one more drops one more.
    const again = await reopen();
    await again.commit({ entries: [], docs: [], conflicts: [lost(docs[0]!, 9)] });
    expect(held(again)).toEqual([9, 5, 6, 7, 8]);
    expect(again.conflicts.count()).toBe(9);
    // A record larger than the bound alone is kept, alone.
    await again.commit({ entries: [], docs: [], conflicts: [{ ...lost(docs[1]!, 10), lostState: new Uint8Array(CONFLICT_BYTES + 1) }] });
    expect(held(again)).toEqual([10]);
  });

  it('pages a document\'s conflict records by count and by the bytes of their lost states', async () => {
    const { store } = start();
    const lost = (n: number, size: number) => ({ doc: X, at: n, winner: B, keptDigest: digest(1), lostDigest: digest(2), lostState: new Uint8Array(size).fill(n) });
    await store.commit({ entries: [], docs: [{ doc: X, deleted: false, digest: digest(1) }], conflicts: [lost(1, 400), lost(2, 400), lost(3, 5000), lost(4, 10)] });
    const page = (after: number, limit: number, bytes: number) => {
      const { records, more } = store.conflicts.list(X, after, limit, bytes);
      return { at: records.map((c) => c.at), more, next: records[records.length - 1]?.id ?? after };
    };
    const first = page(0, 10, 1000);
    expect(first).toMatchObject({ at: [1, 2], more: true });
    // A state over the bound still comes, alone.
    const second = page(first.next, 10, 1000);
    expect(second).toMatchObject({ at: [3], more: true });
    expect(page(second.next, 10, 1000)).toMatchObject({ at: [4], more: false });
    expect(page(0, 3, 1 << 20)).toMatchObject({ at: [1, 2, 3], more: true });
    expect(page(0, 4, 1 << 20)).toMatchObject({ at: [1, 2, 3, 4], more: false });
    expect(page(100, 4, 1 << 20)).toMatchObject({ at: [], more: false });
    expect(store.conflicts.list(Y, 0, 10, 1 << 20)).toEqual({ records: [], more: false });
  });

  it('keeps a changed writer id across a close and reopen with no commit after the change', async () => {
    const { store, reopen } = start();
    const before = store.writer;
    const next = store.rotateWriter();
    expect(next).not.toBe(before);
    expect(store.writer).toBe(next);
    const again = await reopen();
    expect(again.writer).toBe(next);
  });

  it('holds every acknowledged write after a close and reopen', async () => {
    const { store, reopen } = start();
    const w = store.writer;
    const lsns = await store.commit({ entries: [1, 2, 3].map((s) => entry(w, s, X)), docs: [{ doc: X, deleted: false, digest: digest(2) }] });
    await store.saveSnapshots([{ doc: X, state: Uint8Array.from([6]), uptoLsn: lsns[0]! }]);
    await store.setPeerAcks(B, new Map([[w, 3]]));
    await store.commit({ entries: [], docs: [], raise: new Map([[OTHER, 7]]), quarantined: [{ ...entry(OTHER, 7, Y), peer: B, reason: 'too large' }] });
    const again = await reopen();
    expect(again.writer).toBe(w);
    expect(again.readLog(0, 10).map((e) => e.lsn)).toEqual(lsns);
    expect(bytes(again.loadDoc(X)!.snapshot)).toEqual([6]);
    expect(again.loadDoc(X)!.snapshotLsn).toBe(lsns[0]);
    expect(again.loadDoc(X)!.entries.map((e) => e.seq)).toEqual([2, 3]);
    expect(bytes(again.summary(X)!.digest)).toEqual(bytes(digest(2)));
    expect(again.versionVector()).toEqual(new Map([[w, 3], [OTHER, 7]]));
    expect(again.peerAcks(B)).toEqual(new Map([[w, 3]]));
    expect(again.quarantine.counts().get(B)).toBe(1);
    // New lsns continue above the old ones.
    const [next] = await again.commit({ entries: [entry(w, 4, X)], docs: [] });
    expect(next).toBeGreaterThan(lsns[2]!);
  });
});
