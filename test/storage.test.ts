import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { docKey, type DocKey, type RegionId, type WriterId } from '../src/ids.js';
import { openStore, SCHEMA_VERSION, StoreOpenError, type InlineStore } from '../src/storage/sqlite.js';
import { prepareStatements } from '../src/storage/statements.js';
import { snapshotChecksum } from '../src/storage/checksum.js';
import type { NewLogEntry } from '../src/storage/types.js';
import type { SyncMode } from '../src/storage/sqlite-options.js';
import { bucketOf } from '../src/buckets.js';

const REGION = 'us-east' as RegionId;
const OTHER = 'eu-west~0123456789ab' as WriterId;

let dir: string;
let open: InlineStore[];
let logLines: string[];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'meridian-storage-'));
  open = [];
  logLines = [];
});

afterEach(() => {
  for (const store of open) store.close();
  rmSync(dir, { recursive: true, force: true });
});

function openAt(dataDir = join(dir, 'data'), region = REGION, synchronous: SyncMode = 'full'): InlineStore {
  const logger = pino({ level: 'warn' }, { write: (line: string) => logLines.push(line) });
  const store = openStore({ dataDir, region, synchronous, logger });
  open.push(store);
  return store;
}

function closeStore(store: InlineStore): void {
  store.close();
  open = open.filter((s) => s !== store);
}

/** Raw access to the database file, as an operator or a faulty disk would have it. */
/** Takes back what schema version 5 added, as a database written before it lacks. */
function undoVersion5(db: Database.Database): void {
  db.exec('DROP TABLE quarantine_counts');
  db.exec('DROP INDEX quarantine_by_peer');
  db.exec("DELETE FROM meta WHERE key = 'conflict_bytes'");
}

function withRaw<T>(path: string, fn: (db: Database.Database) => T): T {
  const db = new Database(path);
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

function entry(origin: WriterId, seq: number, doc: DocKey, ts = 1000 + seq, update?: Uint8Array): NewLogEntry {
  return { origin, seq, doc, ts, update: update ?? Uint8Array.from([seq & 0xff, 1, 2, 3]) };
}

/** Flips one byte of `marker` inside the closed database file, as a faulty disk would; SQLite does not notice. */
function flipByteOf(path: string, marker: Uint8Array): void {
  const bytes = readFileSync(path);
  const at = bytes.indexOf(marker);
  expect(at).toBeGreaterThan(0);
  const fd = openSync(path, 'r+');
  writeSync(fd, Buffer.from([marker[10]! ^ 0x01]), 0, 1, at + 10);
  closeSync(fd);
}

function digest(n: number): Uint8Array {
  return new Uint8Array(32).fill(n);
}

function expectOpenError(fn: () => unknown, reason: string): StoreOpenError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(StoreOpenError);
    expect((err as StoreOpenError).reason).toBe(reason);
    return err as StoreOpenError;
  }
  throw new Error('expected the store to refuse to open');
}

const X = docKey('notes', 'x');
const Y = docKey('notes', 'y');

describe('opening', () => {
  it('creates the folder, the database in WAL mode, and a writer id that persists', () => {
    const dataDir = join(dir, 'nested', 'data');
    const store = openAt(dataDir);
    expect(store.writer).toMatch(/^us-east~[0-9a-f]{12}$/);
    expect(store.path).toBe(join(dataDir, 'meridian.db'));
    expect(store.quickCheck()).toEqual([]);
    const writer = store.writer;
    closeStore(store);
    withRaw(join(dataDir, 'meridian.db'), (db) => expect(db.pragma('journal_mode', { simple: true })).toBe('wal'));

    const again = openAt(dataDir);
    expect(again.writer).toBe(writer);
  });

  it('gives a fresh data directory a different writer id', () => {
    const a = openAt(join(dir, 'a'));
    const b = openAt(join(dir, 'b'));
    expect(a.writer).not.toBe(b.writer);
  });

  it('refuses a data directory that belongs to another region', () => {
    closeStore(openAt());
    const err = expectOpenError(() => openAt(join(dir, 'data'), 'eu-west' as RegionId), 'region_mismatch');
    expect(err.message).toContain('"us-east"');
    expect(err.message).toContain('"eu-west"');
  });

  it('refuses a schema newer than the code knows', () => {
    const store = openAt();
    const path = store.path;
    closeStore(store);
    withRaw(path, (db) => db.prepare("UPDATE meta SET value = ? WHERE key = 'schema_version'").run(String(SCHEMA_VERSION + 1)));
    const err = expectOpenError(() => openAt(), 'schema_too_new');
    expect(err.message).toContain(`schema version ${SCHEMA_VERSION + 1}`);
    expect(err.message).toContain(`up to ${SCHEMA_VERSION}`);
  });

  it('refuses a database that is not a Meridian database', () => {
    const dataDir = join(dir, 'foreign');
    mkdirSync(dataDir);
    withRaw(join(dataDir, 'meridian.db'), (db) => db.exec('CREATE TABLE t (a)'));
    expectOpenError(() => openAt(dataDir), 'not_meridian');
  });
});

describe('corruption', () => {
  it('refuses to open when quick_check finds a damaged b-tree page', () => {
    const store = openAt();
    const entries = Array.from({ length: 1500 }, (_, i) => entry(store.writer, i + 1, docKey('c', `d${i % 200}`)));
    store.commit({ entries, docs: [] });
    const path = store.path;
    closeStore(store);
    const { rootpage, pageSize } = withRaw(path, (db) => ({
      rootpage: db.prepare<[], { rootpage: number }>("SELECT rootpage FROM sqlite_schema WHERE name = 'log_by_doc'").get()!
        .rootpage,
      pageSize: db.pragma('page_size', { simple: true }) as number,
    }));
    // Overwrite the header of the index's root page: SQLite can no longer parse it.
    const fd = openSync(path, 'r+');
    writeSync(fd, Buffer.alloc(64, 0xff), 0, 64, (rootpage - 1) * pageSize);
    closeSync(fd);

    const err = expectOpenError(() => openAt(), 'corrupt');
    expect(err.message).toContain(`The database ${path} is corrupt`);
    expect(err.message).toContain(`Tree ${rootpage} page ${rootpage}`);
    expect(err.message).toContain('Restore it from a backup');
    expect(err.message).toContain('aside and restart the region');
  });

  it('skips, counts and logs a log entry whose bytes changed on disk', () => {
    const store = openAt();
    const marker = randomBytes(64);
    const lsns = store.commit({
      entries: [entry(store.writer, 1, X), entry(store.writer, 2, X, 2000, marker), entry(store.writer, 3, X)],
      docs: [{ doc: X, digest: digest(7), deleted: false }],
    });
    closeStore(store);
    flipByteOf(store.path, marker);

    const reopened = openAt();
    const loaded = reopened.loadDoc(X)!;
    expect(loaded.corrupt).toBe(1);
    expect(loaded.entries.map((e) => e.seq)).toEqual([1, 3]);
    expect(reopened.stats().corruptEntries).toBe(1);
    expect(reopened.summary(X)!.digest).toEqual(Buffer.alloc(32));
    const logged = logLines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logged).toContainEqual(
      expect.objectContaining({ level: 50, doc: X, origin: reopened.writer, seq: 2, lsn: lsns[1] }),
    );
    // Reading it again (here through the log) skips it without counting it twice.
    expect(reopened.readLog(0, 10).map((e) => e.seq)).toEqual([1, 3]);
    expect(reopened.stats().corruptEntries).toBe(1);
  });

  it('detects an update rewritten without its checksum, and a damaged snapshot', () => {
    const store = openAt();
    const lsns = store.commit({
      entries: [entry(store.writer, 1, X), entry(store.writer, 2, X), entry(store.writer, 3, X)],
      docs: [{ doc: X, digest: digest(1), deleted: false }],
    });
    store.saveSnapshots([{ doc: X, state: Uint8Array.from([9, 9]), uptoLsn: lsns[1]! }]);
    const path = store.path;
    closeStore(store);
    withRaw(path, (db) => {
      db.prepare('UPDATE log SET data = ? WHERE seq = 3').run(Buffer.from([0, 0, 0]));
      db.prepare('UPDATE snapshots SET state = ?').run(Buffer.from([9, 8]));
    });

    const reopened = openAt();
    const loaded = reopened.loadDoc(X)!;
    // The snapshot is unusable, so every entry still in the log is returned instead.
    expect(loaded.snapshot).toBeNull();
    expect(loaded.snapshotLsn).toBe(0);
    expect(loaded.entries.map((e) => e.seq)).toEqual([1, 2]);
    expect(loaded.corrupt).toBe(2);
    expect(reopened.stats().corruptEntries).toBe(2);
  });

  it('tells of a document found corrupt among reads made together at once, and marks it once they end, whatever was committed meanwhile', () => {
    const store = openAt();
    const marker = randomBytes(64);
    store.commit({
      entries: [entry(store.writer, 1, X, 2000, marker)],
      docs: [{ doc: X, digest: digest(7), deleted: false }, { doc: Y, digest: digest(8), deleted: false }],
    });
    closeStore(store);
    flipByteOf(store.path, marker);

    const reopened = openAt();
    const heard: [DocKey, Uint8Array][] = [];
    reopened.onCorrupt((doc, before) => heard.push([doc, before]));
    const loaded = reopened.readTogether(() => {
      expect(reopened.summary(Y)!.deleted).toBe(false);
      // Another connection commits while these reads go on (as the writer thread does).
      withRaw(reopened.path, (db) => db.prepare('UPDATE docs SET deleted = 1 WHERE doc = ?').run(Y));
      expect(reopened.summary(Y)!.deleted).toBe(false);
      const first = reopened.loadDoc(X)!;
      expect(heard.map(([doc, before]) => [doc, [...before]])).toEqual([[X, [...digest(7)]]]);
      expect(reopened.loadDoc(X)!.corrupt).toBe(1);
      return first;
    });
    expect(loaded.corrupt).toBe(1);
    expect(loaded.entries).toEqual([]);
    expect(heard).toHaveLength(1);
    expect(reopened.summary(X)!.digest).toEqual(Buffer.alloc(32));
    expect(reopened.summary(Y)!.deleted).toBe(true);
    // Reads apart from it mark at once, as before.
    reopened.markCorrupt(Y);
    expect(reopened.summary(Y)!.digest).toEqual(Buffer.alloc(32));
  });

  it('keeps reading when the mark of a corrupt document found among reads made together cannot be stored', () => {
    const store = openAt();
    const marker = randomBytes(64);
    store.commit({ entries: [entry(store.writer, 1, X, 2000, marker)], docs: [{ doc: X, digest: digest(7), deleted: false }] });
    closeStore(store);
    flipByteOf(store.path, marker);

    const reopened = openAt();
    const heard: DocKey[] = [];
    reopened.onCorrupt((doc) => heard.push(doc));
    // Another process (an operator's shell, a backup tool) holds the write lock.
    const other = new Database(reopened.path);
    try {
      other.exec('BEGIN IMMEDIATE');
      const loaded = reopened.readTogether(() => reopened.loadDoc(X));
      expect(loaded!.corrupt).toBe(1);
      expect(heard).toEqual([X]);
      other.exec('ROLLBACK');
    } finally {
      other.close();
    }
    expect(reopened.summary(X)!.digest).toEqual(Buffer.from(digest(7)));
    expect(logLines.some((l) => l.includes('could not store the mark of a corrupt document'))).toBe(true);
    // Found again once the lock is gone: marked then.
    expect(reopened.loadDoc(X)!.corrupt).toBe(1);
    expect(reopened.summary(X)!.digest).toEqual(Buffer.alloc(32));
  }, 20_000);
});

describe('per-document log questions', () => {
  it('are index seeks, not reads of every entry of the document', () => {
    const store = openAt();
    store.commit({ entries: [entry(OTHER, 1, X), entry(store.writer, 1, X)], docs: [] });
    const path = join(dir, 'data', 'meridian.db');
    closeStore(store);
    withRaw(path, (db) => {
      const s = prepareStatements(db);
      const plans = {
        docOrigins: [X, X], docHead: [X, OTHER], docBeyondCount: [X, OTHER, 0, 10], docBeyondFirst: [X, OTHER, 0],
      } as const;
      for (const [name, params] of Object.entries(plans)) {
        const source = s[name as keyof typeof plans].source;
        const plan = db.prepare(`EXPLAIN QUERY PLAN ${source}`).all(...params) as { detail: string }[];
        const steps = plan.map((p) => p.detail).filter((d) => /\blog\b/.test(d));
        expect(steps.length, name).toBeGreaterThan(0);
        for (const step of steps) expect(step, name).toMatch(/^SEARCH .*INDEX log_by_doc_origin \(doc=\?/);
      }
    });
  });

  it('find what needs compaction by scanning down to the minimum count, not through every document with an entry', () => {
    const store = openAt();
    store.commit({ entries: [entry(OTHER, 1, X)], docs: [] });
    const path = store.path;
    closeStore(store);
    withRaw(path, (db) => {
      // The bytecode: where the scan of docs_to_compact (by count, from the
      // highest) ends is compared with a register, which must hold the first
      // parameter (the minimum count), not the constant 0 of "log_count > 0".
      const ops = db.prepare(`EXPLAIN ${prepareStatements(db).toCompact.source}`).all(32, 4096, 64) as { opcode: string; p1: number; p2: number; p3: number }[];
      const end = ops.findIndex((op) => /^Idx(GE|GT|LE|LT)$/.test(op.opcode));
      expect(end).toBeGreaterThan(0);
      const bound = ops[end]!.p3;
      const loaded = ops.slice(0, end).filter((op) => op.p2 === bound && (op.opcode === 'Variable' || op.opcode === 'Integer')).at(-1);
      expect(loaded).toMatchObject({ opcode: 'Variable', p1: 1 });
    });
  });

  it('gets its index when a database of schema version 2 is opened', () => {
    const store = openAt();
    store.commit({ entries: [entry(OTHER, 1, X), entry(OTHER, 2, X)], docs: [] });
    const path = join(dir, 'data', 'meridian.db');
    closeStore(store);
    withRaw(path, (db) => {
      db.exec('DROP INDEX log_by_doc_origin');
      // What later versions added too.
      undoVersion5(db);
      db.exec('DROP INDEX docs_by_bucket');
      db.exec('ALTER TABLE docs DROP COLUMN bucket');
      db.prepare("UPDATE meta SET value = '2' WHERE key = 'schema_version'").run();
    });
    const reopened = openAt();
    expect(reopened.docHeads(X)).toEqual([{ origin: OTHER, seq: 2, ts: 1002 }]);
    closeStore(reopened);
    withRaw(path, (db) => {
      expect(db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").pluck().get()).toBe(String(SCHEMA_VERSION));
      expect(db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'log_by_doc_origin'").pluck().get()).toBe('log_by_doc_origin');
    });
  });

  it('counts the quarantined entries per peer and the conflict records\' bytes of a database of schema version 4', () => {
    const store = openAt();
    const peer = 'eu-west' as RegionId;
    const lost = { doc: X, at: 1, winner: peer, keptDigest: new Uint8Array(32), lostDigest: new Uint8Array(32).fill(1), lostState: new Uint8Array(700) };
    store.commit({ entries: [], docs: [], quarantined: [1, 2, 3].map((seq) => ({ ...entry(OTHER, seq, X), peer, reason: 'bad' })), conflicts: [lost, lost] });
    const path = join(dir, 'data', 'meridian.db');
    closeStore(store);
    withRaw(path, (db) => {
      undoVersion5(db);
      db.prepare("UPDATE meta SET value = '4' WHERE key = 'schema_version'").run();
    });
    const reopened = openAt();
    expect(reopened.quarantine.counts()).toEqual(new Map([[peer, 3]]));
    closeStore(reopened);
    // And the bytes of the conflict records kept, which later commits hold to their bound.
    withRaw(path, (db) => expect(db.prepare("SELECT value FROM meta WHERE key = 'conflict_bytes'").pluck().get()).toBe('1400'));
  });

  it('gives the documents of a database of schema version 3 their anti-entropy buckets', () => {
    const store = openAt();
    const docs = Array.from({ length: 30 }, (_, i) => docKey('old', `d${i}`));
    store.commit({ entries: docs.map((doc, i) => entry(OTHER, i + 1, doc)), docs: [] });
    const path = join(dir, 'data', 'meridian.db');
    closeStore(store);
    withRaw(path, (db) => {
      // What later versions added too.
      undoVersion5(db);
      db.exec('DROP INDEX docs_by_bucket');
      db.exec('ALTER TABLE docs DROP COLUMN bucket');
      db.prepare("UPDATE meta SET value = '3' WHERE key = 'schema_version'").run();
    });
    const reopened = openAt();
    for (const b of new Set(docs.map((d) => bucketOf(d)))) {
      expect(reopened.bucketSummaries(b).map((s) => s.doc)).toEqual(docs.filter((d) => bucketOf(d) === b).sort());
    }
    closeStore(reopened);
    withRaw(path, (db) => {
      expect(db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").pluck().get()).toBe(String(SCHEMA_VERSION));
      expect(db.prepare('SELECT count(*) FROM docs WHERE bucket < 0').pluck().get()).toBe(0);
    });
  });
});

describe('log and documents', () => {
  it('stores entries and summaries and loads them back', () => {
    const store = openAt();
    const w = store.writer;
    const update = randomBytes(300);
    const lsns = store.commit({
      entries: [entry(w, 1, X, 5, update), entry(w, 2, Y), entry(w, 3, X)],
      docs: [
        { doc: X, digest: digest(1), deleted: false },
        { doc: Y, digest: digest(2), deleted: true },
      ],
    });
    expect(lsns).toHaveLength(3);
    expect(lsns[1]! > lsns[0]! && lsns[2]! > lsns[1]!).toBe(true);

    const x = store.loadDoc(X)!;
    expect(x.snapshot).toBeNull();
    expect(x.corrupt).toBe(0);
    expect(x.entries).toEqual([
      { lsn: lsns[0], origin: w, seq: 1, doc: X, ts: 5, update: Buffer.from(update) },
      { lsn: lsns[2], origin: w, seq: 3, doc: X, ts: 1003, update: Buffer.from([3, 1, 2, 3]) },
    ]);
    expect(store.loadDoc(docKey('notes', 'never'))).toBeNull();
    expect(store.summary(Y)).toEqual({ doc: Y, digest: Buffer.from(digest(2)), deleted: true });
    expect(store.hasEntry(w, 2)).toBe(true);
    expect(store.hasEntry(w, 4)).toBe(false);
    expect(store.latestEntry(X, w)).toEqual({ origin: w, seq: 3 });
    expect(store.latestEntry(X, OTHER)).toBeNull();
    expect(store.readLog(lsns[0]!, 10).map((e) => e.seq)).toEqual([2, 3]);
    expect(store.readLog(0, 2).map((e) => e.seq)).toEqual([1, 2]);

    const stats = store.stats();
    expect(stats).toMatchObject({ documents: 1, logEntries: 3, logBytes: 308, corruptEntries: 0 });
    expect(stats.dbBytes).toBeGreaterThan(0);
  });

  it('keeps everything across a reopen, with the WAL checkpointed away on close', () => {
    const store = openAt();
    store.commit({ entries: [entry(store.writer, 1, X)], docs: [{ doc: X, digest: digest(3), deleted: false }] });
    closeStore(store);
    expect(existsSync(join(dir, 'data', 'meridian.db-wal'))).toBe(false);
    const reopened = openAt();
    expect(reopened.loadDoc(X)!.entries).toHaveLength(1);
    expect(reopened.stats()).toMatchObject({ logEntries: 1, logBytes: 4 });
    expect(reopened.versionVector()).toEqual(new Map([[reopened.writer, 1]]));
  });

  it('ignores an entry it already has and returns -1 for it', () => {
    const store = openAt();
    const w = store.writer;
    const first = store.commit({ entries: [entry(w, 1, X)], docs: [] });
    const second = store.commit({
      entries: [entry(w, 1, X, 1, Uint8Array.from([42])), entry(w, 2, X), entry(w, 2, X)],
      docs: [],
    });
    expect(first[0]).toBeGreaterThan(0);
    expect(second[0]).toBe(-1);
    expect(second[1]).toBeGreaterThan(first[0]!);
    expect(second[2]).toBe(-1);
    const loaded = store.loadDoc(X)!;
    expect(loaded.entries.map((e) => [e.seq, [...e.update]])).toEqual([
      [1, [1, 1, 2, 3]],
      [2, [2, 1, 2, 3]],
    ]);
    expect(store.stats().logEntries).toBe(2);
  });

  it('rolls back a whole batch when any part of it is invalid', () => {
    const store = openAt();
    expect(() =>
      store.commit({ entries: [entry(store.writer, 1, X)], docs: [{ doc: X, digest: new Uint8Array(5), deleted: false }] }),
    ).toThrow(/expected 32/);
    expect(store.hasEntry(store.writer, 1)).toBe(false);
    expect(store.loadDoc(X)).toBeNull();
    expect(store.stats().logEntries).toBe(0);
  });

  it('gives a document with entries but no summary an all-zero digest', () => {
    const store = openAt();
    store.commit({ entries: [entry(OTHER, 1, X)], docs: [] });
    expect(store.summary(X)).toEqual({ doc: X, digest: Buffer.alloc(32), deleted: false });
  });

  it('lists live documents of one collection in id order, paged', () => {
    const store = openAt();
    const ids = ['b', 'a', 'c-1', 'C', 'z.z', 'a~b', 'gone'];
    const docs = [
      ...ids.map((id, i) => ({ doc: docKey('notes', id), digest: digest(i), deleted: id === 'gone' })),
      { doc: docKey('notes0', 'a'), digest: digest(1), deleted: false },
      { doc: docKey('notes.x', 'a'), digest: digest(1), deleted: false },
      { doc: docKey('note', 'a'), digest: digest(1), deleted: false },
    ];
    store.commit({ entries: [], docs });
    const pages: string[][] = [];
    let after: string | null = null;
    for (;;) {
      const page = store.listDocs('notes', after, 2);
      if (page.length === 0) break;
      pages.push(page);
      after = page[page.length - 1]!;
    }
    expect(pages).toEqual([['C', 'a'], ['a~b', 'b'], ['c-1', 'z.z']]);
    expect(store.listDocs('notes0', null, 10)).toEqual(['a']);

    const all = store.docSummaries(null, 4);
    expect(all.map((s) => s.doc)).toEqual(['note/a', 'notes.x/a', 'notes/C', 'notes/a']);
    const next = store.docSummaries(all[3]!.doc, 100);
    expect(next.map((s) => s.doc)).toEqual(['notes/a~b', 'notes/b', 'notes/c-1', 'notes/gone', 'notes/z.z', 'notes0/a']);
    expect(next.find((s) => s.doc === 'notes/gone')!.deleted).toBe(true);
    expect(store.stats().documents).toBe(9);
  });

  it('marks a document corrupt with an all-zero digest', () => {
    const store = openAt();
    store.commit({ entries: [], docs: [{ doc: X, digest: digest(5), deleted: false }] });
    store.markCorrupt(X);
    expect(store.summary(X)!.digest).toEqual(Buffer.alloc(32));
  });
});

describe('version vector', () => {
  it('advances only over contiguous sequence numbers', () => {
    const store = openAt();
    const w = store.writer;
    store.commit({ entries: [entry(w, 1, X), entry(w, 2, X), entry(OTHER, 1, Y)], docs: [] });
    expect(store.versionVector()).toEqual(new Map([[w, 2], [OTHER, 1]]));
    store.commit({ entries: [entry(w, 4, X), entry(OTHER, 3, Y)], docs: [] });
    expect(store.versionVector().get(w)).toBe(2);
    // Filling the gap catches up over the entry that arrived early.
    store.commit({ entries: [entry(w, 3, X)], docs: [] });
    expect(store.versionVector().get(w)).toBe(4);
    expect(store.versionVector().get(OTHER)).toBe(1);
  });

  it('is raised by a commit but never lowered, and walks on over stored entries', () => {
    const store = openAt();
    const w = store.writer;
    store.commit({ entries: [entry(w, 1, X), entry(w, 2, X), entry(w, 5, X)], docs: [] });
    store.commit({ entries: [], docs: [], raise: new Map([[w, 1]]) });
    expect(store.versionVector().get(w)).toBe(2);
    store.commit({ entries: [], docs: [], raise: new Map([[w, 4], [OTHER, 7]]) });
    expect(store.versionVector()).toEqual(new Map([[w, 5], [OTHER, 7]]));
    // Entries 3 and 4 were skipped over: the log can serve this origin from 5 on.
    expect(store.logFloor()).toEqual(new Map([[w, 5], [OTHER, 8]]));
    store.commit({ entries: [entry(OTHER, 8, Y)], docs: [] });
    expect(store.versionVector().get(OTHER)).toBe(8);
  });

  it('reports how much lies beyond a version vector', () => {
    const store = openAt();
    const w = store.writer;
    store.commit({
      entries: [
        entry(w, 1, X, 100, new Uint8Array(10)),
        entry(w, 2, X, 300, new Uint8Array(20)),
        entry(w, 3, X, 200, new Uint8Array(30)),
        entry(OTHER, 1, Y, 250, new Uint8Array(5)),
      ],
      docs: [],
    });
    expect(store.oldestBeyond(new Map())).toEqual({ ts: 100, count: 4, bytes: 65 });
    expect(store.oldestBeyond(new Map([[w, 1]]))).toEqual({ ts: 200, count: 3, bytes: 55 });
    expect(store.oldestBeyond(new Map([[w, 3]]))).toEqual({ ts: 250, count: 1, bytes: 5 });
    expect(store.oldestBeyond(new Map([[w, 3], [OTHER, 1]]))).toBeNull();
  });

  it('records peer acknowledgements, replacing what a peer said before', () => {
    const store = openAt();
    const peer = 'eu-west' as RegionId;
    store.setPeerAcks(peer, new Map([[store.writer, 5], [OTHER, 2]]));
    expect(store.peerAcks(peer)).toEqual(new Map([[store.writer, 5], [OTHER, 2]]));
    store.setPeerAcks(peer, new Map([[store.writer, 3]]));
    expect(store.peerAcks(peer)).toEqual(new Map([[store.writer, 3]]));
    expect(store.peerAcks('ap-south' as RegionId)).toEqual(new Map());
  });
});

describe('snapshots and garbage collection', () => {
  it('loads a snapshot stored with a separate part of what waited (as earlier versions stored it), ignoring that part', () => {
    let store = openAt();
    const lsns = store.commit({ entries: [entry(store.writer, 1, X), entry(store.writer, 2, X)], docs: [{ doc: X, digest: digest(1), deleted: false }] });
    store.saveSnapshots([{ doc: X, state: Uint8Array.from([7, 7]), uptoLsn: lsns[0]! }]);
    const path = store.path;
    closeStore(store);
    const earlier = { doc: X, state: Uint8Array.from([7, 7]), uptoLsn: lsns[0]! };
    withRaw(path, (db) => db.prepare('UPDATE snapshots SET pending = ?, checksum = ? WHERE doc = ?').run(Buffer.from([8]), snapshotChecksum(earlier, Uint8Array.from([8])), X));
    store = openAt();
    const loaded = store.loadDoc(X)!;
    expect(loaded).toMatchObject({ snapshot: Buffer.from([7, 7]), snapshotLsn: lsns[0], corrupt: 0 });
    expect(loaded.entries.map((e) => e.seq)).toEqual([2]);
    expect(loaded).not.toHaveProperty('pending');
    // A damaged separate part still fails the row's checksum.
    closeStore(store);
    withRaw(path, (db) => db.prepare('UPDATE snapshots SET pending = ? WHERE doc = ?').run(Buffer.from([9]), X));
    store = openAt();
    expect(store.loadDoc(X)).toMatchObject({ snapshot: null, corrupt: 1 });
  });

  it('loads a snapshot with only the entries after it, and tracks what needs compaction', () => {
    const store = openAt();
    const w = store.writer;
    const lsns = store.commit({
      entries: [entry(w, 1, X), entry(w, 2, X), entry(w, 3, Y), entry(w, 4, X)],
      docs: [{ doc: X, digest: digest(1), deleted: false }],
    });
    expect(store.docsNeedingCompaction(1, 10)).toEqual([X, Y]);
    expect(store.docsNeedingCompaction(2, 10)).toEqual([X]);
    expect(store.docsNeedingCompaction(4, 10)).toEqual([]);

    store.saveSnapshots([{ doc: X, state: Uint8Array.from([7, 7]), uptoLsn: lsns[1]! }]);
    const loaded = store.loadDoc(X)!;
    expect(loaded.snapshot).toEqual(Buffer.from([7, 7]));
    expect(loaded.snapshotLsn).toBe(lsns[1]);
    expect(loaded.entries.map((e) => e.seq)).toEqual([4]);
    expect(store.docsNeedingCompaction(1, 10)).toEqual([X, Y]);
    expect(store.docsNeedingCompaction(2, 10)).toEqual([]);

    // An older snapshot never replaces a newer one.
    store.saveSnapshots([{ doc: X, state: Uint8Array.from([1]), uptoLsn: lsns[0]! }]);
    expect(store.loadDoc(X)!.snapshot).toEqual(Buffer.from([7, 7]));
    store.saveSnapshots([{ doc: X, state: Uint8Array.from([6]), uptoLsn: lsns[3]! }]);
    expect(store.loadDoc(X)).toMatchObject({ snapshot: Buffer.from([6]), entries: [] });
    expect(store.docsNeedingCompaction(1, 10)).toEqual([Y]);
    expect(() =>
      store.saveSnapshots([{ doc: docKey('notes', 'nope'), state: new Uint8Array(1), uptoLsn: 1 }]),
    ).toThrow(/unknown document/);
  });

  it('deletes only entries that are compacted and acknowledged by every peer, or expired', () => {
    const store = openAt();
    const w = store.writer;
    const b = 'b' as RegionId;
    const c = 'c' as RegionId;
    const lsns = store.commit({
      entries: [entry(w, 1, X, 10), entry(w, 2, X, 20), entry(OTHER, 1, X, 15), entry(w, 3, X, 30), entry(w, 4, Y, 40)],
      docs: [],
    });
    // X is compacted up to OTHER:1, which covers w:1 and w:2 but not w:3; Y is not compacted.
    store.saveSnapshots([{ doc: X, state: Uint8Array.from([1]), uptoLsn: lsns[2]! }]);
    store.setPeerAcks(b, new Map([[w, 4], [OTHER, 1]]));
    store.setPeerAcks(c, new Map([[w, 1]]));

    expect(store.collectGarbage([b, c], 0)).toBe(1);
    expect(store.hasEntry(w, 1)).toBe(false);
    expect([2, 3, 4].map((s) => store.hasEntry(w, s))).toEqual([true, true, true]);
    expect(store.hasEntry(OTHER, 1)).toBe(true);
    expect(store.logFloor()).toEqual(new Map([[w, 2], [OTHER, 1]]));

    // Expiry drops compacted entries no matter the acknowledgements, but not uncompacted ones.
    expect(store.collectGarbage([b, c], 21)).toBe(2);
    expect(store.hasEntry(w, 2)).toBe(false);
    expect(store.hasEntry(OTHER, 1)).toBe(false);
    expect(store.hasEntry(w, 3)).toBe(true);
    expect(store.collectGarbage([b, c], 1_000_000)).toBe(0);
    expect(store.logFloor()).toEqual(new Map([[w, 3], [OTHER, 2]]));
    expect(store.stats()).toMatchObject({ logEntries: 2, logBytes: 8 });
    expect(store.loadDoc(X)!.entries.map((e) => e.seq)).toEqual([3]);
  });

  it('collects a large backlog in bounded batches, all compacted entries without peers', () => {
    const store = openAt();
    const w = store.writer;
    const entries = Array.from({ length: 2500 }, (_, i) => entry(w, i + 1, docKey('bulk', `d${i % 7}`)));
    const lsns = store.commit({ entries, docs: [] });
    const upto = lsns[2399]!;
    for (let i = 0; i < 7; i++) {
      store.saveSnapshots([{ doc: docKey('bulk', `d${i}`), state: new Uint8Array(1), uptoLsn: upto }]);
    }
    expect(store.collectGarbage([], 0)).toBe(2400);
    expect(store.stats().logEntries).toBe(100);
    expect(store.logFloor()).toEqual(new Map([[w, 2401]]));
    expect(store.readLog(0, 1000).map((e) => e.seq)).toEqual(Array.from({ length: 100 }, (_, i) => 2401 + i));
  });
});
