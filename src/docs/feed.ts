/**
 * Change feeds: which documents a feed reports after a commit, and which it
 * must send again when a consumer resumes from a position. Pure over the
 * write path's committed entries, the log and the region's version; the API
 * owns the stream, its bounds and access control.
 *
 * A position is a version vector: "the consumer has seen the state, at or
 * after this version, of every document in scope changed by it". Event ids
 * stay valid positions even when one commit (or one catch-up) yields several
 * events: the event of a document carries the position up to that
 * document's last entry in lsn order, so resuming from any event id sends
 * again exactly the documents that changed after it (per origin, entries
 * are applied in seq order, so an lsn prefix is a version vector).
 */
import type { DocKey, VersionVector } from '../ids.js';
import type { JsonObject } from '../crdt/types.js';
import type { LogEntry, Store } from '../storage/types.js';
import { covers, merged } from '../vv.js';

/** What a feed reports: one document, or every document of a collection. */
export interface FeedScope {
  collection: string;
  /** null for the whole collection. */
  id: string | null;
}

/** A document's value as JSON text, rendered already (off the event loop, for a large document). */
export class RenderedJson {
  constructor(readonly text: string) {}
}

/** A document's value in a change: null when deleted or absent. */
export type FeedValue = JsonObject | RenderedJson | null;

/** One change as a feed reports it. */
export interface FeedChange {
  doc: DocKey;
  /** The position after this change (the event id). */
  position: VersionVector;
  /** The document now; null when deleted or absent. */
  value: FeedValue;
}

/** The slice of the store a feed reads to resume. */
export type FeedLog = Pick<Store, 'readLogPositions' | 'logFloor'>;

/** The entries fields a feed needs; committed entries and log entries both fit. */
export type FeedEntry = Pick<LogEntry, 'origin' | 'seq' | 'doc'>;

/** Most log entries one resume reads; beyond it, the resume is answered by state. */
export const MAX_RESUME_SCAN = 50_000;
const SCAN_PAGE = 1000;

/**
 * Whether `doc` (`collection/id`) is in the feed's scope. Called for every
 * entry of every commit per open feed: compares in place, allocating nothing.
 */
export function inScope(scope: FeedScope, doc: DocKey): boolean {
  const c = scope.collection;
  if (doc.length <= c.length || doc.charCodeAt(c.length) !== SLASH || !doc.startsWith(c)) return false;
  return scope.id === null || (doc.length === c.length + 1 + scope.id.length && doc.endsWith(scope.id));
}

const SLASH = 0x2f;

/**
 * The changes a run of entries (in lsn order) makes to the documents in
 * scope, one per document (the last of its entries decides its place), each
 * with its position: `from` raised by every entry up to its last one. The
 * last change's position is also raised to `after` (the region's version
 * once the entries were applied), which is the feed's position afterwards
 * whether or not any change was in scope.
 */
export function changesOf(
  scope: FeedScope,
  entries: readonly FeedEntry[],
  from: VersionVector,
  after: VersionVector,
  valueOf: (doc: DocKey) => FeedValue,
): { changes: FeedChange[]; position: VersionVector } {
  const { changes, position } = positionsOf(scope, entries, from, after);
  return { changes: changes.map((c) => ({ ...c, value: valueOf(c.doc) })), position };
}

/** As {@link changesOf}, without reading the documents: for a caller that reads each when it sends it. */
export function positionsOf(
  scope: FeedScope,
  entries: readonly FeedEntry[],
  from: VersionVector,
  after: VersionVector,
): { changes: Omit<FeedChange, 'value'>[]; position: VersionVector } {
  const lastIndex = new Map<DocKey, number>();
  entries.forEach((e, i) => {
    if (inScope(scope, e.doc)) lastIndex.set(e.doc, i);
  });
  const ordered = [...lastIndex].sort((a, b) => a[1] - b[1]);
  const changes: Omit<FeedChange, 'value'>[] = [];
  const running: VersionVector = new Map(from);
  let next = 0;
  for (const [doc, upto] of ordered) {
    for (; next <= upto; next++) raise(running, entries[next]!);
    changes.push({ doc, position: new Map(running) });
  }
  const position = merged(from, after);
  const last = changes[changes.length - 1];
  if (last !== undefined) last.position = position;
  return { changes, position };
}

function raise(vv: VersionVector, e: FeedEntry): void {
  if (e.seq > (vv.get(e.origin) ?? 0)) vv.set(e.origin, e.seq);
}

/**
 * Whether the log still holds every entry the region applied beyond
 * `since`: per origin, the log floor (below it, entries were collected or
 * arrived by state) must not be above the first seq `since` lacks.
 */
export function logServes(log: FeedLog, since: VersionVector, version: VersionVector): boolean {
  const floors = log.logFloor();
  for (const [origin, seq] of version) {
    const seen = since.get(origin) ?? 0;
    if (seq <= seen) continue;
    const floor = floors.get(origin);
    if (floor === undefined || floor > seen + 1) return false;
  }
  return true;
}

/**
 * A scan of the log kept across the rounds of one resume: the first round
 * reads the log, later ones only what was appended since. Keeps the
 * position fields of entries not yet covered (no updates).
 */
export class LogScan {
  private pending: (FeedEntry & { lsn: number })[] = [];
  private cursor = 0;
  private scanned = 0;

  constructor(private readonly log: FeedLog) {}

  /**
   * The entries beyond `since` and within `version` (entries a commit in
   * flight already wrote are left for its own announcement), in lsn order;
   * null once the resume has read more than {@link MAX_RESUME_SCAN}.
   */
  async beyond(since: VersionVector, version: VersionVector): Promise<FeedEntry[] | null> {
    for (let first = true; ; first = false) {
      // A long scan reads in pages between which requests, frames and heartbeats are served.
      if (!first) await new Promise<void>((resolve) => setImmediate(resolve));
      // Positions only: the updates, up to a MiB each, are not needed to tell what changed.
      const page = this.log.readLogPositions(this.cursor, SCAN_PAGE);
      this.scanned += page.length;
      if (this.scanned > MAX_RESUME_SCAN) return null;
      for (const e of page) {
        // Commits are one at a time: entries beyond `version` are the log's tail, read again next round.
        if (e.seq > (version.get(e.origin) ?? 0)) break;
        this.pending.push({ origin: e.origin, seq: e.seq, doc: e.doc, lsn: e.lsn });
        this.cursor = e.lsn;
      }
      if (page.length < SCAN_PAGE || this.cursor !== page[page.length - 1]?.lsn) break;
    }
    this.pending = this.pending.filter((e) => e.seq > (since.get(e.origin) ?? 0));
    return this.pending;
  }
}

/**
 * How to resume from `since` at a region whose version is `version`: from
 * the log when it holds everything beyond `since` (the entries, and the
 * documents in scope they touch), or by state (the caller sends every
 * document in scope). `position` is the feed's position once it is sent.
 */
export type ResumePlan =
  | { mode: 'log'; entries: FeedEntry[]; docs: DocKey[]; position: VersionVector }
  | { mode: 'state'; position: VersionVector };

export async function planResume(
  scan: LogScan, log: FeedLog, scope: FeedScope, since: VersionVector, version: VersionVector,
): Promise<ResumePlan> {
  const position = merged(since, version);
  if (covers(since, version)) return { mode: 'log', entries: [], docs: [], position };
  const entries = logServes(log, since, version) ? await scan.beyond(since, version) : null;
  if (entries === null) return { mode: 'state', position };
  const docs = [...new Set(entries.filter((e) => inScope(scope, e.doc)).map((e) => e.doc))];
  return { mode: 'log', entries, docs, position };
}
