/**
 * The `conflicts` table: document states that lost when two replicas were
 * found to hold the same Yjs structs with different content (two clients
 * wrote under one Yjs client id). The losing state is kept whole, never
 * merged, so that nothing a client wrote disappears without a trace.
 */
import type Database from 'better-sqlite3';
import type { DocKey, RegionId } from '../ids.js';
import { conflictPageLength, type ConflictRecord, type ConflictStore } from './types.js';

interface ConflictRow {
  id: number;
  doc: string;
  at: number;
  winner: string;
  kept_digest: Uint8Array;
  lost_digest: Uint8Array;
  lost_state: Uint8Array;
}

/**
 * {@link ConflictStore} over one open database (schema v2 or later).
 * Records are kept by commits (./batch.ts), which report how many.
 */
export class SqliteConflicts implements ConflictStore {
  /** Ids and state sizes only: SQLite takes a blob's length from its header, without reading it. */
  private readonly sizes: Database.Statement<[string, number, number], { id: number; size: number }>;
  private readonly range: Database.Statement<[string, number, number], ConflictRow>;
  private total: number;

  constructor(db: Database.Database) {
    this.sizes = db.prepare('SELECT id, length(lost_state) AS size FROM conflicts WHERE doc = ? AND id > ? ORDER BY id LIMIT ?');
    this.range = db.prepare('SELECT * FROM conflicts WHERE doc = ? AND id > ? AND id <= ? ORDER BY id');
    // Ids are never reused and a document's newest record is never dropped,
    // so the highest id is how many were ever recorded.
    this.total = db.prepare<[], { n: number | null }>('SELECT max(id) AS n FROM conflicts').get()?.n ?? 0;
  }

  /** A commit kept `n` records. */
  kept(n: number): void {
    this.total += n;
  }

  list(doc: DocKey, afterId: number, limit: number, maxStateBytes: number): { records: ConflictRecord[]; more: boolean } {
    const sizes = this.sizes.all(doc, afterId, limit + 1);
    const n = conflictPageLength(sizes.map((s) => s.size), limit, maxStateBytes);
    if (n === 0) return { records: [], more: false };
    const records = this.range.all(doc, afterId, sizes[n - 1]!.id).map((r) => ({
      id: r.id,
      doc: r.doc as DocKey,
      at: r.at,
      winner: r.winner as RegionId,
      keptDigest: r.kept_digest,
      lostDigest: r.lost_digest,
      lostState: r.lost_state,
    }));
    return { records, more: sizes.length > n };
  }

  count(): number {
    return this.total;
  }
}
