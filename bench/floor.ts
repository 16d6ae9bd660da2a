/**
 * The floors the HTTP figures are compared with, measured in this process:
 * - the write path alone: `createDocuments` over an in-process store (same
 *   group commit, same `synchronous`), no HTTP, no replication;
 * - raw Yjs + SQLite: a Y.Doc change per write and one SQLite transaction
 *   per batch, with nothing else (no digests, summaries or version vectors).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import * as Y from 'yjs';
import { pino } from 'pino';
import type { RegionId } from '../src/ids.js';
import { createDocuments } from '../src/docs/documents.js';
import type { Documents } from '../src/docs/types.js';
import { openStore } from '../src/storage/sqlite.js';
import type { Store } from '../src/storage/types.js';
import type { SyncMode } from '../src/storage/sqlite-options.js';
import { Latency, round, type LatencySummary } from './stats.js';

/** An in-process write path and the group commits it made. */
export interface FloorDocuments {
  documents: Documents;
  store: Store;
  commits(): { commits: number; entries: number };
  close(): Promise<void>;
}

/** Opens a store and the write path on it in `dir`, counting group commits. */
export function openFloorDocuments(dir: string, o: { synchronous?: SyncMode; cacheDocs?: number } = {}): FloorDocuments {
  const logger = pino({ level: 'silent' });
  const store = openStore({ dataDir: dir, region: 'floor' as RegionId, synchronous: o.synchronous ?? 'full', logger });
  const tally = { commits: 0, entries: 0 };
  const counted = new Proxy(store, {
    get(target, key) {
      if (key === 'commit') {
        return (batch: Parameters<Store['commit']>[0]) => {
          tally.commits++;
          tally.entries += batch.entries.length;
          return target.commit(batch);
        };
      }
      const value: unknown = Reflect.get(target, key, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  const documents = createDocuments({
    store: counted, logger, cacheDocs: o.cacheDocs ?? 10_000, yjsUpdateBytes: 1 << 20,
  });
  return {
    documents,
    store,
    commits: () => ({ ...tally }),
    close: async () => {
      await documents.close();
      store.close();
    },
  };
}

export interface RawFloorResult {
  batch: number;
  writes: number;
  /** Writes per second with batches back to back. */
  capacity: number;
  /** CPU and fsync time per write, µs. */
  perWriteUs: number;
  /** Duration of one batch (Yjs changes + transaction), i.e. the least latency a write in it could see. */
  batchMs: LatencySummary;
}

/**
 * Applies `writes` single-field changes to `docs` Y.Docs and commits each
 * batch of `batch` updates in one SQLite transaction (WAL, `synchronous`).
 */
export function rawFloor(dir: string, o: { batch: number; writes: number; docs: number; synchronous?: SyncMode }): RawFloorResult {
  mkdirSync(dir, { recursive: true });
  const db = new Database(join(dir, 'raw.db'));
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${(o.synchronous ?? 'full').toUpperCase()}`);
  db.exec(`CREATE TABLE IF NOT EXISTS log (lsn INTEGER PRIMARY KEY, origin TEXT NOT NULL, seq INTEGER NOT NULL,
             doc TEXT NOT NULL, ts INTEGER NOT NULL, data BLOB NOT NULL, UNIQUE (origin, seq));
           CREATE TABLE IF NOT EXISTS docs (doc TEXT PRIMARY KEY, seq INTEGER NOT NULL)`);
  const insert = db.prepare('INSERT INTO log (origin, seq, doc, ts, data) VALUES (?, ?, ?, ?, ?)');
  const upsert = db.prepare('INSERT INTO docs (doc, seq) VALUES (?, ?) ON CONFLICT (doc) DO UPDATE SET seq = excluded.seq');
  type Row = { doc: string; seq: number; update: Uint8Array };
  const commit = db.transaction((rows: Row[]) => {
    for (const r of rows) {
      insert.run('raw', r.seq, r.doc, Date.now(), r.update);
      upsert.run(r.doc, r.seq);
    }
  });
  const docs = new Map<string, Y.Doc>();
  const latency = new Latency();
  let seq = 0;
  const start = performance.now();
  while (seq < o.writes) {
    const t0 = performance.now();
    const rows: Row[] = [];
    for (let k = 0; k < o.batch && seq < o.writes; k++) {
      const name = `bench/w${seq % o.docs}`;
      let ydoc = docs.get(name);
      if (!ydoc) docs.set(name, (ydoc = new Y.Doc()));
      let update: Uint8Array | null = null;
      const capture = (u: Uint8Array): void => {
        update = u;
      };
      ydoc.on('update', capture);
      ydoc.getMap('root').set('v', seq);
      ydoc.off('update', capture);
      rows.push({ doc: name, seq: ++seq, update: update ?? new Uint8Array() });
    }
    commit.immediate(rows);
    latency.record(performance.now() - t0);
  }
  const elapsed = performance.now() - start;
  db.close();
  for (const d of docs.values()) d.destroy();
  return {
    batch: o.batch, writes: o.writes,
    capacity: round((o.writes / elapsed) * 1000, 0),
    perWriteUs: round((elapsed * 1000) / o.writes, 1),
    batchMs: latency.summary(),
  };
}
