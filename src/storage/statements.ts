/**
 * Every SQL statement the store runs, prepared once when the store opens.
 * Row shapes are spelled out so the store never handles untyped results.
 */
import type Database from 'better-sqlite3';
import type { DocKey, WriterId } from '../ids.js';
import { QUICK_CHECK_SQL } from './integrity.js';
import type { DocSummary, LogEntry } from './types.js';

export interface LogRow {
  lsn: number;
  origin: string;
  seq: number;
  doc: string;
  ts: number;
  data: Buffer;
  checksum: number;
}

export interface DocRow {
  doc: string;
  digest: Buffer;
  deleted: number;
  snapshot_lsn: number;
  log_count: number;
}

export interface SnapshotRow {
  state: Buffer;
  pending: Buffer | null;
  upto_lsn: number;
  checksum: number;
}

export interface ProgressRow {
  origin: string;
  seq: number;
  missing_upto: number;
}

/** A log entry that its document's snapshot covers. */
export interface GcRow {
  lsn: number;
  origin: string;
  seq: number;
  ts: number;
  bytes: number;
}

export function toSummary(row: DocRow): DocSummary {
  return { doc: row.doc as DocKey, digest: row.digest, deleted: row.deleted !== 0 };
}

export function toEntry(row: LogRow): LogEntry {
  return {
    lsn: row.lsn,
    origin: row.origin as WriterId,
    seq: row.seq,
    doc: row.doc as DocKey,
    ts: row.ts,
    update: row.data,
  };
}

const LOG_COLUMNS = 'lsn, origin, seq, doc, ts, data, checksum';

/**
 * What the store uses of a prepared statement, under a name this module
 * exports: the type of {@link prepareStatements} is inferred, and
 * declaration emit must be able to name every statement type in it (the
 * library's own statement type lives in a namespace it does not export).
 */
export interface Prepared<P extends unknown[] = unknown[], R = unknown> {
  run(...params: P): Database.RunResult;
  get(...params: P): R | undefined;
  all(...params: P): R[];
  iterate(...params: P): IterableIterator<R>;
  /** The statement's SQL text (tests explain its query plan). */
  readonly source: string;
}

function prep<P extends unknown[] = unknown[], R = unknown>(db: Database.Database, sql: string): Prepared<P, R> {
  return db.prepare<P, R>(sql);
}

/** Prepares the store's statements; call once per connection. */
export function prepareStatements(db: Database.Database) {
  return {
    insertEntry: prep<[string, number, string, number, Uint8Array, number]>(
      db,
      'INSERT INTO log (origin, seq, doc, ts, data, checksum) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (origin, seq) DO NOTHING',
    ),
    hasEntry: prep<[string, number], { one: number }>(db, 'SELECT 1 AS one FROM log WHERE origin = ? AND seq = ?'),
    readLog: prep<[number, number], LogRow>(db, `SELECT ${LOG_COLUMNS} FROM log WHERE lsn > ? ORDER BY lsn LIMIT ?`),
    // Lengths come from the record headers: no update is read.
    logPositions: prep<[number, number], { lsn: number; origin: string; seq: number; doc: string; bytes: number }>(
      db,
      'SELECT lsn, origin, seq, doc, length(data) AS bytes FROM log WHERE lsn > ? ORDER BY lsn LIMIT ?',
    ),
    docEntries: prep<[string, number], LogRow>(
      db,
      `SELECT ${LOG_COLUMNS} FROM log WHERE doc = ? AND lsn > ? ORDER BY lsn`,
    ),
    // Per-document questions about an origin are seeks of the (doc, origin,
    // seq) index: their cost does not follow how many entries the document
    // has in the log (millions for a hot document while a peer is down).
    // Skips from one origin to the next: one seek per origin, not per entry.
    docOrigins: prep<[string, string], { origin: string }>(
      db,
      `WITH RECURSIVE o(origin) AS (
         SELECT (SELECT min(origin) FROM log WHERE doc = ?)
         UNION ALL
         SELECT (SELECT min(l.origin) FROM log AS l WHERE l.doc = ? AND l.origin > o.origin) FROM o WHERE o.origin IS NOT NULL
       )
       SELECT origin FROM o WHERE origin IS NOT NULL`,
    ),
    docHead: prep<[string, string], { seq: number; ts: number }>(
      db,
      'SELECT seq, ts FROM log WHERE doc = ? AND origin = ? ORDER BY seq DESC LIMIT 1',
    ),
    docBeyondCount: prep<[string, string, number, number], { n: number }>(
      db,
      'SELECT count(*) AS n FROM (SELECT 1 FROM log WHERE doc = ? AND origin = ? AND seq > ? LIMIT ?)',
    ),
    docBeyondFirst: prep<[string, string, number], { ts: number }>(
      db,
      'SELECT ts FROM log WHERE doc = ? AND origin = ? AND seq > ? ORDER BY seq LIMIT 1',
    ),
    countDocEntriesAfter: prep<[string, number], { n: number }>(
      db,
      'SELECT count(*) AS n FROM log WHERE doc = ? AND lsn > ?',
    ),
    deleteEntry: prep<[number]>(db, 'DELETE FROM log WHERE lsn = ?'),
    // Only entries covered by their document's snapshot, within an lsn window:
    // the window bounds the rows examined, whatever the share that qualifies.
    gcScan: prep<[number, number], GcRow>(
      db,
      `SELECT l.lsn, l.origin, l.seq, l.ts, length(l.data) AS bytes
         FROM log l JOIN docs d ON d.doc = l.doc
        WHERE l.lsn > ? AND l.lsn <= ? AND l.lsn <= d.snapshot_lsn ORDER BY l.lsn`,
    ),
    maxLsn: prep<[], { lsn: number | null }>(db, 'SELECT max(lsn) AS lsn FROM log'),
    logTotals: prep<[], { n: number; bytes: number }>(
      db,
      'SELECT count(*) AS n, coalesce(sum(length(data)), 0) AS bytes FROM log',
    ),

    // Each insert carries the document's anti-entropy bucket (bucketOf), computed by the caller.
    ensureDoc: prep<[string, number]>(
      db,
      'INSERT INTO docs (doc, digest, bucket) VALUES (?, zeroblob(32), ?) ON CONFLICT (doc) DO NOTHING',
    ),
    upsertSummary: prep<[string, Uint8Array, number, number]>(
      db,
      `INSERT INTO docs (doc, digest, deleted, bucket) VALUES (?, ?, ?, ?)
       ON CONFLICT (doc) DO UPDATE SET digest = excluded.digest, deleted = excluded.deleted, digest_stale = 0`,
    ),
    markChanged: prep<[string, number, number]>(
      db,
      `INSERT INTO docs (doc, digest, deleted, digest_stale, bucket) VALUES (?, zeroblob(32), ?, 1, ?)
       ON CONFLICT (doc) DO UPDATE SET deleted = excluded.deleted, digest_stale = 1`,
    ),
    markStale: prep<[string, number]>(
      db,
      `INSERT INTO docs (doc, digest, digest_stale, bucket) VALUES (?, zeroblob(32), 1, ?)
       ON CONFLICT (doc) DO UPDATE SET digest_stale = 1`,
    ),
    setDigest: prep<[Uint8Array, string]>(db, 'UPDATE docs SET digest = ?, digest_stale = 0 WHERE doc = ?'),
    setDigestDeleted: prep<[Uint8Array, number, string]>(db, 'UPDATE docs SET digest = ?, deleted = ?, digest_stale = 0 WHERE doc = ?'),
    staleSummaries: prep<[string, number], DocRow>(
      db,
      'SELECT doc, digest, deleted, snapshot_lsn, log_count FROM docs WHERE digest_stale = 1 AND doc > ? ORDER BY doc LIMIT ?',
    ),
    bumpLogCount: prep<[number, string]>(db, 'UPDATE docs SET log_count = log_count + ? WHERE doc = ?'),
    getDoc: prep<[string], DocRow>(
      db,
      'SELECT doc, digest, deleted, snapshot_lsn, log_count FROM docs WHERE doc = ?',
    ),
    setSnapshotLsn: prep<[number, number, string]>(
      db,
      'UPDATE docs SET snapshot_lsn = ?, log_count = ? WHERE doc = ?',
    ),
    // "log_count > 0" lets SQLite use the partial index docs_to_compact;
    // written first, it would also be the bound SQLite scans the index down
    // to, through every document with an entry or more (100 ms each second
    // in a region holding 100,000 documents written once), where the bound
    // wanted is the minimum count. length() of a blob reads its record
    // header, not the blob. The log's bytes are summed only for a document
    // the count leaves waiting.
    toCompact: prep<[number, number, number], { doc: string }>(
      db,
      'SELECT d.doc FROM docs d LEFT JOIN snapshots s ON s.doc = d.doc ' +
        'WHERE d.log_count >= ? AND d.log_count > 0 AND (d.log_count * ? >= coalesce(length(s.state), 0) ' +
        'OR 4 * (SELECT sum(length(l.data)) FROM log l WHERE l.doc = d.doc AND l.lsn > d.snapshot_lsn) >= length(s.state)) ' +
        'ORDER BY d.log_count DESC, d.doc LIMIT ?',
    ),
    listLive: prep<[string, string, number], { doc: string }>(
      db,
      'SELECT doc FROM docs WHERE deleted = 0 AND doc > ? AND doc < ? ORDER BY doc LIMIT ?',
    ),
    summaries: prep<[string, number], DocRow>(
      db,
      'SELECT doc, digest, deleted, snapshot_lsn, log_count FROM docs WHERE doc > ? ORDER BY doc LIMIT ?',
    ),
    bucketSummaries: prep<[number], DocRow>(
      db,
      'SELECT doc, digest, deleted, snapshot_lsn, log_count FROM docs WHERE bucket = ? ORDER BY doc',
    ),
    markCorrupt: prep<[string]>(db, 'UPDATE docs SET digest = zeroblob(32) WHERE doc = ?'),
    countLiveDocs: prep<[], { n: number }>(db, 'SELECT count(*) AS n FROM docs WHERE deleted = 0'),

    getSnapshot: prep<[string], SnapshotRow>(
      db,
      'SELECT state, pending, upto_lsn, checksum FROM snapshots WHERE doc = ?',
    ),
    upsertSnapshot: prep<[string, Uint8Array, Uint8Array | null, number, number]>(
      db,
      `INSERT INTO snapshots (doc, state, pending, upto_lsn, checksum) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (doc) DO UPDATE SET state = excluded.state, pending = excluded.pending,
         upto_lsn = excluded.upto_lsn, checksum = excluded.checksum`,
    ),

    origins: prep<[], ProgressRow>(db, 'SELECT origin, seq, missing_upto FROM progress'),
    getProgress: prep<[string], ProgressRow>(
      db,
      'SELECT origin, seq, missing_upto FROM progress WHERE origin = ?',
    ),
    raiseProgress: prep<[string, number]>(
      db,
      `INSERT INTO progress (origin, seq) VALUES (?, ?)
       ON CONFLICT (origin) DO UPDATE SET seq = max(seq, excluded.seq)`,
    ),
    raiseMissing: prep<[string, number]>(
      db,
      `INSERT INTO progress (origin, missing_upto) VALUES (?, ?)
       ON CONFLICT (origin) DO UPDATE SET missing_upto = max(missing_upto, excluded.missing_upto)`,
    ),
    minSeq: prep<[string], { seq: number | null }>(db, 'SELECT min(seq) AS seq FROM log WHERE origin = ?'),
    countSeqRange: prep<[string, number, number], { n: number }>(
      db,
      'SELECT count(*) AS n FROM log WHERE origin = ? AND seq > ? AND seq <= ?',
    ),
    // An origin's entries are stored in seq order (never past a gap), so its
    // lowest seq beyond is also its lowest lsn beyond: one index seek, not a
    // scan of everything the peer lacks.
    firstBeyond: prep<[string, number], { lsn: number }>(db, 'SELECT lsn FROM log WHERE origin = ? AND seq > ? ORDER BY seq LIMIT 1'),
    lastLsn: prep<[], { lsn: number | null }>(db, 'SELECT max(lsn) AS lsn FROM log'),
    // At most `limit` entries: a peer cut off for hours lacks millions. The
    // length is taken in the subquery, where SQLite reads it from the record
    // header: selecting the data there read every blob (245 ms against
    // 0.37 ms for 300 MB of entries, called twice a second even on an idle
    // region with a peer down).
    beyond: prep<[string, number, number], { ts: number | null; n: number; bytes: number }>(
      db,
      'SELECT min(ts) AS ts, count(*) AS n, coalesce(sum(bytes), 0) AS bytes ' +
        'FROM (SELECT ts, length(data) AS bytes FROM log WHERE origin = ? AND seq > ? ORDER BY seq LIMIT ?)',
    ),

    peerAcks: prep<[string], { origin: string; seq: number }>(
      db,
      'SELECT origin, seq FROM peer_acks WHERE peer = ?',
    ),
    clearPeerAcks: prep<[string]>(db, 'DELETE FROM peer_acks WHERE peer = ?'),
    insertPeerAck: prep<[string, string, number]>(db, 'INSERT INTO peer_acks (peer, origin, seq) VALUES (?, ?, ?)'),

    insertQuarantined: prep<[number, string, string, number, string, number, Uint8Array, string]>(
      db,
      `INSERT INTO quarantine (at, peer, origin, seq, doc, ts, data, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (origin, seq) DO NOTHING`,
    ),
    countQuarantined: prep<[string]>(
      db,
      'INSERT INTO quarantine_counts (peer, n) VALUES (?, 1) ON CONFLICT (peer) DO UPDATE SET n = n + 1',
    ),
    // Keeps the newest `offset` entries of the peer (two seeks of quarantine_by_peer).
    pruneQuarantined: prep<[string, string, number]>(
      db,
      `DELETE FROM quarantine WHERE peer = ? AND id <= coalesce(
         (SELECT id FROM quarantine WHERE peer = ? ORDER BY id DESC LIMIT 1 OFFSET ?), 0)`,
    ),
    insertConflict: prep<[string, number, string, Uint8Array, Uint8Array, Uint8Array]>(
      db,
      'INSERT INTO conflicts (doc, at, winner, kept_digest, lost_digest, lost_state) VALUES (?, ?, ?, ?, ?, ?)',
    ),
    // Keeps the newest `offset` records of the document (two seeks of conflicts_by_doc).
    pruneConflicts: prep<[string, string, number], { size: number }>(
      db,
      `DELETE FROM conflicts WHERE doc = ? AND id <= coalesce(
         (SELECT id FROM conflicts WHERE doc = ? ORDER BY id DESC LIMIT 1 OFFSET ?), 0)
       RETURNING length(lost_state) AS size`,
    ),
    // Ids and state sizes, oldest first: SQLite takes a blob's length from its header, without reading it.
    conflictSizes: prep<[], { id: number; size: number }>(db, 'SELECT id, length(lost_state) AS size FROM conflicts ORDER BY id'),
    dropConflictsUpTo: prep<[number]>(db, 'DELETE FROM conflicts WHERE id <= ?'),
    conflictBytes: prep<[], { value: string }>(db, "SELECT value FROM meta WHERE key = 'conflict_bytes'"),
    setConflictBytes: prep<[string]>(
      db,
      "INSERT INTO meta (key, value) VALUES ('conflict_bytes', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    ),

    checkpoint: prep(db, 'PRAGMA wal_checkpoint(TRUNCATE)'),
    setWriter: prep<[string]>(db, "UPDATE meta SET value = ? WHERE key = 'writer'"),
    quickCheck: prep<[], { quick_check: string }>(db, QUICK_CHECK_SQL),
  };
}

export type Statements = ReturnType<typeof prepareStatements>;
