import type { DocKey, RegionId, VersionVector, WriterId } from '../ids.js';
import type { Json, JsonObject, Op } from '../crdt/types.js';
import type { LogEntry, NewLogEntry } from '../storage/types.js';
import type { DigestParts } from '../crdt/digest.js';
import type { ReplaceResult } from './replace.js';

/** The result of an acknowledged (durably committed) local write. */
export interface WriteAck {
  /**
   * This region's writer id and the log sequence number of the write; 0 for
   * a write that changed nothing (a PUT of the document as it is), which
   * wrote no entry.
   */
  origin: WriterId;
  seq: number;
  /** Everything this region had applied once the write committed, the write included. */
  version: VersionVector;
}

export interface ReadResult {
  /** The document as plain JSON, or null when absent or deleted. */
  value: JsonObject | null;
  /** Everything this region had applied when the read was served. */
  version: VersionVector;
}

/** A document state that lost a content conflict, as the API shows it. */
export interface Conflict {
  id: number;
  /** When the conflict was resolved here (ms epoch). */
  at: number;
  /** The region whose state won (this one or the peer it met). */
  winner: RegionId;
  /** Hex digests of the state kept and of the state that lost. */
  keptDigest: string;
  lostDigest: string;
  /** The losing state as JSON text (`null` when it reads as absent). */
  valueJson: string;
  /** The losing state as a Yjs update. */
  state: Uint8Array;
}

/** A stored log entry and the peer it came from (null when written here). */
export interface CommittedEntry extends LogEntry {
  /** The peer the entry came from; null for this region's own writes. */
  from: RegionId | null;
  /** The local connection that wrote it (`applyYjs`'s `source`), so that it is not sent its own update back. */
  source: object | null;
}

/**
 * A document whose content changed by state (anti-entropy repair, catch-up
 * by state, a conflict replace), not by log entries: such changes never
 * reach {@link Documents.onCommitted}.
 */
export interface StateChange {
  doc: DocKey;
  /**
   * True when a peer's state replaced this region's (a content conflict, see
   * replace.ts): clients holding the old state must start over, since the
   * losing content sits under the same Yjs ids as the winning one.
   */
  replaced: boolean;
  /**
   * What the merges added, as the Yjs updates they made, when the document
   * held nothing pending after them; null otherwise (and when replaced):
   * only the whole state then covers what a reader may lack.
   */
  added: Uint8Array[] | null;
}

/** What applying a batch of entries from a peer did. */
export interface RemoteApplyResult {
  applied: number;
  duplicates: number;
  /** Entries skipped because an earlier seq of the same origin is still missing. */
  gaps: number;
  /**
   * Entries this region could not apply (too large for its limit, invalid,
   * failing to integrate): kept in quarantine, their seqs counted as held,
   * their documents left for repair by state.
   */
  quarantined: number;
}

/**
 * How long a failed commit counts against readiness when none succeeds
 * after it, ms: long enough that clients move to another region, short
 * enough that a region nobody writes to any more is tried again.
 */
export const STORAGE_FAULT_MS = 10_000;

/**
 * A commit that has waited this long for the store (a disk that stopped
 * answering, the database's write lock held elsewhere) makes the region not
 * ready and is logged, ms: writes queue behind it meanwhile.
 */
export const COMMIT_STALL_MS = 2_000;

/**
 * The one write path of a region. Every change, from HTTP or from a peer,
 * enters here, is persisted (group commit), and only then announced through
 * {@link Documents.onCommitted}.
 */
export interface Documents {
  readonly writer: WriterId;
  /**
   * Continues under a new writer id: for a data directory that turned out to
   * be older than what peers hold of its own writes (a restored backup).
   */
  rotateWriter(): WriterId;
  /** False while local writes wait for the region to hear from (or catch up with) a peer. */
  writesOpen(): boolean;
  /**
   * Why the store refused the last commit (disk full, the database locked
   * by another process, I/O errors), while no commit has succeeded since and
   * for at most {@link STORAGE_FAULT_MS} after it; null otherwise.
   */
  storageFault(): string | null;
  /** How long the commit now on its way to the store has waited, ms (0 with none). */
  commitWaitingMs(): number;
  /** Commits the store refused since this process started (their writes were answered 503). */
  refusedCommits(): number;
  /**
   * Documents replaced by their reloaded state, after an update spliced other
   * content under held Yjs ids (crdt/load.ts) or before a content conflict
   * was resolved (replace.ts), since this process started.
   */
  reloadedDocs(): number;
  /** Reload checks of documents peers' entries changed, made and put off (see reload-checks.ts), since this process started. */
  peerReloadChecks(): { made: number; putOff: number; keptUnsettled: number };
  /** Reads rendered off the event loop so far (see readJson). */
  coldRenders(): number;
  /** Content conflicts judged off the event loop so far (see replaceState). */
  conflictsJudgedOffLoop(): number;
  /** Compactions not done since this process started: the document's merged state would load beyond the bound (docs/compactor.ts). */
  withheldSnapshots(): number;

  put(doc: DocKey, value: JsonObject): Promise<WriteAck>;
  patch(doc: DocKey, patch: JsonObject): Promise<WriteAck>;
  ops(doc: DocKey, ops: Op[]): Promise<WriteAck>;
  /** Deletes the document (a replicated tombstone). Resolves null if it did not exist. */
  remove(doc: DocKey): Promise<WriteAck | null>;
  /**
   * Applies a client's binary Yjs update after validating it; `source` is
   * the live connection it came from, if any (it is not sent the update
   * back, and it waits out a hold of writes after start rather than being
   * refused).
   */
  applyYjs(doc: DocKey, update: Uint8Array, source?: object): Promise<WriteAck>;

  /**
   * While a group commit that changed `doc` is being made durable (on the
   * writer thread), a promise that settles once it is; null otherwise. Read
   * the document only after it: its in-memory state is ahead of the disk.
   */
  settled(doc: DocKey): Promise<void> | null;
  /**
   * `read` run once no commit on its way holds `doc`, in the turn of that
   * check: what it reads is durable. A commit that failed is waited for
   * like one that succeeded.
   */
  whenDurable<T>(doc: DocKey, read: () => T): Promise<T>;
  read(doc: DocKey): ReadResult;
  /**
   * The document as JSON bytes (null when it holds nothing) and the version
   * it reflects. A large document not held decoded is built and rendered off
   * the event loop (cold-render.ts); `caller` waits for a few such at most
   * (beyond, `unavailable`).
   */
  readJson(doc: DocKey, caller: string): Promise<{ body: Buffer | null; version: VersionVector }>;
  /**
   * Whether {@link readJson} may render the document off the event loop, as
   * far as known without reading the store: one held decoded with many
   * structs, one held encoded in many bytes, or one not held at all.
   */
  rendersOffLoop(doc: DocKey): boolean;
  /** The document as a Yjs update, or only what `stateVector` lacks; null if unknown. */
  readYjs(doc: DocKey, stateVector?: Uint8Array): Uint8Array | null;
  /** As {@link stateVector}, built off the event loop for a large document not held decoded, as {@link readJson} is. */
  stateVectorRendered(doc: DocKey, caller: string): Promise<Uint8Array | null>;
  /**
   * As {@link readYjs} (with the version it reflects), rendered off the event
   * loop for a large document not held decoded, as {@link readJson} is.
   */
  readYjsRendered(doc: DocKey, stateVector: Uint8Array | undefined, caller: string): Promise<{ update: Uint8Array | null; version: VersionVector }>;
  /**
   * The document's whole state for a peer: from memory if it is loaded, else
   * straight from the store without loading it (a peer rebuilt from this
   * region reads every document once). The same content as readYjs, not
   * always the same bytes; null if unknown.
   */
  stateForPeer(doc: DocKey): Uint8Array | null;
  list(collection: string, after: string | null, limit: number): { ids: string[]; next: string | null };

  /** Applies log entries received from a peer (validated, idempotent, order-independent). */
  applyRemote(entries: NewLogEntry[], from: RegionId): Promise<RemoteApplyResult>;
  /**
   * Merges a peer's full or partial document state (anti-entropy and
   * catch-up by state); `refused`: why it was not, when it would have grown
   * the document past what merges from peers may (`maxMergedDocumentBytes`).
   */
  applyState(doc: DocKey, update: Uint8Array, from: RegionId): Promise<{ refused: string | null }>;
  /**
   * Offers a peer's whole state of a document whose replicas were found to
   * hold the same structure with different content (see replace.ts). The
   * state that loses is kept as a conflict record.
   */
  replaceState(doc: DocKey, state: Uint8Array, from: RegionId): Promise<ReplaceResult>;
  /** The two halves of the document's digest, computed now; null when unknown here. */
  digestParts(doc: DocKey): DigestParts | null;
  /**
   * The conflicts recorded here for a document, after id `afterId`, oldest
   * first: at most `limit`, and none more once their lost states hold
   * `maxStateBytes` (the first always comes); `next` when more follow. A
   * lost state as large as a large document's is rendered off the event
   * loop, as {@link readJson} renders one (`caller` waits for a few such
   * renders at most; beyond, `unavailable`).
   */
  conflicts(doc: DocKey, afterId: number, limit: number, maxStateBytes: number, caller: string): Promise<{ conflicts: Conflict[]; next: number | null }>;
  /** Conflicts recorded in this region. */
  conflictCount(): number;
  /** The document's state vector, or null when this region has never seen it. */
  stateVector(doc: DocKey): Uint8Array | null;
  /**
   * Whether this region has seen the document (deleted or not): what
   * `stateVector(doc) !== null` says, without building a document not held.
   */
  hasState(doc: DocKey): boolean;

  versionVector(): VersionVector;
  /**
   * Records that this region holds the effects of every entry in `vv`
   * (after catch-up by state, whose entries never pass through the log).
   */
  raiseVersion(vv: VersionVector): Promise<void>;
  /** Called after every commit with the entries it stored, in lsn order. */
  onCommitted(listener: (entries: CommittedEntry[]) => void): () => void;
  /**
   * Called after a commit that stored merged or replaced state, once it is
   * durable, with the documents whose content it changed (after the
   * commit's {@link onCommitted} call, if any).
   */
  onStateChanged(listener: (changes: StateChange[]) => void): () => void;
  /** Count of documents holding Yjs updates whose dependencies are missing. */
  pendingDocs(): number;
  /** Up to `limit` of those documents, in turn: each call takes the next ones. */
  pendingKeys(limit: number): DocKey[];
  /**
   * What `doc` holds back for missing dependencies (crdt `pendingMark`);
   * null when nothing, or when not known cheaply: one of
   * {@link pendingDocs} is decoded for it only when held encoded in under
   * 128 KiB (the cost of a cold read's build on the event loop).
   */
  pendingMark(doc: DocKey): string | null;
  /**
   * Lets go of what `doc` holds back for missing dependencies, if that is
   * still `mark`, and stores the document without it; true when it did.
   * For updates that wait for changes no region holds (a faulty peer's):
   * they can never be applied, and would keep the regions from agreeing.
   */
  dropPending(doc: DocKey, mark: string): Promise<boolean>;
  /** Documents held in memory. */
  cachedDocs(): number;
  /** About the heap they take (see `storage.cacheBytes`). */
  cachedBytes(): number;
  /**
   * Documents decoded again from the encoded form the cache held them in,
   * since start: near the write rate, most changes find their document held
   * encoded (each changed less than once in 30 s, or more in use than
   * `decodedDocs`).
   */
  decodedAgain(): number;
  /** The region digest and its anti-entropy buckets. */
  readonly digests: {
    /** Exact: computes every changed document's digest first, at once. */
    regionDigest(): string;
    /** The exact region digest when few documents changed since it was known; null rather than compute many at once. */
    regionDigestIfCheap(): string | null;
    /**
     * As {@link regionDigestIfCheap}, and null also while a document whose
     * digest was slow rests (a large one written often): for heartbeats,
     * which would otherwise walk it at each one.
     */
    heartbeatDigest(): string | null;
    /**
     * For the sync status: the exact region digest when few documents
     * changed since it was known (after {@link settled}); otherwise, while
     * a backlog from peers is applied, and while a document whose digest was
     * slow rests (a large one written often), a partial one, marked so that
     * no other region reports it, rather than compute many at once.
     */
    statusDigest(): { digest: string; exact: boolean };
    /**
     * Resolves once changed documents' digests are computed, in slices
     * between other work; at once while a backlog from peers is applied
     * (its documents change until it ends, and are digested after).
     */
    settled(): Promise<void>;
    /** Per-bucket digests, once every digest they cover is stored too (anti-entropy reads the store's summaries next). */
    bucketDigests(): Promise<Uint8Array[]>;
  };

  /** Finishes queued writes and stops taking new ones. */
  close(): Promise<void>;
}

export type { Json };
