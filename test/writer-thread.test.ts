/**
 * Group commits, snapshot batches and GC on the writer thread: the same
 * results as writing in place, visible to the main connection once durable,
 * in posting order, and documents never read ahead of the disk.
 */
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import type { LiveDoc } from '../src/docs/cache.js';
import { startCompactor, type CompactorOptions } from '../src/docs/compactor.js';
import { stableClientId } from '../src/crdt/index.js';
import { createDocuments } from '../src/docs/documents.js';
import { docKey, type DocKey, type RegionId, type WriterId } from '../src/ids.js';
import { MemoryStore, memoryVolume } from '../src/storage/memory.js';
import { WAL_SIZE_LIMIT } from '../src/storage/sqlite-options.js';
import { openStore } from '../src/storage/sqlite.js';
import type { CommitBatch, NewLogEntry, Store } from '../src/storage/types.js';
import { waitFor } from './helpers/cluster.js';

/** The compiled thread (the test setup builds dist/ before the tests). */
const THREAD = resolve('dist/src/storage/writer-thread.js');
const logger = pino({ level: 'silent' });
const dirs: string[] = [];
const stores: Store[] = [];

function open(writerThread: boolean): Store {
  const dir = mkdtempSync(join(tmpdir(), 'meridian-writer-'));
  dirs.push(dir);
  const store = openStore({ dataDir: dir, region: 'r1' as RegionId, synchronous: 'full', writerThread, writerThreadFile: THREAD, logger });
  stores.push(store);
  return store;
}

/** Closes the write path and its threaded store, and opens the same data directory in place. */
async function reopenInPlace(docs: { close(): Promise<void> }, store: Store): Promise<Store> {
  await docs.close();
  const dir = dirs[stores.indexOf(store)]!;
  await store.close();
  stores.splice(stores.indexOf(store), 1);
  const reopened = openStore({ dataDir: dir, region: 'r1' as RegionId, synchronous: 'full', logger });
  stores.push(reopened);
  return reopened;
}

afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const X = 'c/x' as DocKey;
const PEER = 'r2' as RegionId;
function entry(origin: WriterId, seq: number) {
  return { origin, seq, doc: X, ts: 1, update: new Uint8Array([0, 0]) };
}

describe('the writer thread', () => {
  it('commits as the main connection would, in posting order, visible to it once resolved', async () => {
    const store = open(true);
    const w = store.writer;
    const first = store.commit({ entries: [entry(w, 1), entry(w, 2)], docs: [{ doc: X, deleted: false }] });
    const second = store.commit({ entries: [entry(w, 3), entry(w, 2)], docs: [] });
    expect(first).toBeInstanceOf(Promise);
    const [a, b] = await Promise.all([first, second]);
    expect(a).toEqual([1, 2]);
    expect(b).toEqual([3, -1]);
    expect(store.readLog(0, 10).map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(store.versionVector().get(w)).toBe(3);
    expect(store.stats().logEntries).toBe(3);
  });

  it('fails a commit the thread cannot make, and keeps committing the next', async () => {
    const store = open(true);
    const w = store.writer;
    await expect(store.commit({ entries: [entry(w, 1)], docs: [{ doc: X, deleted: false, digest: new Uint8Array(3) }] })).rejects.toThrow(/digest/);
    expect(await store.commit({ entries: [entry(w, 1)], docs: [] })).toEqual([1]);
  });

  it('refuses a commit staged after one that failed, and the next in its chain; an unchained commit goes on', async () => {
    const store = open(true);
    const w = store.writer;
    // Posted together: the thread takes them in turn.
    const failing = store.commit({ entries: [entry(w, 1)], docs: [{ doc: X, deleted: false, digest: new Uint8Array(3) }], chain: { id: 1, follows: null } });
    const staged = store.commit({ entries: [entry(w, 2)], docs: [], chain: { id: 2, follows: 1 } });
    const stagedOnThat = store.commit({ entries: [entry(w, 3)], docs: [], chain: { id: 3, follows: 2 } });
    const unchained = store.commit({ entries: [entry(w, 1)], docs: [], chain: { id: 4, follows: null } });
    await expect(failing).rejects.toThrow(/digest/);
    await expect(staged).rejects.toThrow(/it was staged after failed/);
    await expect(stagedOnThat).rejects.toThrow(/it was staged after failed/);
    expect(await unchained).toEqual([1]);
    expect(store.readLog(0, 10).map((e) => e.seq)).toEqual([1]);
    expect(store.versionVector().get(w)).toBe(1);
  });

  it('truncates a WAL that a long read let grow back to its limit once the read ends', async () => {
    const store = open(true);
    const w = store.writer;
    const dir = dirs[stores.indexOf(store)]!;
    const wal = join(dir, 'meridian.db-wal');
    // A read transaction holds its snapshot, so no checkpoint can reuse the WAL meanwhile.
    const reader = new Database(join(dir, 'meridian.db'), { readonly: true });
    let seq = 0;
    try {
      reader.exec('BEGIN');
      reader.prepare('SELECT count(*) AS n FROM log').get();
      const big = new Uint8Array(1 << 20);
      while (statSync(wal).size <= WAL_SIZE_LIMIT && seq < 200) await store.commit({ entries: [{ ...entry(w, ++seq), update: big }], docs: [] });
      expect(statSync(wal).size).toBeGreaterThan(WAL_SIZE_LIMIT);
      reader.exec('COMMIT');
    } finally {
      reader.close();
    }
    // The next commit checkpoints the whole WAL; a later one starts it again from the top, truncated.
    for (let i = 0; i < 3; i++) await store.commit({ entries: [entry(w, ++seq)], docs: [] });
    expect(statSync(wal).size).toBeLessThanOrEqual(WAL_SIZE_LIMIT);
    expect(store.versionVector().get(w)).toBe(seq);
  });

  // The lock stands for a disk that is slow to answer: on the event loop's
  // connection the call would block for the busy timeout, then throw.
  it('writes snapshot batches, peer acknowledgements and GC steps there, in turn, never on the event loop\'s connection', async () => {
    const store = open(true);
    const w = store.writer;
    const lsns = await store.commit({ entries: [entry(w, 1), entry(w, 2)], docs: [{ doc: X, deleted: false }] });
    const other = new Database(join(dirs[0]!, 'meridian.db'));
    try {
      other.prepare('BEGIN IMMEDIATE').run();
      const saved = store.saveSnapshots([{ doc: X, state: Uint8Array.from([5]), uptoLsn: lsns[1]! }]);
      const acked = store.setPeerAcks(PEER, new Map([[w, 1]]));
      // Only seq 1 is acknowledged by the peer when the GC step runs: it comes after the acks.
      const collected = store.collectGarbage([PEER], 0);
      expect(saved).toBeInstanceOf(Promise);
      expect(acked).toBeInstanceOf(Promise);
      expect(collected).toBeInstanceOf(Promise);
      // The event loop turns while the thread waits for the lock; nothing is written yet.
      await new Promise((r) => setImmediate(r));
      expect(store.loadDoc(X)!.snapshotLsn).toBe(0);
      expect(store.peerAcks(PEER).size).toBe(0);
      other.prepare('COMMIT').run();
      await Promise.all([saved, acked]);
      expect(await collected).toBe(1);
    } finally {
      other.close();
    }
    expect(store.loadDoc(X)).toMatchObject({ snapshotLsn: lsns[1], entries: [] });
    expect(store.peerAcks(PEER)).toEqual(new Map([[w, 1]]));
    expect(store.readLog(0, 10).map((e) => e.seq)).toEqual([2]);
    expect(store.stats().logEntries).toBe(1);
  });

  it('steps through a large log one GC window at a time: a commit posted meanwhile does not wait for the whole step', async () => {
    const store = open(true);
    const w = store.writer;
    const n = 10_000;
    const lsns = await store.commit({ entries: Array.from({ length: n }, (_, i) => entry(w, i + 1)), docs: [{ doc: X, deleted: false }] });
    await store.saveSnapshots([{ doc: X, state: Uint8Array.from([5]), uptoLsn: lsns[n - 1]! }]);
    await store.setPeerAcks(PEER, new Map([[w, n]]));
    const order: string[] = [];
    const collected = store.collectGarbage([PEER], 0);
    const committed = store.commit({ entries: [entry(w, n + 1)], docs: [] });
    void Promise.resolve(collected).then(() => order.push('gc'));
    void Promise.resolve(committed).then(() => order.push('commit'));
    expect(await collected).toBe(n);
    expect(await committed).toEqual([n + 1]);
    expect(order).toEqual(['commit', 'gc']);
    expect(store.readLog(0, 10).map((e) => e.seq)).toEqual([n + 1]);
    expect(store.stats().logEntries).toBe(1);
  });

  it('serves the write path: readers wait for the commit, and a reopened store holds every write', async () => {
    const store = open(true);
    const docs = createDocuments({ store, logger, cacheDocs: 100, yjsUpdateBytes: 1 << 20, compactIntervalMs: 0 });
    const key = docKey('c', 'doc');
    const write = docs.put(key, { n: 1 });
    // Staged, not yet durable: a reader is told to wait.
    await new Promise((r) => setImmediate(r));
    const wait = docs.settled(key);
    expect(wait).toBeInstanceOf(Promise);
    await wait;
    await write;
    expect(docs.read(key).value).toEqual({ n: 1 });
    await Promise.all(Array.from({ length: 200 }, (_, i) => docs.put(docKey('c', `many${i}`), { i })));
    const reopened = await reopenInPlace(docs, store);
    expect(reopened.listDocs('c', null, 1000)).toHaveLength(201);
  });

  it('acknowledges a write under the writer it was stored under, and writes under the new writer\'s Yjs client id, once the writer changed while a commit of the document was in flight', async () => {
    const store = open(true);
    const docs = createDocuments({ store, logger, cacheDocs: 100, yjsUpdateBytes: 1 << 20, compactIntervalMs: 0 });
    const committed: { origin: WriterId; seq: number; update: Uint8Array }[] = [];
    docs.onCommitted((entries) => committed.push(...entries));
    const key = docKey('c', 'rotated');
    await docs.put(key, { a: 1 });
    const inFlight = docs.put(key, { a: 2 });
    await new Promise((r) => setImmediate(r));
    expect(docs.settled(key)).toBeInstanceOf(Promise);
    // A peer holds more of this writer than the data directory (restored from a backup).
    const previous = docs.writer;
    const next = docs.rotateWriter();
    const ack = await inFlight;
    // The client waits for replicas of what the acknowledgement names.
    expect(committed.find((e) => e.origin === ack.origin && e.seq === ack.seq)?.origin).toBe(previous);
    expect(ack.version.get(previous)).toBe(ack.seq);
    await docs.put(key, { a: 3 });
    const last = committed.at(-1)!;
    expect(last.origin).toBe(next);
    const clients = new Set(Y.decodeUpdate(last.update).structs.map((s) => s.id.client));
    // Under the old writer's id it would reuse clocks its peers hold with other content.
    expect(clients.has(stableClientId(previous, key))).toBe(false);
    expect([...clients]).toEqual([stableClientId(next, key)]);
    expect(docs.read(key).value).toEqual({ a: 3 });
    await docs.close();
  });

  it('changes writer while another connection holds the write lock, and stores the new id on the writer thread once the lock is free', async () => {
    const store = open(true);
    const docs = createDocuments({ store, logger, cacheDocs: 100, yjsUpdateBytes: 1 << 20, compactIntervalMs: 0 });
    const key = docKey('c', 'locked');
    await docs.put(key, { a: 1 });
    const other = new Database(join(dirs[stores.indexOf(store)]!, 'meridian.db'));
    const storedWriter = (): string => other.prepare<[], { value: string }>("SELECT value FROM meta WHERE key = 'writer'").get()!.value;
    const previous = docs.writer;
    other.exec('BEGIN IMMEDIATE');
    // Written on the event loop, this waited out the 5 s busy timeout and then threw SQLITE_BUSY.
    const started = performance.now();
    const next = docs.rotateWriter();
    expect(performance.now() - started).toBeLessThan(1000);
    expect(next).not.toBe(previous);
    expect(storedWriter()).toBe(previous);
    other.exec('ROLLBACK');
    // Without a write: a restart before one would otherwise come back under the old id.
    await waitFor('the new writer id stored', async () => (storedWriter() === next ? true : undefined));
    const ack = await docs.put(key, { a: 2 });
    expect(ack.origin).toBe(next);
    other.close();
    const reopened = await reopenInPlace(docs, store);
    expect(reopened.writer).toBe(next);
  });

  it('loads a document whose digest a commit is carrying to the disk with that digest, so the region digest stays exact', async () => {
    const store = open(true);
    const docs = createDocuments({ store, logger, cacheDocs: 1, yjsUpdateBytes: 1 << 20, compactIntervalMs: 0 });
    const d = docKey('c', 'd');
    const e = docKey('c', 'e');
    // One commit, a cache of one: d leaves memory before its digest is computed, from the store then.
    await Promise.all([docs.put(d, { n: 1 }), docs.put(e, { n: 1 })]);
    await docs.digests.settled();
    const carrying = docs.put(e, { n: 2 });
    await new Promise((r) => setImmediate(r));
    expect(docs.settled(e)).toBeInstanceOf(Promise);
    // Loaded while that commit is on the thread: the store still holds d's older digest.
    expect(docs.read(d).value).toEqual({ n: 1 });
    await carrying;
    await docs.patch(d, { m: 1 });
    // Taken as soon as the write resolves: it must cover it already.
    const digest = docs.digests.regionDigest();
    const reopened = await reopenInPlace(docs, store);
    // Built from the stored digests alone.
    const again = createDocuments({ store: reopened, logger, cacheDocs: 10, yjsUpdateBytes: 1 << 20, compactIntervalMs: 0 });
    expect(again.digests.regionDigest()).toBe(digest);
    await again.close();
  });
});

/** A Yjs update that writes `{ i }` as a new document, as another region would. */
function documentUpdate(i: number): Uint8Array {
  const ydoc = new Y.Doc();
  ydoc.getMap('root').set('i', i);
  ydoc.getMap('root').set('\u0000live', true);
  return Y.encodeStateAsUpdate(ydoc);
}

/** `n` entries of a peer's writer, one new document each, seqs 1..n. */
function peerEntries(n: number): NewLogEntry[] {
  const origin = 'r2~00000000000000a1' as WriterId;
  return Array.from({ length: n }, (_, i) => ({ origin, seq: i + 1, doc: docKey('p', `d${i}`), ts: 1, update: documentUpdate(i) }));
}

/** The real store, with every commit recorded as it is posted (and `tamper` given the first). */
function recording(store: Store, tamper?: (batch: CommitBatch) => CommitBatch) {
  const posted: { batch: CommitBatch; outstanding: number }[] = [];
  let outstanding = 0;
  const wrapped: Store = Object.create(store) as Store;
  wrapped.commit = (batch) => {
    const sent = posted.length === 0 && tamper ? tamper(batch) : batch;
    posted.push({ batch, outstanding });
    const result = store.commit(sent);
    if (!(result instanceof Promise)) return result;
    outstanding++;
    return result.finally(() => outstanding--);
  };
  return { store: wrapped, posted };
}

/** Every seq of `origin` the log holds, ascending. */
function storedSeqs(store: Store, origin: WriterId): number[] {
  return store.readLog(0, 100_000).filter((e) => e.origin === origin).map((e) => e.seq).sort((a, b) => a - b);
}

describe('the write path on a writer thread, staging ahead', () => {
  it('stages peer work on other documents while a commit is written; a client\'s write never rides ahead, and every write is durable', async () => {
    const store = open(true);
    const { store: rec, posted } = recording(store);
    const docs = createDocuments({ store: rec, logger, cacheDocs: 10_000, yjsUpdateBytes: 1 << 20, compactIntervalMs: 0 });
    // Enough that peer commits remain after the client's write (up to 1,024 entries each while no client writes).
    const entries = peerEntries(10_000);
    const origin = entries[0]!.origin;
    const applying = docs.applyRemote(entries, PEER);
    // For a second after a client's write nothing is staged ahead: the client writes once peer work has been.
    await waitFor('a commit staged ahead', async () => posted.some((p) => p.batch.chain?.follows != null), 20_000, 1);
    const postedBeforeWrite = posted.length;
    const local = docs.put(docKey('c', 'mine'), { n: 1 });
    const [result] = await Promise.all([applying, local]);
    expect(result.applied).toBe(entries.length);
    // The client's write arrived while peer work was still being committed.
    const written = posted.findIndex((p) => p.batch.docs.some((d) => d.doc === docKey('c', 'mine')));
    expect(written).toBeGreaterThanOrEqual(postedBeforeWrite);
    expect(posted.slice(written + 1).some((p) => p.batch.entries.some((e) => e.origin === origin))).toBe(true);
    const chained = posted.filter((p) => p.batch.chain?.follows != null);
    for (const p of chained) {
      // Staged while the commit it follows was on the thread, on other documents, with no client's write.
      expect(p.outstanding).toBe(1);
      expect(p.batch.entries.every((e) => e.origin === origin)).toBe(true);
      const before = posted.find((q) => q.batch.chain?.id === p.batch.chain!.follows)!;
      const inFlight = new Set(before.batch.docs.map((d) => d.doc));
      expect(p.batch.docs.some((d) => inFlight.has(d.doc))).toBe(false);
    }
    expect(Math.max(...posted.map((p) => p.outstanding))).toBe(1);
    expect(storedSeqs(store, origin)).toEqual(entries.map((e) => e.seq));
    const reopened = await reopenInPlace(docs, store);
    expect(reopened.listDocs('p', null, 20_000)).toHaveLength(entries.length);
    expect(reopened.listDocs('c', null, 10)).toEqual(['mine']);
  });

  it('never writes a batch staged on a commit that failed: the log skips no seq, and the peer\'s resend fills it', async () => {
    const store = open(true);
    // The database is locked, so the first commit waits on the thread while the next is staged; it then fails
    // (a digest of 3 bytes stands for a disk error). The lock goes as soon as the next is posted: written, that
    // one would leave the first one's seqs missing below its own.
    const lock = new Database(join(dirs[stores.indexOf(store)]!, 'meridian.db'));
    lock.exec('BEGIN IMMEDIATE');
    const { store: rec, posted } = recording(store, (batch) => ({
      ...batch, docs: batch.docs.map((d, i) => (i === 0 ? { ...d, digest: new Uint8Array(3) } : d)),
    }));
    let unlocked = false;
    const watch = setInterval(() => {
      if (!unlocked && posted.some((p) => p.batch.chain?.follows != null)) {
        unlocked = true;
        lock.exec('ROLLBACK');
      }
    }, 1);
    const docs = createDocuments({ store: rec, logger, cacheDocs: 10_000, yjsUpdateBytes: 1 << 20, compactIntervalMs: 0 });
    const entries = peerEntries(2000);
    const origin = entries[0]!.origin;
    try {
      const jobs = [];
      for (let i = 0; i < entries.length; i += 16) jobs.push(docs.applyRemote(entries.slice(i, i + 16), PEER));
      const outcomes = await Promise.allSettled(jobs);
      expect(unlocked).toBe(true);
      const refused = outcomes.filter((o) => o.status === 'rejected');
      expect(refused.length).toBeGreaterThan(0);
      for (const o of refused) expect(String((o as PromiseRejectedResult).reason)).toMatch(/storage refused the write/);
      // What is stored is a prefix of the peer's seqs, and the write path counts exactly that.
      const stored = storedSeqs(store, origin);
      expect(stored).toEqual(stored.map((_, i) => i + 1));
      expect(docs.versionVector().get(origin) ?? 0).toBe(stored.length);
      expect(store.versionVector().get(origin) ?? 0).toBe(stored.length);
      // The peer sends again from what this region holds.
      const rest = entries.slice(stored.length);
      for (let i = 0; i < rest.length; i += 16) await docs.applyRemote(rest.slice(i, i + 16), PEER);
      expect(storedSeqs(store, origin)).toEqual(entries.map((e) => e.seq));
      expect(docs.read(docKey('p', 'd0')).value).toEqual({ i: 0 });
    } finally {
      clearInterval(watch);
      if (!unlocked) lock.exec('ROLLBACK');
      lock.close();
    }
    await docs.close();
  });
});

describe('a writer thread that ends on its own', () => {
  it('refuses every write from then on and says so once, through onWriterLost; a closed store does not', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meridian-writer-'));
    dirs.push(dir);
    // A thread that ends as a crash would, at the first request it is given.
    const crashing = join(dir, 'crashing-thread.mjs');
    writeFileSync(crashing, "import { parentPort } from 'node:worker_threads';\nparentPort.on('message', () => process.exit(7));\n");
    const lost: Error[] = [];
    const store = openStore({
      dataDir: dir, region: 'r1' as RegionId, synchronous: 'full', writerThread: true, writerThreadFile: crashing, logger, onWriterLost: (err) => lost.push(err),
    });
    stores.push(store);
    await expect(store.commit({ entries: [entry(store.writer, 1)], docs: [] })).rejects.toThrow(/writer thread exited \(code 7\)/);
    await expect(store.commit({ entries: [entry(store.writer, 2)], docs: [] })).rejects.toThrow(/writer thread exited/);
    expect(lost.map((e) => e.message)).toEqual(['writer thread exited (code 7)']);
    expect(store.versionVector().size).toBe(0);

    const calm: Error[] = [];
    const closing = openStore({
      dataDir: join(dir, 'other'), region: 'r1' as RegionId, synchronous: 'full', writerThread: true, writerThreadFile: THREAD, logger, onWriterLost: (err) => calm.push(err),
    });
    await closing.commit({ entries: [entry(closing.writer, 1)], docs: [] });
    await closing.close();
    expect(calm).toEqual([]);
  });
});

describe('compaction', () => {
  function liveDoc(): LiveDoc {
    const ydoc = new Y.Doc();
    ydoc.getMap('root').set('v', 1);
    return { ydoc, lastLsn: 2, digest: null, sizeBound: null };
  }

  /** A compactor over `store` ticking every millisecond, noting the documents of each slice it saves; saving waits for `written`. */
  function compacting(
    store: MemoryStore, slices: DocKey[][], docs: Pick<CompactorOptions, 'live' | 'load' | 'busy'>, written?: Promise<void>,
  ): () => void {
    return startCompactor({
      store: {
        docsNeedingCompaction: (min, limit) => store.docsNeedingCompaction(min, limit),
        saveSnapshots: (snapshots) => {
          slices.push(snapshots.map((s) => s.doc));
          store.saveSnapshots(snapshots);
          return written;
        },
      },
      logger, everyMs: 1, afterEntries: 1, ...docs,
    });
  }

  it('leaves a document whose commit is in flight, and starts no slice before the last one is written', async () => {
    const store = new MemoryStore(memoryVolume(), 'r1' as RegionId);
    const Z = 'c/z' as DocKey;
    await store.commit({ entries: [entry(store.writer, 1), { ...entry(store.writer, 2), doc: Z }], docs: [] });
    let release: () => void = () => undefined;
    const slices: DocKey[][] = [];
    // A disk that does not answer until released: the compactor must wait for it.
    const written = new Promise<void>((resolve) => (release = resolve));
    const stop = compacting(store, slices, { live: () => liveDoc(), load: () => null, busy: (doc) => doc === X }, written);
    try {
      while (slices.length === 0) await new Promise((r) => setTimeout(r, 5));
      // Ticks pass while the slice is being written: none starts another.
      for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 5));
      expect(slices).toEqual([[Z]]);
      expect(store.loadDoc(X)!.snapshot).toBeNull();
      release();
      while (slices.length < 2) await new Promise((r) => setTimeout(r, 5));
    } finally {
      stop();
    }
  });

  it('sets aside a document it cannot compact, and compacts the others', async () => {
    const store = new MemoryStore(memoryVolume(), 'r1' as RegionId);
    const Z = 'c/z' as DocKey;
    // X has the more entries: it comes first in every slice.
    await store.commit({ entries: [entry(store.writer, 1), entry(store.writer, 2), { ...entry(store.writer, 3), doc: Z }], docs: [] });
    const tried: DocKey[] = [];
    const slices: DocKey[][] = [];
    const stop = compacting(store, slices, {
      live: () => undefined,
      load: (doc) => {
        tried.push(doc);
        if (doc === X) throw new Error('cannot be built');
        return liveDoc();
      },
      busy: () => false,
    });
    try {
      while (store.loadDoc(Z)!.snapshot === null) await new Promise((r) => setTimeout(r, 5));
      for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 5));
      // The slice that tried X may have ended there (a slice holds the event loop 4 ms at most): the first to save one saves Z.
      expect(slices.find((saved) => saved.length > 0)).toEqual([Z]);
      // Tried once, then left out of later slices.
      expect(tried.filter((d) => d === X)).toEqual([X]);
      expect(store.loadDoc(X)!.snapshot).toBeNull();
    } finally {
      stop();
    }
  });

  it('takes the documents it listed in slices that hold the event loop briefly, all of them before it lists again', async () => {
    const store = new MemoryStore(memoryVolume(), 'r1' as RegionId);
    const docs = Array.from({ length: 64 }, (_, i) => `c/d${i}` as DocKey);
    await store.commit({ entries: docs.map((doc, i) => ({ ...entry(store.writer, i + 1), doc })), docs: [] });
    // Documents of 5,000 keys: each costs the event loop a millisecond or so to encode, all of them far more than a slice.
    const large = (): LiveDoc => {
      const ydoc = new Y.Doc();
      ydoc.transact(() => {
        for (let k = 0; k < 5_000; k++) ydoc.getMap('root').set(`k${k}`, k);
      });
      return { ydoc, lastLsn: 2, digest: null, sizeBound: null };
    };
    /** The documents of each slice saved, with how many listings had been made by then. */
    const slices: { listings: number; docs: DocKey[] }[] = [];
    let listings = 0;
    const stop = startCompactor({
      store: {
        docsNeedingCompaction: (min, limit) => {
          listings++;
          return store.docsNeedingCompaction(min, limit);
        },
        saveSnapshots: (snapshots) => {
          slices.push({ listings, docs: snapshots.map((s) => s.doc) });
          store.saveSnapshots(snapshots);
          return Promise.resolve();
        },
      },
      // Ticks far apart: the slices after the first follow it at once, not a tick later.
      logger, everyMs: 200, afterEntries: 1, live: () => undefined, load: large, busy: () => false,
    });
    try {
      while (docs.some((doc) => store.loadDoc(doc)!.snapshot === null)) await new Promise((r) => setTimeout(r, 5));
      const first = slices.filter((s) => s.listings === 1);
      expect(first.length).toBeGreaterThan(1);
      expect(first.flatMap((s) => s.docs).sort()).toEqual([...docs].sort());
    } finally {
      stop();
    }
  });
});
