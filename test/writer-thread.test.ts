/**
 * Group commits on the writer thread: the same results as committing in
 * place, visible to the main connection once durable, in posting order,
 * and documents never read ahead of the disk.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createDocuments } from '../src/docs/documents.js';
import { docKey, type DocKey, type RegionId, type WriterId } from '../src/ids.js';
import { openStore } from '../src/storage/sqlite.js';
import type { Store } from '../src/storage/types.js';

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

afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const X = 'c/x' as DocKey;
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
    await docs.close();
    const dir = dirs[0]!;
    await store.close();
    stores.splice(stores.indexOf(store), 1);
    const reopened = openStore({ dataDir: dir, region: 'r1' as RegionId, synchronous: 'full', logger });
    stores.push(reopened);
    expect(reopened.listDocs('c', null, 1000)).toHaveLength(201);
  });
});
