/**
 * What a peer has not acknowledged, read in bounded time: each engine reads
 * at most {@link PENDING_READ_LIMIT} of an origin's entries beyond the
 * peer's acknowledgement, and a longer backlog is counted by seq and its
 * bytes estimated from the part read.
 */

/** Entries of one origin read at most per question. */
export const PENDING_READ_LIMIT = 1000;

/** Entries beyond a version vector (see Store.oldestBeyond). */
export interface PendingEntries {
  /** Oldest origin timestamp among the entries read. */
  ts: number;
  count: number;
  /** Update bytes: exact up to PENDING_READ_LIMIT entries per origin, estimated beyond. */
  bytes: number;
}

/** Sums the origins' reads into one {@link PendingEntries}. */
export class PendingTotal {
  private ts = Infinity;
  private count = 0;
  private bytes = 0;

  /**
   * One origin: `read` is what the bounded read found; `bySeq` how many seqs
   * lie between the acknowledgement and what this region has applied. A read
   * cut off at the limit stands for `bySeq` entries of its mean size.
   */
  add(read: { ts: number; n: number; bytes: number }, bySeq: number): void {
    this.ts = Math.min(this.ts, read.ts);
    const whole = read.n < PENDING_READ_LIMIT || bySeq <= read.n;
    this.count += whole ? read.n : bySeq;
    this.bytes += whole ? read.bytes : Math.round((read.bytes / read.n) * bySeq);
  }

  result(): PendingEntries | null {
    return this.count === 0 ? null : { ts: this.ts, count: this.count, bytes: this.bytes };
  }
}
