import type { DocKey, RegionId, VersionVector, WriterId } from '../ids.js';
import type { PendingEntries } from './pending.js';

export type { PendingEntries };

/** One change to one document, as it is kept in the append-only log. */
/** Where a log entry is, and what it changed, without its update. */
export type LogPosition = Omit<LogEntry, 'update' | 'ts'>;

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
  /** Why it was not applied (too large, invalid, failed to integrate); kept up to {@link MAX_QUARANTINE_REASON} characters. */
  reason: string;
}

/** Longest quarantine reason kept: error messages from untrusted input can be long. */
export const MAX_QUARANTINE_REASON = 500;

/**
 * Quarantined entries kept per peer, the newest: each holds a whole entry
 * (up to a frame), and only a peer adds them, so a faulty or hostile one
 * would otherwise fill the disk. The count of all ever kept stays.
 */
export const MAX_QUARANTINED_PER_PEER = 64;

/**
 * Entries from peers kept aside instead of applied (the `quarantine`
 * table), one row per (origin, seq), so each is stored and reported once.
 */
export interface QuarantineStore {
  /** Entries kept per sending peer, since the data directory was created. */
  counts(): ReadonlyMap<RegionId, number>;
  /** Kept entries after row id `afterId`, oldest first, with their row id and the time they were kept (the newest {@link MAX_QUARANTINED_PER_PEER} of each peer). */
  list(afterId: number, limit: number): (QuarantinedEntry & { id: number; at: number })[];
}

/** The newest entry of one document from one origin that the log holds. */
export interface DocHead {
  origin: WriterId;
  seq: number;
  /** Origin wall-clock ms of that entry. */
  ts: number;
}

/** What a document needs to be rebuilt in memory. */
export interface StoredDoc {
  /** Compacted state (a Yjs update) or null if never compacted. */
  snapshot: Uint8Array | null;
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
  /**
   * Whether it holds no content now; absent when not known without building
   * the document (entries held beside its encoded state): the stored flag is
   * kept, and the digest computed later brings the new one.
   */
  deleted?: boolean;
  digest?: Uint8Array;
}

/** A document's digest, computed after the commit that changed it. */
export interface DocDigest {
  doc: DocKey;
  digest: Uint8Array;
  /** Whether it holds no content, found with the digest (absent: the stored flag is kept). */
  deleted?: boolean;
}

/** Everything a group commit writes, in one transaction. */
export interface CommitBatch {
  entries: NewLogEntry[];
  docs: DocChange[];
  /** Digests computed since earlier commits; stored before `docs`, which may mark them stale again. */
  digests?: DocDigest[];
  /** Snapshots stored last, after the entries and summaries they may cover (documents merged by state, compaction). */
  snapshots?: Snapshot[];
  /**
   * Applied seqs raised beyond the entries (never lowered): floors, and the
   * seqs of quarantined entries. In the same transaction as what they cover,
   * so no crash can count a seq as held without it.
   */
  raise?: VersionVector;
  /**
   * Entries from peers this region could not apply, kept one per (origin, seq)
   * (a repeat is ignored). The commit marks each one's document for repair
   * (as {@link Maintenance.markCorrupt} does) in the same transaction, and
   * tells the `onCorrupt` listeners with `byCommit` once it is durable.
   */
  quarantined?: QuarantinedEntry[];
  /** States that lost a content conflict, kept whole (the newest {@link MAX_CONFLICTS_PER_DOC} of a document). */
  conflicts?: NewConflict[];
  /**
   * The writer id entries are written under from now on (see
   * {@link Store.rotateWriter}), stored in this commit's transaction. Set
   * by the engine, not by the write path.
   */
  writer?: WriterId;
  /**
   * Set by a write path that stages its next commit while the one before is
   * still on its way to the disk (see {@link CommitChain}).
   */
  chain?: CommitChain;
}

/**
 * A commit's place in a write path's sequence of commits. A commit staged
 * while `follows` was still being written may lean on it (the sequence
 * numbers of its origins go on from there): an engine that commits in turn
 * on another thread refuses it, writing nothing, when `follows` failed, and
 * counts it as failed for the commit that follows it in turn. An engine that
 * commits in place is never given a `follows`: nothing of it is in flight.
 */
export interface CommitChain {
  id: number;
  follows: number | null;
}

/** A snapshot replacing all log entries of one document up to `uptoLsn`. */
export interface Snapshot {
  doc: DocKey;
  /** The document's whole state, what waits for missing dependencies included (`Y.encodeStateAsUpdate` appends it). */
  state: Uint8Array;
  uptoLsn: number;
}

export interface StorageStats {
  documents: number;
  logEntries: number;
  logBytes: number;
  dbBytes: number;
  corruptEntries: number;
}

// ---- the storage contract ---------------------------------------------------
//
// One role per concern, so that each part depends only on what it uses:
// the write path on document states, the log append and progress; a peer
// session on the log; anti-entropy on summaries; maintenance on compaction,
// GC and the integrity watch. `Store` is their intersection, built by the
// composition root. Engine settings (file paths, `synchronous`, SQLite's
// `quick_check`) belong to the engine (./sqlite.ts), not to the contract.
//
// Every method either completes or throws with nothing written. Methods that
// write to disk on the hot or periodic paths (commit, snapshots, digests, GC,
// peer acknowledgements) may answer with a promise: an engine
// that writes on another thread does, one that writes in place answers at
// once, so the hot path takes no promise it does not need. Reads are
// synchronous: the write path stages a batch in one event-loop turn and must
// see a document's stored state within it (a cold load that waited would
// let another batch in between); SQLite serves them from the main connection
// in WAL mode without waiting for a writer, and an engine whose reads are
// remote would keep a cache in front (see README, "Storage and durability").

/** Which writer (region incarnation) this data directory writes as. */
export interface WriterIdentity {
  /** This data directory's writer id; created on first open of an empty directory. */
  readonly writer: WriterId;
  /**
   * Replaces the writer id, for a data directory found to be older than what
   * peers hold of its own writes (restored from a backup): continuing under
   * the old id would reuse sequence numbers and Yjs clocks peers have seen.
   * Waits for nothing: an engine that writes on another thread stores the
   * new id there, in a commit of its own posted at once, and with every
   * commit until one stored it, so no entry is stored under an id the store
   * does not name; `close` stores it too.
   */
  rotateWriter(): WriterId;
}

/** Stored document states: loading, listing and per-document summaries. */
export interface DocumentStates {
  /** Snapshot plus later log entries of a document; null when the store has never seen it. */
  loadDoc(doc: DocKey): StoredDoc | null;
  /**
   * Runs `read`, whose reads see one state of the store: an engine with
   * read transactions makes them in one (so a staging turn that loads
   * hundreds of documents pays for one instead of one each). `read` must
   * not wait for anything, and must not write.
   */
  readTogether<T>(read: () => T): T;
  /** Document ids of a collection after `after`, ascending; deleted documents are left out. */
  listDocs(collection: string, after: string | null, limit: number): string[];
  /** All document summaries, in doc key order, paged. */
  docSummaries(afterDoc: DocKey | null, limit: number): DocSummary[];
  /** The summaries of the documents in one anti-entropy bucket (`bucketOf`), in doc key order. */
  bucketSummaries(bucket: number): DocSummary[];
  summary(doc: DocKey): DocSummary | null;
  /** Summaries of documents whose stored digest is stale, in doc key order, paged. */
  staleSummaries(afterDoc: DocKey | null, limit: number): DocSummary[];
  /**
   * Stores digests computed after their documents' commits (clears their
   * stale mark); a promise when the engine writes elsewhere.
   */
  setDigests(digests: DocDigest[]): void | Promise<void>;
}

/** The append-only replication log. */
export interface ReplicationLog {
  /**
   * Appends entries, updates document summaries and stores snapshots in one
   * transaction; returns one lsn per entry (-1 for a duplicate (origin, seq),
   * which is dropped) once the transaction is durable. A promise when the
   * engine commits elsewhere; the lsns at once when it commits in place.
   */
  commit(batch: CommitBatch): number[] | Promise<number[]>;
  /**
   * Entries with lsn > afterLsn in lsn order; fewer than `limit` means the
   * end of the log, unless `maxBytes` (of updates) ended it first: then at
   * least one entry, and no more once they hold that many bytes (entries
   * may be a MiB each: a page of them is read in one synchronous call).
   */
  readLog(afterLsn: number, limit: number, maxBytes?: number): LogEntry[];
  /** As {@link readLog}, without the updates: where entries are and what they changed. */
  readLogPositions(afterLsn: number, limit: number): LogPosition[];
  /** Lowest seq still held in the log for each origin (entries below were garbage-collected). */
  logFloor(): Map<WriterId, number>;
  /** The highest-seq entry of `origin` for `doc` still in the log, if any. */
  latestEntry(doc: DocKey, origin: WriterId): { origin: WriterId; seq: number } | null;
  /**
   * Per origin (in origin order), the newest entry of `doc` still in the log;
   * empty when the log holds none (never written here, or all compacted and
   * collected).
   */
  docHeads(doc: DocKey): DocHead[];
  /**
   * How many entries of `doc` from `origin` with seq > `afterSeq` the log
   * holds, counted up to `limit` (a count of `limit` means at least that
   * many), and the origin ts of the first of them; null when none. Its cost
   * follows `limit`, not the document's entries in the log.
   */
  docEntriesBeyond(doc: DocKey, origin: WriterId, afterSeq: number, limit: number): { count: number; ts: number } | null;
  /** Has the store an entry (origin, seq)? */
  hasEntry(origin: WriterId, seq: number): boolean;
  /**
   * The highest lsn up to which `vv` covers every log entry (each has seq
   * <= vv's seq of its origin): where reading the log for a peer that holds
   * `vv` may start. 0 when the first entry is not covered; the last lsn when all are.
   */
  heldThrough(vv: VersionVector): number;
  /**
   * Wall-clock time (origin ts) of the oldest entry beyond `vv`, with how many
   * and their update bytes; null if none. Reads at most PENDING_READ_LIMIT
   * entries per origin (see pending.ts): its cost does not grow with the lag.
   */
  oldestBeyond(vv: VersionVector): PendingEntries | null;
}

/** How far this region has applied each origin, and what peers acknowledged. */
export interface PeerProgress {
  /** Highest contiguous applied seq per origin. */
  versionVector(): VersionVector;
  /** What a peer region has acknowledged storing. */
  peerAcks(peer: RegionId): VersionVector;
  /**
   * Replaces everything recorded for `peer` (a rebuilt peer may acknowledge
   * less than before); a promise when the engine writes elsewhere.
   */
  setPeerAcks(peer: RegionId, vv: VersionVector): void | Promise<void>;
}

/** Background upkeep: compaction, log GC and the integrity watch. */
export interface Maintenance {
  /**
   * Documents with at least `minEntries` log entries newer than their
   * snapshot, most entries first, ties by doc key. With `bytesPerEntry`,
   * only those whose entries also number one per `bytesPerEntry` bytes of
   * the snapshot, or hold a quarter of its bytes (so that large entries
   * never pile up in the log).
   */
  docsNeedingCompaction(minEntries: number, limit: number, bytesPerEntry?: number): DocKey[];
  /**
   * Stores snapshots in one transaction; log entries up to each `uptoLsn`
   * are no longer needed to load the document. A snapshot older than the
   * stored one is ignored; one of a document never stored fails the call.
   */
  saveSnapshots(snapshots: Snapshot[]): void | Promise<void>;
  /**
   * One bounded step of log GC: drops entries covered by their document's
   * snapshot that every peer in `peers` acknowledged (with no peers, none
   * is waited for) or whose origin ts is below `olderThanTs`; returns how many.
   */
  collectGarbage(peers: RegionId[], olderThanTs: number): number | Promise<number>;
  /** Marks a document whose stored data failed its checksum: its digest turns to zeros, so anti-entropy repairs it. */
  markCorrupt(doc: DocKey): void;
  /**
   * Called whenever a document is marked corrupt (by any read that finds a
   * bad checksum, or by a commit that quarantined an entry of it), with the
   * digest it had: the digest index must follow. `byCommit`: told as the
   * commit's result arrives, before its caller has seen it.
   */
  onCorrupt(listener: (doc: DocKey, before: Uint8Array, byCommit: boolean) => void): () => void;
  stats(): StorageStats;
}

/**
 * What the store keeps for an operator: quarantined entries and lost
 * conflict states. Read here; kept through a commit (`CommitBatch`), so that
 * they are as durable as the batch that met them.
 */
export interface Incidents {
  /** Entries from peers that this region could not apply. */
  readonly quarantine: QuarantineStore;
  /** States that lost a content conflict, kept. */
  readonly conflicts: ConflictStore;
}

/** The durable store of one region: every role, as the composition root builds it. */
export interface Store extends WriterIdentity, DocumentStates, ReplicationLog, PeerProgress, Maintenance, Incidents {
  /** Finishes posted writes and closes; a promise when there were writes on another thread to finish. */
  close(): void | Promise<void>;
}

/**
 * Conflict records kept per document; a commit that adds more drops the
 * oldest. Each holds a whole document state, so without a bound clients
 * racing under one Yjs client id could fill the disk.
 */
export const MAX_CONFLICTS_PER_DOC = 16;

/**
 * Bytes of lost states kept over all documents: a commit that adds more
 * drops the oldest records, whichever their document (never the newest).
 * Without it clients racing under one Yjs client id on many documents
 * could still fill the disk, 16 whole states at a time.
 */
export const MAX_CONFLICT_BYTES = 1024 * 1024 * 1024;

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
  /**
   * A page of a document's conflicts with id > `afterId`, oldest first: at
   * most `limit`, and no more lost-state bytes than `maxStateBytes` (but at
   * least one record). Only the page's states are read (each may be as large
   * as a document). `more`: records beyond the page exist.
   */
  list(doc: DocKey, afterId: number, limit: number, maxStateBytes: number): { records: ConflictRecord[]; more: boolean };
  /** Conflicts recorded in this data directory since it was created, dropped ones included (it never falls). */
  count(): number;
}

/** How many of records with lost states of `sizes` (in order) form a page of {@link ConflictStore.list}. */
export function conflictPageLength(sizes: readonly number[], limit: number, maxStateBytes: number): number {
  let bytes = 0;
  let n = 0;
  for (const size of sizes) {
    if (n === limit || (n > 0 && bytes + size > maxStateBytes)) break;
    bytes += size;
    n += 1;
  }
  return n;
}
