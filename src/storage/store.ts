/**
 * The {@link Store} over one open SQLite connection. Opening, configuring and
 * checking the database happen in ./sqlite.ts; this class only runs the
 * prepared statements, each public method in at most one transaction.
 * Reads run on this connection; writes that wait for the disk (commits,
 * snapshot batches, GC) go to the writer thread when there is one.
 */
import { newWriterId } from './writer-id.js';
import { regionOfWriter } from '../ids.js';
import { statSync } from 'node:fs';
import type Database from 'better-sqlite3';
import type { Logger } from 'pino';
import type { DocKey, RegionId, VersionVector, WriterId } from '../ids.js';
import { entryChecksum, snapshotChecksum } from './checksum.js';
import { writeBatch, writeDigests, writePeerAcks, type CommitResult } from './batch.js';
import type { CommitWriter } from './writer.js';
import { GC_CALL_BUDGET, GC_WINDOW, GarbageCollector, type GcResult } from './gc.js';
import { runQuickCheck } from './integrity.js';
import { SqliteQuarantine } from './quarantine.js';
import { SqliteConflicts } from './conflicts.js';
import { entriesBeyond, readLogFloor, readVersionVector } from './progress.js';
import { prepareStatements, toEntry, toSummary, type LogRow, type SnapshotRow, type Statements } from './statements.js';
import type { PendingEntries } from './pending.js';
import { MAX_CONFLICTS_PER_DOC, MAX_CONFLICT_BYTES, type CommitBatch, type DocDigest, type DocHead, type DocSummary, type LogEntry, type LogPosition, type Snapshot, type StorageStats, type Store, type StoredDoc } from './types.js';

/** What {@link SqliteStore.loadDoc} reads of a document in one transaction. */
interface DocRows {
  snap: SnapshotRow | undefined;
  snapshotHolds: boolean;
  entries: LogRow[];
}

/** The SQLite implementation of {@link Store}; construct it through `openStore`. */
export class SqliteStore implements Store {
  private readonly s: Statements;
  private readonly gc: GarbageCollector;
  readonly quarantine: SqliteQuarantine;
  readonly conflicts: SqliteConflicts;
  /** Corrupt entries and snapshots seen since open, so each is counted and logged once. */
  private readonly corruptSeen = new Set<string>();
  private readonly corruptListeners = new Set<(doc: DocKey, before: Uint8Array, byCommit: boolean) => void>();
  private logEntries: number;
  /** The collection stepping through the log on the writer thread, if one is under way. */
  private collecting: Promise<number> | null = null;
  private logBytes: number;
  private readonly commitTx: Database.Transaction<(batch: CommitBatch) => CommitResult>;
  private readonly peerAcksTx: Database.Transaction<(peer: RegionId, vv: VersionVector) => void>;
  private readonly digestTx: Database.Transaction<(digests: DocDigest[]) => void>;
  /** `BEGIN` and `COMMIT` of read transactions (see {@link inReadTransaction}). */
  private readonly beginRead: Database.Statement;
  private readonly endRead: Database.Statement;
  private readonly abortRead: Database.Statement;
  /**
   * Documents found corrupt inside {@link readTogether}: their listeners
   * hear at once, the store's mark is written once it ends (a write, which a
   * read transaction of a WAL database cannot take once the writer thread
   * committed after it began).
   */
  private corruptLater: Set<DocKey> | null = null;
  /**
   * A writer id {@link rotateWriter} took that no commit has stored yet: a
   * commit of its own is posted at once, and every commit until one stored
   * it carries it, in its transaction. Written on this thread instead, it
   * waited for the writer thread's transaction (or another process's lock,
   * up to the busy timeout) and for an fsync, on the event loop.
   */
  private unstoredWriter: WriterId | null = null;

  constructor(
    private readonly db: Database.Database,
    readonly path: string,
    private currentWriter: WriterId,
    private readonly logger: Logger,
    /** Commits on the writer thread when set; in place otherwise. */
    private readonly committer: CommitWriter | null = null,
    private readonly maxConflictBytes = MAX_CONFLICT_BYTES,
  ) {
    this.s = prepareStatements(db);
    this.gc = new GarbageCollector(db, this.s);
    this.quarantine = new SqliteQuarantine(db);
    this.conflicts = new SqliteConflicts(db);
    const totals = this.s.logTotals.get();
    this.logEntries = totals?.n ?? 0;
    this.logBytes = totals?.bytes ?? 0;
    this.commitTx = db.transaction((batch: CommitBatch) => writeBatch(this.s, batch, this.maxConflictBytes));
    this.digestTx = db.transaction((digests: DocDigest[]) => writeDigests(this.s, digests));
    this.peerAcksTx = db.transaction((peer: RegionId, vv: VersionVector) => writePeerAcks(this.s, peer, vv));
    this.beginRead = db.prepare('BEGIN');
    this.endRead = db.prepare('COMMIT');
    this.abortRead = db.prepare('ROLLBACK');
  }

  get writer(): WriterId {
    return this.currentWriter;
  }

  rotateWriter(): WriterId {
    const next = newWriterId(regionOfWriter(this.currentWriter));
    this.logger.warn({ previous: this.currentWriter, writer: next }, 'writer id replaced');
    this.currentWriter = next;
    this.unstoredWriter = next;
    // Stored at once, not only by the next write: a restart that comes back
    // under the old id while the peer that showed it older is unreachable
    // would reuse sequence numbers and Yjs clocks that peer holds.
    void this.storeWriter();
    return next;
  }

  /** Commits nothing but the writer id {@link rotateWriter} took; a failure leaves it to the next commit. */
  private storeWriter(): Promise<void> | void {
    const failed = (err: unknown): void => this.logger.error({ err }, 'could not store the new writer id; the next commit stores it');
    try {
      const stored = this.commit({ entries: [], docs: [] });
      if (stored instanceof Promise) return stored.then(() => undefined, failed);
    } catch (err) {
      failed(err);
    }
  }

  /**
   * Returns one lsn per entry, in batch order: the lsn it was stored under,
   * or -1 when an entry with the same (origin, seq) was already stored (the
   * duplicate is dropped; its document summary is still applied). Entries of
   * a document with no summary row yet get one with an all-zero digest.
   * On the writer thread when there is one, in place otherwise.
   */
  commit(batch: CommitBatch): number[] | Promise<number[]> {
    const writer = this.unstoredWriter;
    const carried = writer === null ? batch : { ...batch, writer };
    if (this.committer) return this.committer.commit(carried).then((result) => this.counted(result, writer));
    return this.counted(this.commitTx.immediate(carried), writer);
  }

  /** `writer`: the unstored writer id the commit carried, now stored. */
  private counted(result: CommitResult, writer: WriterId | null): number[] {
    if (writer !== null && this.unstoredWriter === writer) this.unstoredWriter = null;
    this.logEntries += result.added;
    this.logBytes += result.bytes;
    for (const peer of result.quarantinedFrom) this.quarantine.kept(peer);
    this.conflicts.kept(result.conflicts);
    for (const [doc, dropped] of result.conflictsDropped) {
      this.logger.warn({ doc, dropped, kept: MAX_CONFLICTS_PER_DOC }, 'oldest conflict records of the document dropped: it keeps only the newest');
    }
    if (result.conflictsDroppedForBytes > 0) {
      this.logger.warn({ dropped: result.conflictsDroppedForBytes, keptBytes: this.maxConflictBytes }, 'oldest conflict records dropped: the region keeps at most this many bytes of lost states');
    }
    for (const doc of result.olderSnapshots) this.logger.warn({ doc }, 'older snapshot ignored');
    for (const [doc, before] of result.marked) this.tellCorrupt(doc, before, true);
    return result.lsns;
  }

  /** Tells the listeners that `doc`'s stored digest turned to zeros from `before` (not when it was zeros already). */
  private tellCorrupt(doc: DocKey, before: Uint8Array | undefined, byCommit: boolean): void {
    if (!before || before.every((b) => b === 0)) return;
    for (const listener of this.corruptListeners) listener(doc, before, byCommit);
  }

  /**
   * The snapshot (when its checksum holds) and the entries after it. Entries
   * and snapshots that fail their checksum are left out, counted in
   * `corrupt`, logged, and the document is marked for repair. A damaged
   * snapshot falls back to every entry still in the log for the document.
   */
  loadDoc(doc: DocKey): StoredDoc | null {
    // The snapshot and the entries after it come from one state of the
    // database: a compaction committed between two reads could otherwise
    // have collected entries the snapshot read first does not cover.
    const rows = this.inReadTransaction(() => this.docRows(doc));
    if (rows === null) return null;
    const stored: StoredDoc = { snapshot: null, snapshotLsn: 0, entries: [], corrupt: 0 };
    const { snap, snapshotHolds, entries } = rows;
    if (snap !== undefined) {
      if (snapshotHolds) {
        stored.snapshot = snap.state;
        stored.snapshotLsn = snap.upto_lsn;
      } else {
        stored.corrupt += 1;
        this.noteCorrupt(`snapshot:${doc}:${snap.upto_lsn}`, doc, { uptoLsn: snap.upto_lsn }, 'snapshot');
      }
    }
    for (const row of entries) {
      const entry = this.verified(row);
      if (entry === null) stored.corrupt += 1;
      else stored.entries.push(entry);
    }
    return stored;
  }

  readTogether<T>(read: () => T): T {
    if (this.db.inTransaction) return read();
    const later = (this.corruptLater = new Set());
    try {
      return this.inReadTransaction(read);
    } finally {
      this.corruptLater = null;
      for (const doc of later) {
        try {
          this.s.markCorrupt.run(doc);
        } catch (err) {
          // Another process holds the write lock past the busy timeout: the
          // listeners already heard, and the next load finds it again.
          this.logger.error({ err, doc }, 'could not store the mark of a corrupt document; it is marked again when next loaded');
        }
      }
    }
  }

  /**
   * Runs `read` in one read transaction (within the one open, if any). Each
   * statement outside a transaction is a transaction of its own, which costs
   * SQLite a lock and a check of the WAL: some 6 µs here, more than a small
   * read itself. Not `Database#transaction`: that is for writes.
   */
  private inReadTransaction<T>(read: () => T): T {
    if (this.db.inTransaction) return read();
    this.beginRead.run();
    let result: T;
    try {
      result = read();
    } catch (err) {
      if (this.db.inTransaction) this.abortRead.run();
      throw err;
    }
    this.endRead.run();
    return result;
  }

  private docRows(doc: DocKey): DocRows | null {
    if (this.s.getDoc.get(doc) === undefined) return null;
    const snap = this.s.getSnapshot.get(doc);
    // A damaged snapshot falls back to every entry still in the log.
    const snapshotHolds = snap !== undefined
      && snapshotChecksum({ doc, state: snap.state, uptoLsn: snap.upto_lsn }, snap.pending) === snap.checksum;
    return { snap, snapshotHolds, entries: this.s.docEntries.all(doc, snapshotHolds ? snap.upto_lsn : 0) };
  }

  private verified(row: LogRow): LogEntry | null {
    const entry = toEntry(row);
    if (entryChecksum(entry) === row.checksum) return entry;
    const details = { origin: row.origin, seq: row.seq, lsn: row.lsn };
    this.noteCorrupt(`lsn:${row.lsn}`, row.doc, details, 'log entry');
    return null;
  }

  private noteCorrupt(key: string, doc: string, details: Record<string, unknown>, what: string): void {
    if (!this.corruptSeen.has(key)) {
      this.corruptSeen.add(key);
      this.logger.error({ doc, ...details }, `${what} failed its checksum; skipped, document marked for repair`);
    }
    this.markCorrupt(doc as DocKey);
  }

  /**
   * A batch of snapshots alone, written where commits are (on the writer
   * thread when there is one): compaction never waits for the disk on the
   * event loop, and takes its turn among the commits.
   */
  saveSnapshots(snapshots: Snapshot[]): void | Promise<void> {
    if (snapshots.length === 0) return;
    const written = this.commit({ entries: [], docs: [], snapshots });
    if (!Array.isArray(written)) return written.then(() => undefined);
  }

  /** Ties are broken by doc key, so the order is stable. */
  docsNeedingCompaction(minEntries: number, limit: number, bytesPerEntry = Number.MAX_SAFE_INTEGER): DocKey[] {
    return this.s.toCompact.all(minEntries, bytesPerEntry, limit).map((r) => r.doc as DocKey);
  }

  /**
   * Entries after `afterLsn`, in lsn order, up to `limit`. Entries that fail
   * their checksum are skipped (and handled as in {@link loadDoc}); fewer
   * than `limit` entries means the end of the log was reached.
   */
  readLog(afterLsn: number, limit: number, maxBytes = Number.POSITIVE_INFINITY): LogEntry[] {
    const out: LogEntry[] = [];
    let cursor = afterLsn;
    if (Number.isFinite(maxBytes)) limit = Math.min(limit, entriesWithin(this.s.logPositions.all(afterLsn, limit), maxBytes));
    while (out.length < limit) {
      const wanted = limit - out.length;
      const rows = this.s.readLog.all(cursor, wanted);
      for (const row of rows) {
        const entry = this.verified(row);
        if (entry !== null) out.push(entry);
      }
      const last = rows[rows.length - 1];
      if (last === undefined || rows.length < wanted) break;
      cursor = last.lsn;
    }
    return out;
  }

  readLogPositions(afterLsn: number, limit: number): LogPosition[] {
    return this.s.logPositions.all(afterLsn, limit).map((r) => ({ lsn: r.lsn, origin: r.origin as WriterId, seq: r.seq, doc: r.doc as DocKey }));
  }

  /** See {@link readLogFloor}: from this seq on, the log holds every applied entry of the origin. */
  logFloor(): Map<WriterId, number> {
    return readLogFloor(this.s);
  }

  /** One seek of the (doc, origin, seq) index. */
  latestEntry(doc: DocKey, origin: WriterId): { origin: WriterId; seq: number } | null {
    const head = this.s.docHead.get(doc, origin);
    return head === undefined ? null : { origin, seq: head.seq };
  }

  /** Two seeks per origin of the document, however many entries it has. */
  docHeads(doc: DocKey): DocHead[] {
    return this.s.docOrigins.all(doc, doc).flatMap(({ origin }) => {
      const head = this.s.docHead.get(doc, origin);
      return head === undefined ? [] : [{ origin: origin as WriterId, seq: head.seq, ts: head.ts }];
    });
  }

  /** Reads at most `limit` index entries. */
  docEntriesBeyond(doc: DocKey, origin: WriterId, afterSeq: number, limit: number): { count: number; ts: number } | null {
    const first = this.s.docBeyondFirst.get(doc, origin, afterSeq);
    if (first === undefined) return null;
    return { count: this.s.docBeyondCount.get(doc, origin, afterSeq, Math.max(1, limit))!.n, ts: first.ts };
  }

  hasEntry(origin: WriterId, seq: number): boolean {
    return this.s.hasEntry.get(origin, seq) !== undefined;
  }

  /** One seek of the (origin, seq) index per origin: neither what the peer holds nor what it lacks is scanned. */
  heldThrough(vv: VersionVector): number {
    let first = Infinity;
    for (const { origin } of this.s.origins.all()) {
      const lsn = this.s.firstBeyond.get(origin, vv.get(origin as WriterId) ?? 0)?.lsn;
      if (lsn !== undefined && lsn < first) first = lsn;
    }
    return first === Infinity ? (this.s.lastLsn.get()?.lsn ?? 0) : first - 1;
  }

  oldestBeyond(vv: VersionVector): PendingEntries | null {
    return entriesBeyond(this.s, vv);
  }

  versionVector(): VersionVector {
    return readVersionVector(this.s);
  }

  peerAcks(peer: RegionId): VersionVector {
    return new Map(this.s.peerAcks.all(peer).map((r) => [r.origin as WriterId, r.seq] as const));
  }

  /** Replaces everything recorded for `peer`: a rebuilt peer may acknowledge less than before. */
  setPeerAcks(peer: RegionId, vv: VersionVector): void | Promise<void> {
    if (this.committer) return this.committer.setPeerAcks(peer, vv);
    this.peerAcksTx.immediate(peer, vv);
  }

  /**
   * Deletes entries covered by their document's snapshot that every peer in
   * `peers` has acknowledged, or whose origin ts is below `olderThanTs`, on
   * the writer thread when there is one (it holds the pass's cursor then).
   * With no peers, acknowledgement is not required. Examines at most 100k
   * lsns per call (resuming where the last call stopped, so a log beyond that
   * takes several calls to go through), in transactions of 2000 lsns; returns
   * how many entries were deleted. On the writer thread each transaction is
   * a request of its own, so that commits posted meanwhile wait for one
   * window, not for the whole step (hundreds of ms on a large log).
   */
  collectGarbage(peers: RegionId[], olderThanTs: number): number | Promise<number> {
    // A call while the last one still steps through the log shares it.
    if (this.committer) return (this.collecting ??= this.collectOnWriter(this.committer, peers, olderThanTs).finally(() => (this.collecting = null)));
    return this.collected(this.gc.collect(peers, olderThanTs));
  }

  private async collectOnWriter(committer: CommitWriter, peers: RegionId[], olderThanTs: number): Promise<number> {
    let deleted = 0;
    for (let examined = 0; examined < GC_CALL_BUDGET; examined += GC_WINDOW) {
      const result = await committer.collect(peers, olderThanTs, GC_WINDOW);
      deleted += this.collected(result);
      if (result.passEnded) break;
    }
    return deleted;
  }

  private collected({ deleted, bytes }: GcResult): number {
    this.logEntries -= deleted;
    this.logBytes -= bytes;
    return deleted;
  }

  listDocs(collection: string, after: string | null, limit: number): string[] {
    // Names cannot contain '/', and '0' is the character after '/', so this
    // key range is exactly the collection's documents, in id order.
    const prefix = `${collection}/`;
    const rows = this.s.listLive.all(prefix + (after ?? ''), `${collection}0`, limit);
    return rows.map((r) => r.doc.slice(prefix.length));
  }

  docSummaries(afterDoc: DocKey | null, limit: number): DocSummary[] {
    return this.s.summaries.all(afterDoc ?? '', limit).map(toSummary);
  }

  bucketSummaries(bucket: number): DocSummary[] {
    return this.s.bucketSummaries.all(bucket).map(toSummary);
  }

  summary(doc: DocKey): DocSummary | null {
    const row = this.s.getDoc.get(doc);
    return row === undefined ? null : toSummary(row);
  }

  /** On the writer thread when there is one, in place otherwise. */
  setDigests(digests: DocDigest[]): void | Promise<void> {
    if (digests.length === 0) return;
    if (this.committer) return this.committer.setDigests(digests);
    this.digestTx.immediate(digests);
  }

  staleSummaries(afterDoc: DocKey | null, limit: number): DocSummary[] {
    return this.s.staleSummaries.all(afterDoc ?? '', limit).map(toSummary);
  }

  /** Sets the digest to 32 zero bytes, which no document state hashes to, so peers see a difference. */
  markCorrupt(doc: DocKey): void {
    const before = this.summary(doc)?.digest;
    if (this.corruptLater === null) this.s.markCorrupt.run(doc);
    else if (this.corruptLater.has(doc)) return;
    else this.corruptLater.add(doc);
    this.tellCorrupt(doc, before, false);
  }

  onCorrupt(listener: (doc: DocKey, before: Uint8Array, byCommit: boolean) => void): () => void {
    this.corruptListeners.add(listener);
    return () => this.corruptListeners.delete(listener);
  }

  /** `documents` counts documents that are not deleted; `dbBytes` is the database plus WAL file size. */
  stats(): StorageStats {
    return {
      documents: this.s.countLiveDocs.get()?.n ?? 0,
      logEntries: this.logEntries,
      logBytes: this.logBytes,
      dbBytes: fileSize(this.path) + fileSize(`${this.path}-wal`),
      corruptEntries: this.corruptSeen.size,
    };
  }

  /** SQLite's `PRAGMA quick_check` (engine-specific, not part of the contract); the problems found, empty when healthy. */
  quickCheck(): string[] {
    return runQuickCheck(this.s.quickCheck);
  }

  /**
   * Lets the writer thread finish what was posted, then checkpoints the WAL
   * into the database file, truncates it, and closes. Idempotent.
   */
  close(): void | Promise<void> {
    if (!this.committer) {
      if (this.unstoredWriter !== null) void this.storeWriter();
      return this.closeConnection();
    }
    const committer = this.committer;
    return Promise.resolve(this.unstoredWriter !== null ? this.storeWriter() : undefined)
      .then(() => committer.close())
      .then(() => this.closeConnection());
  }

  private closeConnection(): void {
    if (!this.db.open) return;
    try {
      this.s.checkpoint.get();
    } finally {
      this.db.close();
    }
  }
}


/** How many of `rows` (in lsn order) a page of at most `maxBytes` holds: at least one, none once those before it hold that many. */
function entriesWithin(rows: readonly { bytes: number }[], maxBytes: number): number {
  let bytes = 0;
  for (let i = 0; i < rows.length; i++) {
    if (i > 0 && bytes >= maxBytes) return i;
    bytes += rows[i]!.bytes;
  }
  return rows.length;
}

function fileSize(path: string): number {
  return statSync(path, { throwIfNoEntry: false })?.size ?? 0;
}
