/**
 * Writing one batch (a group commit, or snapshots alone): the statements
 * both the store's own connection and the writer thread run, inside the
 * caller's transaction.
 */
import { bucketOf } from '../buckets.js';
import type { DocKey, RegionId, VersionVector } from '../ids.js';
import { entryChecksum, snapshotChecksum } from './checksum.js';
import { advanceProgress, raiseProgress } from './progress.js';
import type { Statements } from './statements.js';
import { MAX_CONFLICTS_PER_DOC, MAX_CONFLICT_BYTES, MAX_QUARANTINED_PER_PEER, MAX_QUARANTINE_REASON, type CommitBatch, type NewConflict, type DocDigest, type Snapshot } from './types.js';

const DIGEST_BYTES = 32;

/** What a commit did: one lsn per entry (-1 for a duplicate), what it added to the log, and snapshots it ignored. */
export interface CommitResult {
  lsns: number[];
  added: number;
  bytes: number;
  /** Documents whose snapshot was older than the stored one, and so not written. */
  olderSnapshots: DocKey[];
  /** The sending peer of each quarantined entry kept (one already kept is not). */
  quarantinedFrom: RegionId[];
  /** Conflict records added. */
  conflicts: number;
  /** Documents whose oldest conflict records were dropped to stay within {@link MAX_CONFLICTS_PER_DOC}, with how many. */
  conflictsDropped: [DocKey, number][];
  /** Conflict records dropped, the oldest of any document, to stay within {@link MAX_CONFLICT_BYTES}. */
  conflictsDroppedForBytes: number;
  /** Documents of quarantined entries marked for repair, each with the digest stored just before the mark. */
  marked: [DocKey, Uint8Array][];
}

/**
 * Appends the entries (dropping duplicates of a stored (origin, seq)),
 * stores digests, then document changes (which may mark those stale
 * again), bumps per-document log counts, advances and raises the version
 * vector, and keeps quarantined entries and conflict records.
 * Entries of a document with no summary row yet get one with an all-zero digest.
 */
export function writeBatch(s: Statements, batch: CommitBatch, maxConflictBytes = MAX_CONFLICT_BYTES): CommitResult {
  const result: CommitResult = { lsns: [], added: 0, bytes: 0, olderSnapshots: [], quarantinedFrom: [], conflicts: 0, conflictsDropped: [], conflictsDroppedForBytes: 0, marked: [] };
  const perDoc = new Map<string, number>();
  const perOrigin = new Map<string, number[]>();
  for (const entry of batch.entries) {
    const info = s.insertEntry.run(entry.origin, entry.seq, entry.doc, entry.ts, entry.update, entryChecksum(entry));
    if (info.changes === 0) {
      result.lsns.push(-1);
      continue;
    }
    result.lsns.push(Number(info.lastInsertRowid));
    result.added += 1;
    result.bytes += entry.update.byteLength;
    perDoc.set(entry.doc, (perDoc.get(entry.doc) ?? 0) + 1);
    const seqs = perOrigin.get(entry.origin);
    if (seqs === undefined) perOrigin.set(entry.origin, [entry.seq]);
    else seqs.push(entry.seq);
  }
  if (batch.writer !== undefined) s.setWriter.run(batch.writer);
  writeDigests(s, batch.digests ?? []);
  // A document's summary and its entries usually come in one batch: its bucket is hashed once.
  const buckets = new Map<string, number>();
  const bucket = (doc: string): number => {
    let b = buckets.get(doc);
    if (b === undefined) buckets.set(doc, (b = bucketOf(doc)));
    return b;
  };
  for (const change of batch.docs) {
    if (change.deleted === undefined) s.markStale.run(change.doc, bucket(change.doc));
    else if (change.digest === undefined) s.markChanged.run(change.doc, change.deleted ? 1 : 0, bucket(change.doc));
    else s.upsertSummary.run(change.doc, checkedDigest(change.doc, change.digest), change.deleted ? 1 : 0, bucket(change.doc));
  }
  for (const [doc, count] of perDoc) {
    s.ensureDoc.run(doc, bucket(doc));
    s.bumpLogCount.run(count, doc);
  }
  for (const [origin, seqs] of perOrigin) advanceProgress(s, origin, seqs);
  if (batch.raise) raiseProgress(s, batch.raise);
  for (const snapshot of batch.snapshots ?? []) {
    if (!writeSnapshot(s, snapshot)) result.olderSnapshots.push(snapshot.doc);
  }
  for (const q of batch.quarantined ?? []) {
    const info = s.insertQuarantined.run(Date.now(), q.peer, q.origin, q.seq, q.doc, q.ts, q.update, q.reason.slice(0, MAX_QUARANTINE_REASON));
    if (info.changes === 0) continue;
    s.countQuarantined.run(q.peer);
    result.quarantinedFrom.push(q.peer);
  }
  for (const peer of new Set(result.quarantinedFrom)) s.pruneQuarantined.run(peer, peer, MAX_QUARANTINED_PER_PEER);
  // Each document of a quarantined entry is marked for repair (a digest no state has) in the same transaction,
  // with what it held just before, for the digest index to take out exactly that.
  for (const doc of new Set((batch.quarantined ?? []).map((q) => q.doc))) {
    const row = s.getDoc.get(doc);
    if (row === undefined) continue;
    s.markCorrupt.run(doc);
    result.marked.push([doc, new Uint8Array(row.digest)]);
  }
  if ((batch.conflicts ?? []).length > 0) keepConflicts(s, batch.conflicts ?? [], maxConflictBytes, result);
  return result;
}

/** Keeps conflict records, each document's newest only, within `maxBytes` of lost states over all. */
function keepConflicts(s: Statements, conflicts: readonly NewConflict[], maxBytes: number, result: CommitResult): void {
  let bytes = Number(s.conflictBytes.get()?.value ?? 0);
  let newest = 0;
  for (const c of conflicts) {
    newest = Number(s.insertConflict.run(c.doc, c.at, c.winner, c.keptDigest, c.lostDigest, c.lostState).lastInsertRowid);
    bytes += c.lostState.byteLength;
    result.conflicts += 1;
  }
  for (const doc of new Set(conflicts.map((c) => c.doc))) {
    const dropped = s.pruneConflicts.all(doc, doc, MAX_CONFLICTS_PER_DOC);
    for (const d of dropped) bytes -= d.size;
    if (dropped.length > 0) result.conflictsDropped.push([doc, dropped.length]);
  }
  if (bytes > maxBytes) {
    // The oldest first; the newest stays, as its id counts every record ever kept.
    let upTo = 0;
    for (const { id, size } of s.conflictSizes.iterate()) {
      if (bytes <= maxBytes || id === newest) break;
      upTo = id;
      bytes -= size;
      result.conflictsDroppedForBytes++;
    }
    if (upTo > 0) s.dropConflictsUpTo.run(upTo);
  }
  s.setConflictBytes.run(String(bytes));
}

/**
 * Stores a snapshot; false (nothing written) when it is older than the
 * stored one, whose log entries may already be collected. Throws for a
 * document the store has never seen.
 */
function writeSnapshot(s: Statements, snapshot: Snapshot): boolean {
  const row = s.getDoc.get(snapshot.doc);
  if (row === undefined) throw new Error(`cannot store a snapshot of unknown document ${snapshot.doc}`);
  if (snapshot.uptoLsn < row.snapshot_lsn) return false;
  const { doc, state, uptoLsn } = snapshot;
  s.upsertSnapshot.run(doc, state, null, uptoLsn, snapshotChecksum(snapshot));
  const remaining = s.countDocEntriesAfter.get(doc, uptoLsn)?.n ?? 0;
  s.setSnapshotLsn.run(uptoLsn, remaining, doc);
  return true;
}

/** Stores digests and clears their documents' stale mark. */
export function writeDigests(s: Statements, digests: DocDigest[]): void {
  for (const d of digests) {
    if (d.deleted === undefined) s.setDigest.run(checkedDigest(d.doc, d.digest), d.doc);
    else s.setDigestDeleted.run(checkedDigest(d.doc, d.digest), d.deleted ? 1 : 0, d.doc);
  }
}

/** Replaces everything recorded for `peer`: a rebuilt peer may acknowledge less than before. */
export function writePeerAcks(s: Statements, peer: RegionId, vv: VersionVector): void {
  s.clearPeerAcks.run(peer);
  for (const [origin, seq] of vv) s.insertPeerAck.run(peer, origin, seq);
}

function checkedDigest(doc: DocKey, digest: Uint8Array): Uint8Array {
  if (digest.byteLength !== DIGEST_BYTES) throw new Error(`digest of ${doc} has ${digest.byteLength} bytes, expected ${DIGEST_BYTES}`);
  return digest;
}
