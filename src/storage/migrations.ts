/**
 * Schema versions of the region database. Each migration runs once, in order,
 * inside the same transaction as the `schema_version` bump, so a crash leaves
 * the database at one version or the next, never in between. Add new
 * migrations at the end; never edit one that has shipped.
 */
import type Database from 'better-sqlite3';
import { bucketOf } from '../buckets.js';
import { StoreOpenError } from './errors.js';

export interface Migration {
  version: number;
  description: string;
  up(db: Database.Database): void;
}

const V1_SCHEMA = `
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;

-- AUTOINCREMENT: an lsn is never reused after garbage collection removed the
-- newest rows, so peers' "after lsn" cursors stay meaningful.
CREATE TABLE log (
  lsn      INTEGER PRIMARY KEY AUTOINCREMENT,
  origin   TEXT    NOT NULL,
  seq      INTEGER NOT NULL,
  doc      TEXT    NOT NULL,
  ts       INTEGER NOT NULL,
  data     BLOB    NOT NULL,
  checksum INTEGER NOT NULL,
  UNIQUE (origin, seq)
);
CREATE INDEX log_by_doc ON log (doc, lsn);

-- One small row per document; snapshots live apart so that scans of the
-- summaries never page through large blobs. log_count counts the entries
-- with lsn > snapshot_lsn, which makes "what needs compaction" an index read.
CREATE TABLE docs (
  doc          TEXT    PRIMARY KEY,
  digest       BLOB    NOT NULL,
  deleted      INTEGER NOT NULL DEFAULT 0,
  snapshot_lsn INTEGER NOT NULL DEFAULT 0,
  log_count    INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX docs_live ON docs (doc) WHERE deleted = 0;
CREATE INDEX docs_to_compact ON docs (log_count DESC, doc) WHERE log_count > 0;

CREATE TABLE snapshots (
  doc      TEXT    PRIMARY KEY REFERENCES docs (doc) ON DELETE CASCADE,
  state    BLOB    NOT NULL,
  pending  BLOB,
  upto_lsn INTEGER NOT NULL,
  checksum INTEGER NOT NULL
);

-- seq: highest contiguous applied seq (the version vector; 0 = none yet).
-- missing_upto: entries of this origin up to here may be absent from the log
-- (garbage-collected, or covered by state received without them).
CREATE TABLE progress (
  origin       TEXT    PRIMARY KEY,
  seq          INTEGER NOT NULL DEFAULT 0,
  missing_upto INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE peer_acks (
  peer   TEXT    NOT NULL,
  origin TEXT    NOT NULL,
  seq    INTEGER NOT NULL,
  PRIMARY KEY (peer, origin)
) WITHOUT ROWID;
`;

// Conflicts: a document state that lost when two replicas held the same Yjs
// structs with different content (see docs/conflicts); kept, never merged.
// Quarantine: log entries from a peer that this region could not apply;
// kept so an operator can inspect them, while the stream goes on without them.
// digest_stale: the document changed after its digest was computed (digests
// are computed after the commit, off the write path); recomputed at start.
const V2_SCHEMA = `
ALTER TABLE docs ADD COLUMN digest_stale INTEGER NOT NULL DEFAULT 0;
CREATE INDEX docs_stale ON docs (doc) WHERE digest_stale = 1;

CREATE TABLE conflicts (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  doc         TEXT    NOT NULL,
  at          INTEGER NOT NULL,
  winner      TEXT    NOT NULL,
  kept_digest BLOB    NOT NULL,
  lost_digest BLOB    NOT NULL,
  lost_state  BLOB    NOT NULL
);
CREATE INDEX conflicts_by_doc ON conflicts (doc, id);

CREATE TABLE quarantine (
  id     INTEGER PRIMARY KEY AUTOINCREMENT,
  at     INTEGER NOT NULL,
  peer   TEXT    NOT NULL,
  origin TEXT    NOT NULL,
  seq    INTEGER NOT NULL,
  doc    TEXT    NOT NULL,
  ts     INTEGER NOT NULL,
  data   BLOB    NOT NULL,
  reason TEXT    NOT NULL,
  UNIQUE (origin, seq)
);
`;

// Per-document questions about each origin (its newest entry, how many a
// peer lacks) are index seeks: through (doc, lsn) they read every entry of
// the document, and a hot document keeps millions while a peer is down.
const V3_SCHEMA = `
CREATE INDEX log_by_doc_origin ON log (doc, origin, seq);
`;

// Quarantined entries are kept for the newest few per peer (see
// MAX_QUARANTINED_PER_PEER); how many a peer ever sent is counted apart.
// The bytes of lost states kept are counted in meta, so that commits hold
// them to MAX_CONFLICT_BYTES without reading the table.
const V5_SCHEMA = `
INSERT INTO meta (key, value) SELECT 'conflict_bytes', coalesce(sum(length(lost_state)), 0) FROM conflicts;
CREATE TABLE quarantine_counts (
  peer TEXT    PRIMARY KEY,
  n    INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO quarantine_counts (peer, n) SELECT peer, count(*) FROM quarantine GROUP BY peer;
CREATE INDEX quarantine_by_peer ON quarantine (peer, id);
`;

// Anti-entropy lists the documents of the buckets whose digests differ.
// Without the bucket beside each document that meant reading every
// document's summary and hashing its key, on both ends of every round
// where any bucket differed: work that grew with the documents held, not
// with the differences (hundreds of ms of a region's CPU per round at
// 110,000 documents). Documents stored before get theirs here (4.7 s for
// a million on a 2-core machine).
function addBuckets(db: Database.Database): void {
  db.exec('ALTER TABLE docs ADD COLUMN bucket INTEGER NOT NULL DEFAULT -1');
  // A function of this connection only: nothing stored refers to it.
  db.function('meridian_bucket_v4', { deterministic: true }, (doc: unknown) => bucketOf(String(doc)));
  db.exec('UPDATE docs SET bucket = meridian_bucket_v4(doc)');
  db.exec('CREATE INDEX docs_by_bucket ON docs (bucket, doc)');
}

/** All migrations, oldest first; `version` is the schema version after it ran. */
export const MIGRATIONS: readonly Migration[] = [
  { version: 1, description: 'log, docs, snapshots, progress, peer acks', up: (db) => db.exec(V1_SCHEMA) },
  { version: 2, description: 'stale digests, conflicts and quarantined entries', up: (db) => db.exec(V2_SCHEMA) },
  { version: 3, description: 'log index by document and origin', up: (db) => db.exec(V3_SCHEMA) },
  { version: 4, description: 'the anti-entropy bucket of each document', up: addBuckets },
  { version: 5, description: 'quarantined entries counted per peer, the newest kept; bytes of conflict records counted', up: (db) => db.exec(V5_SCHEMA) },
];

/** The schema version this code writes and understands. */
export const SCHEMA_VERSION = MIGRATIONS.length === 0 ? 0 : MIGRATIONS[MIGRATIONS.length - 1]!.version;

function tableNames(db: Database.Database): string[] {
  const rows = db
    .prepare<[], { name: string }>("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    .all();
  return rows.map((r) => r.name);
}

const SET_VERSION =
  "INSERT INTO meta (key, value) VALUES ('schema_version', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value";

/** The stored schema version; 0 for an empty database. */
export function readSchemaVersion(db: Database.Database, path: string): number {
  const tables = tableNames(db);
  if (!tables.includes('meta')) {
    if (tables.length === 0) return 0;
    throw new StoreOpenError(
      'not_meridian',
      `${path} holds tables (${tables.slice(0, 5).join(', ')}) but no Meridian metadata; ` +
        'point the region at its own data directory.',
    );
  }
  const row = db.prepare<[], { value: string }>("SELECT value FROM meta WHERE key = 'schema_version'").get();
  const version = row === undefined ? NaN : Number(row.value);
  if (!Number.isInteger(version) || version < 1) {
    throw new StoreOpenError('not_meridian', `${path} has no valid schema_version in its meta table.`);
  }
  return version;
}

/**
 * Brings the database to {@link SCHEMA_VERSION}. Reads the version inside the
 * same write transaction that migrates, so two processes opening one file
 * cannot both run a migration. Refuses a database written by newer code.
 */
export function migrate(db: Database.Database, path: string): { from: number; to: number } {
  const run = db.transaction(() => {
    const from = readSchemaVersion(db, path);
    if (from > SCHEMA_VERSION) {
      throw new StoreOpenError(
        'schema_too_new',
        `${path} has schema version ${from}, but this build of Meridian knows versions up to ${SCHEMA_VERSION}. ` +
          'It was written by a newer release: run that release (or newer) on this data directory.',
      );
    }
    for (const migration of MIGRATIONS) {
      if (migration.version <= from) continue;
      migration.up(db);
      // Prepared here, not before the loop: the first migration creates meta.
      db.prepare<[string]>(SET_VERSION).run(String(migration.version));
    }
    return { from, to: Math.max(from, SCHEMA_VERSION) };
  });
  return run.immediate();
}
