/**
 * The `conflicts` table: document states that lost when two replicas were
 * found to hold the same Yjs structs with different content (two clients
 * wrote under one Yjs client id). The losing state is kept whole, never
 * merged, so that nothing a client wrote disappears without a trace.
 */
import type Database from 'better-sqlite3';
import type { DocKey, RegionId } from '../ids.js';
import type { ConflictRecord, ConflictStore, NewConflict } from './types.js';

interface ConflictRow {
  id: number;
  doc: string;
  at: number;
  winner: string;
  kept_digest: Uint8Array;
  lost_digest: Uint8Array;
  lost_state: Uint8Array;
}

/** {@link ConflictStore} over one open database (schema v2 or later). */
export class SqliteConflicts implements ConflictStore {
  private readonly insert: Database.Statement<[string, number, string, Uint8Array, Uint8Array, Uint8Array]>;
  private readonly ofDoc: Database.Statement<[string, number, number], ConflictRow>;
  private total: number;

  constructor(db: Database.Database) {
    this.insert = db.prepare(
      'INSERT INTO conflicts (doc, at, winner, kept_digest, lost_digest, lost_state) VALUES (?, ?, ?, ?, ?, ?)',
    );
    this.ofDoc = db.prepare('SELECT * FROM conflicts WHERE doc = ? AND id > ? ORDER BY id LIMIT ?');
    this.total = db.prepare<[], { n: number }>('SELECT count(*) AS n FROM conflicts').get()?.n ?? 0;
  }

  add(c: NewConflict): void {
    this.insert.run(c.doc, c.at, c.winner, c.keptDigest, c.lostDigest, c.lostState);
    this.total++;
  }

  list(doc: DocKey, afterId: number, limit: number): ConflictRecord[] {
    return this.ofDoc.all(doc, afterId, limit).map((r) => ({
      id: r.id,
      doc: r.doc as DocKey,
      at: r.at,
      winner: r.winner as RegionId,
      keptDigest: r.kept_digest,
      lostDigest: r.lost_digest,
      lostState: r.lost_state,
    }));
  }

  count(): number {
    return this.total;
  }
}
