/**
 * Removes log entries that no one needs any more: the document's snapshot
 * covers them, and every peer has acknowledged them or they are older than
 * the retention limit. Works through the log in lsn windows, one small
 * transaction each, so that a large backlog never becomes one long write
 * that stalls commits, and a call never blocks the event loop for long.
 */
import type Database from 'better-sqlite3';
import { ackedByAll } from './progress.js';
import type { GcRow, Statements } from './statements.js';

/** Lsns examined (and at most deleted) per transaction. */
export const GC_WINDOW = 2000;
/** Lsns examined per call at most, unless the caller asks for fewer; the next call resumes where this one stopped. */
export const GC_CALL_BUDGET = 100_000;

export interface GcResult {
  deleted: number;
  bytes: number;
  /** The call reached the end of the log: the next one starts a new pass. */
  passEnded: boolean;
}

type Deletable = (row: GcRow) => boolean;

export class GarbageCollector {
  /** Highest lsn examined by the pass in progress; 0 starts a new pass. */
  private cursor = 0;
  private readonly deleteWindow: Database.Transaction<(from: number, to: number, deletable: Deletable) => GcResult>;

  constructor(
    db: Database.Database,
    private readonly s: Statements,
  ) {
    this.deleteWindow = db.transaction((from: number, to: number, deletable: Deletable): GcResult => {
      const removedUpto = new Map<string, number>();
      const result: GcResult = { deleted: 0, bytes: 0, passEnded: false };
      for (const row of s.gcScan.all(from, to)) {
        if (!deletable(row)) continue;
        s.deleteEntry.run(row.lsn);
        result.deleted += 1;
        result.bytes += row.bytes;
        removedUpto.set(row.origin, Math.max(row.seq, removedUpto.get(row.origin) ?? 0));
      }
      // The log can no longer serve these origins from below here.
      for (const [origin, seq] of removedUpto) s.raiseMissing.run(origin, seq);
      return result;
    });
  }

  /** One bounded step of garbage collection, over at most `budget` lsns; see `Store.collectGarbage`. */
  collect(peers: readonly string[], olderThanTs: number, budget = GC_CALL_BUDGET): GcResult {
    const acked = ackedByAll(this.s, peers);
    const deletable: Deletable = (row) => row.ts < olderThanTs || acked(row.origin, row.seq);
    const end = this.s.maxLsn.get()?.lsn ?? 0;
    const stop = Math.min(end, this.cursor + Math.max(1, budget));
    const total: GcResult = { deleted: 0, bytes: 0, passEnded: false };
    while (this.cursor < stop) {
      const to = Math.min(stop, this.cursor + GC_WINDOW);
      const result = this.deleteWindow.immediate(this.cursor, to, deletable);
      total.deleted += result.deleted;
      total.bytes += result.bytes;
      this.cursor = to;
    }
    if (this.cursor >= end) {
      this.cursor = 0;
      total.passEnded = true;
    }
    return total;
  }
}
