/**
 * The region's durable store: one SQLite database, `<dataDir>/meridian.db`,
 * in WAL mode, behind the {@link Store} contract. Group commits, snapshot
 * batches and GC may run on a writer thread with its own connection
 * (./writer.ts), so that waiting for the disk never holds the event loop;
 * reads run on this one.
 *
 * What `synchronous` guarantees in WAL mode (SQLite's PRAGMA synchronous and
 * WAL documentation):
 * - `off`: SQLite never calls fsync; a commit returns once its pages are
 *   handed to the operating system. A process crash (kill -9) loses nothing
 *   committed. An OS crash or power loss can lose recent commits and can
 *   corrupt the database.
 * - `normal`: the WAL is fsynced only around checkpoints, not per commit.
 *   A process crash loses nothing committed. An OS crash or power loss can
 *   roll back the most recent commits, but never corrupts the database.
 * - `full`: every commit fsyncs the WAL before it returns, so a commit that
 *   returned survives an OS crash or power loss (as far as the disk honours
 *   fsync; on macOS that needs F_FULLFSYNC, which this store does not set).
 * - `extra`: in WAL mode the same as `full`. The additional directory fsync
 *   of EXTRA applies only to deleting a rollback journal (DELETE journal
 *   mode). The directory entry of a newly created WAL file is fsynced by
 *   SQLite's unix VFS on the file's first sync in every mode but `off`.
 * Meridian acknowledges a write once `commit` returned, so only `full` and
 * `extra` make an acknowledged write survive power loss.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { pino, type Logger } from 'pino';
import { corruptDatabaseError, isCorruptionError, loadWriterId, quickCheck } from './integrity.js';
import { migrate } from './migrations.js';
import { SqliteStore } from './store.js';
import { CommitWriter, writerThreadFile } from './writer.js';
import { WAL_SIZE_LIMIT, type SqliteOptions, type SyncMode } from './sqlite-options.js';
import type { RegionId, VersionVector } from '../ids.js';
import type { CommitBatch, Snapshot, Store } from './types.js';
import { MAX_CONFLICT_BYTES } from './types.js';

/** The SQLite engine: the contract plus what only SQLite has (its file, `quick_check`). */
export type SqliteEngine = Store & { readonly path: string; quickCheck(): string[] };

/** A SQLite store that writes in place (no writer thread): every write returns at once. */
export type InlineStore = Omit<SqliteEngine, 'commit' | 'saveSnapshots' | 'collectGarbage' | 'setPeerAcks' | 'close'> & {
  commit(batch: CommitBatch): number[];
  saveSnapshots(snapshots: Snapshot[]): void;
  collectGarbage(peers: RegionId[], olderThanTs: number): number;
  setPeerAcks(peer: RegionId, vv: VersionVector): void;
  close(): void;
};

export { StoreOpenError, type StoreOpenFailure } from './errors.js';
export { quickCheck } from './integrity.js';
export { SCHEMA_VERSION } from './migrations.js';

/** File name of the database inside the data directory. */
export const DB_FILE = 'meridian.db';
const BUSY_TIMEOUT_MS = 5000;
const SYNC_PRAGMA: Record<SyncMode, string> = { off: 'OFF', normal: 'NORMAL', full: 'FULL', extra: 'EXTRA' };

function configure(db: Database.Database, path: string, synchronous: SyncMode): void {
  const sync = SYNC_PRAGMA[synchronous];
  if (sync === undefined) throw new Error(`unknown synchronous mode "${String(synchronous)}"`);
  db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
  const mode = db.pragma('journal_mode = WAL', { simple: true });
  if (mode !== 'wal') throw new Error(`${path}: cannot use WAL journal mode (SQLite kept "${String(mode)}")`);
  db.pragma(`synchronous = ${sync}`);
  db.pragma('foreign_keys = ON');
  db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT}`);
}

/**
 * Opens (creating if needed) the region database. Refuses, with a
 * {@link StoreOpenError} that says what to do, a database that fails
 * `PRAGMA quick_check`, one written by a newer schema, or one that belongs
 * to another region.
 */
export function openStore(options: SqliteOptions & { writerThread?: false; logger?: Logger }): InlineStore;
export function openStore(options: SqliteOptions & { logger?: Logger }): SqliteEngine;
export function openStore(options: SqliteOptions & { logger?: Logger }): SqliteEngine {
  mkdirSync(options.dataDir, { recursive: true });
  const path = join(options.dataDir, DB_FILE);
  const logger = (options.logger ?? pino()).child({ module: 'storage' });
  const db = new Database(path);
  try {
    configure(db, path, options.synchronous);
    const problems = quickCheck(db);
    if (problems.length > 0) throw corruptDatabaseError(path, problems);
    const { from, to } = migrate(db, path);
    if (from !== to) logger.info({ path, from, to }, 'database schema migrated');
    const writer = loadWriterId(db, options.region, path);
    const file = options.writerThread === true ? writerThreadFile(options.writerThreadFile) : null;
    const maxConflictBytes = options.maxConflictBytes ?? MAX_CONFLICT_BYTES;
    const thread = file === null ? null : new CommitWriter(file, {
      path, synchronous: options.synchronous, busyTimeoutMs: BUSY_TIMEOUT_MS, maxConflictBytes, ...(options.onWriterLost ? { onLost: options.onWriterLost } : {}),
    });
    if (options.writerThread === true && !thread) logger.debug('no compiled writer thread here; committing in place');
    return new SqliteStore(db, path, writer, logger, thread, maxConflictBytes);
  } catch (err) {
    db.close();
    if (isCorruptionError(err)) throw corruptDatabaseError(path, [(err as Error).message], err);
    throw err;
  }
}

