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

/** A log entry from a peer that this region could not apply, kept for an operator. */
export interface QuarantinedEntry extends NewLogEntry {
  /** The peer that sent it. */
  peer: RegionId;
  /** Why it was not applied (too large, invalid, failed to integrate). */
  reason: string;
}

/**
 * Entries from peers kept aside instead of applied (the `quarantine`
 * table), one row per (origin, seq), so each is stored and reported once.
 */
export interface QuarantineStore {
  /** Keeps an entry; false (nothing written) when its (origin, seq) is already kept. */
  add(entry: QuarantinedEntry): boolean;
  /** Entries kept per sending peer, since the data directory was created. */
  counts(): ReadonlyMap<RegionId, number>;
  /** Kept entries after row id `afterId`, oldest first, with their row id and the time they were kept. */
  list(afterId: number, limit: number): (QuarantinedEntry & { id: number; at: number })[];
}

/** The newest entry of one document from one origin that the log holds. */
export interface DocHead {
  origin: WriterId;
  seq: number;
  /** Origin wall-clock ms of that entry. */
  ts: number;
  /** Entries of this document from this origin in the log. */
  entries: number;
}

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

/** A document a commit changed; without a digest, its stored digest is marked stale. */
export interface DocChange {
  doc: DocKey;
  deleted: boolean;
  digest?: Uint8Array;
}

/** A document's digest, computed after the commit that changed it. */
export interface DocDigest {
  doc: DocKey;
  digest: Uint8Array;
}

/** Everything a group commit writes, in one SQLite transaction. */
export interface CommitBatch {
  entries: NewLogEntry[];
  docs: DocChange[];
  /** Digests computed since earlier commits; stored before `docs`, which may mark them stale again. */
  digests?: DocDigest[];
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
  /** Entries from peers that this region could not apply. */
  readonly quarantine: QuarantineStore;
  /** States that lost a content conflict, kept. */
  readonly conflicts: ConflictStore;

  /**
   * Appends entries and updates document summaries in one transaction;
   * returns the lsns once the transaction is durable. An engine that commits
   * on another thread returns a promise; one that commits in place returns
   * the lsns at once (no promise on the hot path when none is needed).
   */
  commit(batch: CommitBatch): number[] | Promise<number[]>;
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
  /**
   * Per origin (in origin order), the newest entry of `doc` still in the log;
   * empty when the log holds none (never written here, or all compacted and
   * collected). An index read of that document's entries.
   */
  docHeads(doc: DocKey): DocHead[];
  /** How many entries of `doc` from `origin` with seq > `afterSeq` the log holds, and the oldest one's origin ts. */
  docEntriesBeyond(doc: DocKey, origin: WriterId, afterSeq: number): { count: number; ts: number } | null;
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
  /** Stores digests computed after their documents' commits (clears their stale mark). */
  setDigests(digests: DocDigest[]): void;
  /** Summaries of documents whose stored digest is stale, in doc key order, paged. */
  staleSummaries(afterDoc: DocKey | null, limit: number): DocSummary[];
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
  /** Finishes posted commits and closes; a promise when there were commits on another thread to finish. */
  close(): void | Promise<void>;
}

/** A document state that lost a conflict (see storage/conflicts.ts). */
export interface NewConflict {
  doc: DocKey;
  /** When the conflict was resolved here (ms epoch). */
  at: number;
  /** The region whose state won (this one or the peer it met). */
  winner: RegionId;
  /** Digest of the state kept. */
  keptDigest: Uint8Array;
  /** Digest of the state that lost. */
  lostDigest: Uint8Array;
  /** The losing state, whole, as a Yjs update. */
  lostState: Uint8Array;
}

export interface ConflictRecord extends NewConflict {
  id: number;
}

export interface ConflictStore {
  add(conflict: NewConflict): void;
  /** A document's conflicts with id > `afterId`, oldest first. */
  list(doc: DocKey, afterId: number, limit: number): ConflictRecord[];
  /** Conflicts recorded in this data directory. */
  count(): number;
}

export type SyncMode = 'off' | 'normal' | 'full' | 'extra';

export interface StoreOptions {
  /** Folder of the region's data; created if missing. */
  dataDir: string;
  region: RegionId;
  synchronous: SyncMode;
  /**
   * Commit on a writer thread with its own connection, so the fsync never
   * holds the event loop (default false; the region turns it on). Falls
   * back to committing in place where the compiled thread is not available.
   */
  writerThread?: boolean;
  /** The compiled writer thread script; default the one beside the storage module (tests running sources point at dist/). */
  writerThreadFile?: string;
}
