/**
 * Settings of the SQLite engine, kept out of the storage contract
 * (./types.ts): another engine has no `synchronous` pragma or database file.
 */
import type { RegionId } from '../ids.js';

/**
 * Size the WAL file is truncated back to after a checkpoint. A per-connection
 * setting: every connection that commits (and so may checkpoint) sets it.
 */
export const WAL_SIZE_LIMIT = 64 * 1024 * 1024;

/** SQLite's `PRAGMA synchronous`; what each guarantees in WAL mode is written above `openStore` (./sqlite.ts). */
export type SyncMode = 'off' | 'normal' | 'full' | 'extra';

export interface SqliteOptions {
  /** Folder of the region's data; created if missing. */
  dataDir: string;
  region: RegionId;
  synchronous: SyncMode;
  /**
   * Write (commits, snapshots, GC) on a writer thread with its own
   * connection, so the fsync never holds the event loop (default false; the
   * region turns it on). Falls back to writing in place where the compiled
   * thread is not available.
   */
  writerThread?: boolean;
  /** The compiled writer thread script; default the one beside the storage module (tests running sources point at dist/). */
  writerThreadFile?: string;
  /**
   * The writer thread ended on its own (a crash, or out of memory). Every
   * write is refused from then on; what a commit in flight did is unknown
   * until the database is opened again, so the region's process should
   * exit and be started again (the CLI does).
   */
  onWriterLost?: (err: Error) => void;
  /** Bytes of conflict records' lost states kept over all documents (default {@link MAX_CONFLICT_BYTES}; tests lower it). */
  maxConflictBytes?: number;
}
