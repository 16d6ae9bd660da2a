/**
 * Per-origin bookkeeping: the version vector (highest contiguous applied seq),
 * how far the log can still serve an origin, and how far others lag behind.
 * Functions run inside the caller's transaction where they write.
 */
import type { VersionVector, WriterId } from '../ids.js';
import { MAX_SEQ } from '../vv.js';
import { StoreOpenError } from './errors.js';
import { PENDING_READ_LIMIT, PendingTotal, type PendingEntries } from './pending.js';
import type { Statements } from './statements.js';

/** Walks the origin's applied seq forward over entries held in the log, never to MAX_SEQ. */
function walkForward(s: Statements, origin: string, from: number): number {
  let seq = from;
  while (seq + 1 < MAX_SEQ && s.hasEntry.get(origin, seq + 1) !== undefined) seq += 1;
  return seq;
}

/**
 * Defence in depth behind the wire codec: a seq at or beyond MAX_SEQ is
 * never recorded (beyond 2^53 `seq + 1 === seq`, and a loop over sequence
 * numbers would spin). Throws, so the caller's transaction rolls back.
 */
function checkSeq(origin: string, seq: number): void {
  if (!Number.isSafeInteger(seq) || seq < 0 || seq >= MAX_SEQ) {
    throw new RangeError(`seq ${seq} of ${origin} is not below MAX_SEQ (2^48); refused`);
  }
}

/**
 * Raises the applied seq of `origin` after `seqs` were stored. Callers commit
 * entries contiguously per origin; should one arrive early, the applied seq
 * stops before the gap and catches up when the gap is filled.
 */
export function advanceProgress(s: Statements, origin: string, seqs: number[]): void {
  for (const seq of seqs) checkSeq(origin, seq);
  let applied = s.getProgress.get(origin)?.seq ?? 0;
  for (const seq of [...seqs].sort((a, b) => a - b)) {
    if (seq === applied + 1) applied = seq;
  }
  s.raiseProgress.run(origin, walkForward(s, origin, applied));
}

/**
 * Raises applied seqs to `vv` (never lowers). Entries skipped over this way
 * were never stored here, so the log cannot serve them: `missing_upto` records
 * that for {@link logFloor}.
 */
export function raiseProgress(s: Statements, vv: VersionVector): void {
  for (const [origin, target] of vv) checkSeq(origin, target);
  for (const [origin, target] of vv) {
    const applied = s.getProgress.get(origin)?.seq ?? 0;
    if (target <= applied) continue;
    const held = s.countSeqRange.get(origin, applied, target)?.n ?? 0;
    if (held < target - applied) s.raiseMissing.run(origin, target);
    s.raiseProgress.run(origin, walkForward(s, origin, target));
  }
}

/**
 * The applied seq per origin. Throws {@link StoreOpenError} if one is at or
 * beyond MAX_SEQ: only a forged anti-entropy floor accepted before the bound
 * existed puts one there, and writing on would stall (see checkSeq). The
 * region refuses to start rather than guess which writes it really holds.
 */
export function readVersionVector(s: Statements): VersionVector {
  const vv: VersionVector = new Map();
  for (const row of s.origins.all()) {
    if (row.seq >= MAX_SEQ || row.missing_upto >= MAX_SEQ) throw poisonedProgress(row.origin, Math.max(row.seq, row.missing_upto));
    if (row.seq > 0) vv.set(row.origin as WriterId, row.seq);
  }
  return vv;
}

function poisonedProgress(origin: string, seq: number): StoreOpenError {
  return new StoreOpenError(
    'corrupt',
    `the database records writer ${origin} as applied up to ${seq}, beyond MAX_SEQ (2^48): a forged number from a peer ` +
      'poisoned it (see "Security model" in the README). Move the data directory aside and start the region with an ' +
      'empty one: it rebuilds from its peers. Keep the old directory until the rebuilt region has caught up.',
  );
}

/**
 * For each origin the log has held: the lowest seq from which every entry this
 * store has applied is still in the log. An origin whose entries are all gone
 * reports one past the last entry removed.
 */
export function readLogFloor(s: Statements): Map<WriterId, number> {
  const floors = new Map<WriterId, number>();
  for (const row of s.origins.all()) {
    const lowest = s.minSeq.get(row.origin)?.seq ?? null;
    if (lowest === null && row.missing_upto === 0) continue;
    const floor = lowest === null ? row.missing_upto + 1 : Math.max(lowest, row.missing_upto + 1);
    floors.set(row.origin as WriterId, floor);
  }
  return floors;
}

/**
 * Oldest origin timestamp, count and update bytes of the entries beyond `vv`
 * (see {@link PendingEntries}). One bounded range read of the (origin, seq)
 * index per origin the peer lacks entries of: `/v1/sync` and every
 * heartbeat ask, and a peer cut off for hours lacks millions of entries.
 */
export function entriesBeyond(s: Statements, vv: VersionVector): PendingEntries | null {
  const pending = new PendingTotal();
  for (const row of s.origins.all()) {
    const after = vv.get(row.origin as WriterId) ?? 0;
    // Nothing of this origin beyond what the peer holds: no read (a region knows every writer there ever was).
    if (after >= row.seq) continue;
    const read = s.beyond.get(row.origin, after, PENDING_READ_LIMIT);
    if (read === undefined || read.n === 0 || read.ts === null) continue;
    pending.add({ ts: read.ts, n: read.n, bytes: read.bytes }, row.seq - after);
  }
  return pending.result();
}

/**
 * For each origin, the seq up to which every listed peer has acknowledged
 * its entries. With no peers, nothing waits for an acknowledgement.
 */
export function ackedByAll(s: Statements, peers: readonly string[]): (origin: string, seq: number) => boolean {
  if (peers.length === 0) return () => true;
  const floors = new Map<string, number>();
  for (const row of s.origins.all()) floors.set(row.origin, Infinity);
  for (const peer of peers) {
    const acks = new Map(s.peerAcks.all(peer).map((r) => [r.origin, r.seq] as const));
    for (const [origin, floor] of floors) floors.set(origin, Math.min(floor, acks.get(origin) ?? 0));
  }
  return (origin, seq) => seq <= (floors.get(origin) ?? 0);
}
