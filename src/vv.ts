/**
 * Version vector arithmetic, shared by the API (session guarantees) and
 * replication (lag, acknowledgements).
 */
import type { VersionVector, WriterId } from './ids.js';

/** Does `have` hold everything `want` names? */
export function covers(have: VersionVector, want: VersionVector): boolean {
  for (const [origin, seq] of want) if ((have.get(origin) ?? 0) < seq) return false;
  return true;
}

/** How many updates `have` lacks of `want`. */
export function missingCount(want: VersionVector, have: VersionVector): number {
  let n = 0;
  for (const [origin, seq] of want) n += Math.max(0, seq - (have.get(origin) ?? 0));
  return n;
}

/** Per writer, how many updates `have` lacks of `want` (writers lacking nothing are left out). */
export function missingByWriter(want: VersionVector, have: VersionVector): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [origin, seq] of want) {
    const gap = seq - (have.get(origin) ?? 0);
    if (gap > 0) out[origin] = gap;
  }
  return out;
}

/**
 * Every sequence number (and log lsn, and entry timestamp in ms) is below
 * 2^48: a peer's frame that says otherwise is a protocol error, and storage
 * refuses to record one. 2^48 writes is nine years at a million a second per
 * writer, and the bound keeps `seq + 1` exact, so that no loop over
 * sequence numbers can stall on a number that no longer grows.
 */
export const MAX_SEQ = 2 ** 48;

/**
 * Most writers a version vector may name. A region adds one per incarnation
 * of its data directory (a wipe, a restore from a backup), so a cluster
 * holds tens; thousands come only from a peer naming writers that never
 * wrote. A frame's vector may name no more, and neither may what this region
 * holds or has been told a peer holds: its own vector always fits a frame.
 */
export const MAX_WRITERS = 4096;

/**
 * Of those, what entries and floors from peers may fill: the rest stays for
 * this region's own later incarnations (a restore from a backup), which are
 * never refused, so that its own vector always fits a frame.
 */
export const MAX_WRITERS_FROM_PEERS = MAX_WRITERS - 16;

/** How many writers `claim` names (with a seq above 0) that `known` does not. */
export function newWriters(known: VersionVector, claim: VersionVector): number {
  let n = 0;
  for (const [writer, seq] of claim) if (seq > 0 && !known.has(writer)) n++;
  return n;
}

/** The first writer for which `claim` exceeds `bound` (absent counts as 0), or null. */
export function firstExcess(
  claim: VersionVector,
  bound: VersionVector,
): { writer: WriterId; claimed: number; bound: number } | null {
  for (const [writer, seq] of claim) {
    const limit = bound.get(writer) ?? 0;
    if (seq > limit) return { writer, claimed: seq, bound: limit };
  }
  return null;
}

/** `claim` with each entry lowered to what `cap` allows (entries `cap` lacks are dropped). */
export function capped(claim: VersionVector, cap: VersionVector): VersionVector {
  const out: VersionVector = new Map();
  for (const [writer, seq] of claim) {
    const n = Math.min(seq, cap.get(writer) ?? 0);
    if (n > 0) out.set(writer, n);
  }
  return out;
}

/** Per writer, the larger of the two. */
export function merged(a: VersionVector, b: VersionVector): VersionVector {
  const out: VersionVector = new Map(a);
  for (const [writer, seq] of b) if (seq > (out.get(writer) ?? 0)) out.set(writer, seq);
  return out;
}
