import type { DocKey, RegionId, VersionVector, WriterId } from '../ids.js';

/** One change to one document, as it is kept in the append-only log. */
export interface LogEntry {
  /** Local log sequence number: the order in which this region stored entries. */
  lsn: number;
  /** The writer (region incarnation) that made the change. */
  origin: WriterId;
  /** Per-origin sequence number, 1, 2, 3, ... without gaps at the origin. */
  seq: number;
  doc: DocKey;
  /** Wall-clock milliseconds at the origin when the change was made. */
  ts: number;
  /** A Yjs update (v1 encoding). */
  update: Uint8Array;
}

export type NewLogEntry = Omit<LogEntry, 'lsn'>;

/** What a document needs to be rebuilt in memory. */
export interface StoredDoc {
  /** Compacted state (a Yjs update) or null if never compacted. */
  snapshot: Uint8Array | null;
  /** Yjs updates that were held back as pending (missing dependencies) at snapshot time. */
  pending: Uint8Array | null;
  /** Highest lsn merged into the snapshot (0 when none). */
  snapshotLsn: number;
  /** Log entries for this document stored after the snapshot, in lsn order. */
  entries: LogEntry[];
  /** Entries or snapshot whose checksum did not match: skipped, never applied. */
  corrupt: number;
}

/** Per-document summary row, maintained on every write. */
export interface DocSummary {
  doc: DocKey;
  /** 32-byte digest of the document's replicated state (see crdt/digest). */
  digest: Uint8Array;
  /** True when the document currently reads as deleted/absent. */
  deleted: boolean;
}

/** Everything a group commit writes, in one SQLite transaction. */
export interface CommitBatch {
  entries: NewLogEntry[];
  docs: DocSummary[];
}

/** A snapshot replacing all log entries of one document up to `uptoLsn`. */
export interface Snapshot {
  doc: DocKey;
  state: Uint8Array;
  pending: Uint8Array | null;
  uptoLsn: number;
}

export interface StorageStats {
  documents: number;
  logEntries: number;
  logBytes: number;
  dbBytes: number;
  corruptEntries: number;
}

/**
 * The durable store of one region. Synchronous (better-sqlite3); every method
 * either completes its transaction or throws with nothing written.
 */
export interface Store {
  /** This data directory's writer id; created on first open of an empty directory. */
  readonly writer: WriterId;
  /**
   * Replaces the writer id, for a data directory found to be older than what
   * peers hold of its own writes (restored from a backup): continuing under
   * the old id would reuse sequence numbers and Yjs clocks peers have seen.
   */
  rotateWriter(): WriterId;
  readonly path: string;

  /** Appends entries and updates document summaries in one transaction; returns the lsns. */
  commit(batch: CommitBatch): number[];
  /** Snapshot plus later log entries of a document; null when the store has never seen it. */
  loadDoc(doc: DocKey): StoredDoc | null;
  /** Stores a compacted snapshot; log entries up to uptoLsn are no longer needed to load the doc. */
  saveSnapshot(snapshot: Snapshot): void;
  /** Stores several snapshots in one transaction (one fsync). */
  saveSnapshots(snapshots: Snapshot[]): void;
  /** Documents with at least `minEntries` log entries newer than their snapshot, most entries first. */
  docsNeedingCompaction(minEntries: number, limit: number): DocKey[];

  /** Entries with lsn > afterLsn in lsn order. */
  readLog(afterLsn: number, limit: number): LogEntry[];
  /** Lowest seq still held in the log for each origin (entries below were garbage-collected). */
  logFloor(): Map<WriterId, number>;
  /** The highest-seq entry of `origin` for `doc` still in the log, if any. */
  latestEntry(doc: DocKey, origin: WriterId): { origin: WriterId; seq: number } | null;
  /** Has the store an entry (origin, seq)? */
  hasEntry(origin: WriterId, seq: number): boolean;
  /** Wall-clock time (origin ts) of the oldest entry beyond `vv`, or null if none. */
  oldestBeyond(vv: VersionVector): { ts: number; count: number; bytes: number } | null;

  /** Highest contiguous applied seq per origin. */
  versionVector(): VersionVector;
  /** Raises the applied seq of origins (never lowers). */
  raiseVersionVector(vv: VersionVector): void;

  /** What a peer region has acknowledged storing. */
  peerAcks(peer: RegionId): VersionVector;
  setPeerAcks(peer: RegionId, vv: VersionVector): void;
  /** Drops entries acknowledged by all `peers` (and compacted), or older than `olderThanTs` (and compacted). */
  collectGarbage(peers: RegionId[], olderThanTs: number): number;

  /** Document ids of a collection after `after`, ascending. */
  listDocs(collection: string, after: string | null, limit: number): string[];
  /** All document summaries, in doc key order, paged. */
  docSummaries(afterDoc: DocKey | null, limit: number): DocSummary[];
  summary(doc: DocKey): DocSummary | null;
  /** Marks a document whose stored data failed its checksum, so that anti-entropy repairs it. */
  markCorrupt(doc: DocKey): void;
  /**
   * Called whenever a document is marked corrupt (by any read that finds a
   * bad checksum), with the digest it had: the digest index must follow.
   */
  onCorrupt(listener: (doc: DocKey, before: Uint8Array) => void): () => void;

  stats(): StorageStats;
  /** `PRAGMA quick_check`; returns the problems found (empty when healthy). */
  quickCheck(): string[];
  close(): void;
}

export type SyncMode = 'off' | 'normal' | 'full' | 'extra';

export interface StoreOptions {
  /** Folder of the region's data; created if missing. */
  dataDir: string;
  region: RegionId;
  synchronous: SyncMode;
}
