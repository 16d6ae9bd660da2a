/**
 * Checks made when a data directory is opened: is the file sound, and does it
 * belong to this region. Each failure explains what the operator should do.
 */
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { regionOfWriter, type RegionId, type WriterId } from '../ids.js';
import { StoreOpenError } from './errors.js';
import { newWriterId } from './writer-id.js';

/** How many quick_check problems are collected; the first few are enough to diagnose. */
const MAX_PROBLEMS = 20;
/** How many of them an error message quotes. */
const QUOTED_PROBLEMS = 5;

/** True for SQLite errors that mean the file itself is damaged or is not a database. */
export function isCorruptionError(err: unknown): boolean {
  if (!(err instanceof Database.SqliteError)) return false;
  return err.code.startsWith('SQLITE_CORRUPT') || err.code === 'SQLITE_NOTADB';
}

/** The error that refuses a damaged database, with the way out. */
export function corruptDatabaseError(path: string, problems: string[], cause?: unknown): StoreOpenError {
  const quoted = problems.slice(0, QUOTED_PROBLEMS).join('; ');
  const more = problems.length > QUOTED_PROBLEMS ? ` (and ${problems.length - QUOTED_PROBLEMS} more)` : '';
  return new StoreOpenError(
    'corrupt',
    `The database ${path} is corrupt: ${quoted}${more}. ` +
      'Restore it from a backup, or move the data directory ' +
      `${dirname(path)} aside and restart the region: it starts on an empty directory ` +
      'and rebuilds itself from its peers.',
    { cause },
  );
}

/** The quick_check statement; prepare it once per connection. */
export const QUICK_CHECK_SQL = `PRAGMA quick_check(${MAX_PROBLEMS})`;

/**
 * Runs `PRAGMA quick_check` (b-tree structure, record formats, free list; it
 * does not compare index content with table content as the much slower
 * integrity_check does). Returns the problems, empty when the file is sound.
 * A check that stops on a corruption error reports that error as its problem.
 */
export function runQuickCheck(statement: Pick<Database.Statement<[], { quick_check: string }>, 'all'>): string[] {
  try {
    const rows = statement.all();
    if (rows.length === 1 && rows[0]?.quick_check === 'ok') return [];
    // One row can hold several lines, led by a "*** in database main ***" banner.
    const lines = rows
      .flatMap((r) => r.quick_check.split('\n'))
      .filter((line) => line.trim() !== '' && !line.startsWith('***'));
    return lines.length > 0 ? lines : rows.map((r) => r.quick_check);
  } catch (err) {
    if (isCorruptionError(err)) return [(err as Error).message];
    throw err;
  }
}

/** {@link runQuickCheck} on a connection, for one-off checks. */
export function quickCheck(db: Database.Database): string[] {
  return runQuickCheck(db.prepare<[], { quick_check: string }>(QUICK_CHECK_SQL));
}

/**
 * Reads this data directory's writer id, creating it on first open. Refuses a
 * directory whose writer id names another region: its log would be replayed
 * under the wrong name.
 */
export function loadWriterId(db: Database.Database, region: RegionId, path: string): WriterId {
  const read = db.prepare<[], { value: string }>("SELECT value FROM meta WHERE key = 'writer'");
  const insert = db.prepare<[string]>("INSERT INTO meta (key, value) VALUES ('writer', ?)");
  const run = db.transaction((): WriterId => {
    const row = read.get();
    if (row === undefined) {
      const writer = newWriterId(region);
      insert.run(writer);
      return writer;
    }
    return row.value as WriterId;
  });
  const writer = run.immediate();
  const owner = regionOfWriter(writer);
  if (owner !== region) {
    throw new StoreOpenError(
      'region_mismatch',
      `The data directory of ${path} belongs to region "${owner}" (writer ${writer}), not to "${region}". ` +
        `Start region "${region}" on its own data directory, or on an empty one to let it rebuild from its peers.`,
    );
  }
  return writer;
}
