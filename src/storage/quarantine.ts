/**
 * The `quarantine` table: log entries from peers that this region could not
 * apply (larger than its `yjsUpdateBytes`, invalid, or failing to
 * integrate). They are kept so an operator can inspect them, while the
 * stream from the peer goes on and anti-entropy repairs the document by state.
 */
import type Database from 'better-sqlite3';
import type { DocKey, RegionId, WriterId } from '../ids.js';
import type { QuarantineStore, QuarantinedEntry } from './types.js';

interface QuarantineRow {
  id: number;
  at: number;
  peer: string;
  origin: string;
  seq: number;
  doc: string;
  ts: number;
  data: Uint8Array;
  reason: string;
}

/**
 * {@link QuarantineStore} over one open database (schema v5 or later).
 * Entries are kept by commits (./batch.ts), which report each one kept.
 */
export class SqliteQuarantine implements QuarantineStore {
  private readonly page: Database.Statement<[number, number], QuarantineRow>;
  /** Per-peer counts, read once at open and kept in step with {@link kept}. */
  private readonly perPeer = new Map<RegionId, number>();

  constructor(db: Database.Database) {
    this.page = db.prepare('SELECT * FROM quarantine WHERE id > ? ORDER BY id LIMIT ?');
    const rows = db.prepare<[], { peer: string; n: number }>('SELECT peer, n FROM quarantine_counts').all();
    for (const row of rows) this.perPeer.set(row.peer as RegionId, row.n);
  }

  /** A commit kept an entry from `peer`. */
  kept(peer: RegionId): void {
    this.perPeer.set(peer, (this.perPeer.get(peer) ?? 0) + 1);
  }

  counts(): ReadonlyMap<RegionId, number> {
    return new Map(this.perPeer);
  }

  list(afterId: number, limit: number): (QuarantinedEntry & { id: number; at: number })[] {
    return this.page.all(afterId, limit).map((r) => ({
      id: r.id,
      at: r.at,
      peer: r.peer as RegionId,
      origin: r.origin as WriterId,
      seq: r.seq,
      doc: r.doc as DocKey,
      ts: r.ts,
      update: r.data,
      reason: r.reason,
    }));
  }
}
