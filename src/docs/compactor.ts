/**
 * Background compaction: folds a document's log entries into its snapshot,
 * so that loading it reads one blob and the log can be garbage-collected.
 * Runs in small slices between requests. A slice encodes the snapshots here
 * and hands them to the store as one batch, which an engine with a writer
 * thread writes there: the event loop never waits for that disk write.
 * Documents whose group commit is still in flight are left for a later
 * slice, so a snapshot never holds a change that is not yet durable.
 *
 * Encoding a snapshot costs as much as the document is large (60-75 ms for
 * 6 MB, on the event loop), so a large document waits for log entries in
 * proportion to its size, one per {@link BYTES_PER_ENTRY} bytes of its
 * snapshot, or until they hold a quarter of its bytes: written without
 * pause, it was encoded at every tick and held every request of the region
 * for that long each second. Loading it replays that many more entries at
 * most, about as long as decoding the snapshot itself takes.
 */
import type { Logger } from 'pino';
import type { DocKey } from '../ids.js';
import type { Maintenance, Snapshot } from '../storage/types.js';
import type { LiveDoc } from './cache.js';
import { snapshotOf } from './cache.js';
import { loadsWithinBound } from '../crdt/index.js';
import type { BackgroundPacer } from '../pacer.js';

/** Bytes of a document's snapshot per log entry it waits for before it is compacted again. */
export const BYTES_PER_ENTRY = 4096;
/**
 * How long a document that could not be compacted is left out, ms. The
 * busiest documents come first in every slice: one that fails each time
 * would otherwise fail every slice, and the log, which is collected only
 * below snapshots, would grow for good.
 */
const SET_ASIDE_MS = 10 * 60_000;

export interface CompactorOptions {
  store: Pick<Maintenance, 'docsNeedingCompaction' | 'saveSnapshots'>;
  logger: Logger;
  everyMs: number;
  /** Documents compacted per slice. */
  batch?: number;
  afterEntries: number;
  /** The cached live doc, if any (it is newer than anything on disk). */
  live: (doc: DocKey) => LiveDoc | undefined;
  /** Loads a doc from disk without caching it. */
  load: (doc: DocKey) => LiveDoc | null;
  /** Whether the doc has changes in a commit that is not yet durable. */
  busy: (doc: DocKey) => boolean;
  /** While it holds background work back (clients write, a catch-up runs), a tick is skipped. */
  pacer?: BackgroundPacer;
  /** A document's snapshot was not written: its merged state loads beyond the bound (see {@link slice}). */
  onWithheld?: () => void;
}

/**
 * Longest a slice holds the event loop, ms, past its first document: the
 * documents listed for it and left are taken by the next slice, which
 * follows once this one is written (and the pacer allows). A slice of 64
 * quiet documents, each loaded and encoded, held it 27 ms at once.
 */
const SLICE_MS = 4;

/** Starts compacting in the background; returns a function that stops it. */
export function startCompactor(options: CompactorOptions): () => void {
  const { logger } = options;
  if (options.everyMs <= 0) return () => undefined;
  let tick = 0;
  const setAside = new Map<DocKey, number>();
  /** The slice being written: the next one starts only after it, so slices never pile up. */
  let writing = false;
  /** Documents listed for a slice that ran out of time, taken up again at once. */
  let listed: DocKey[] = [];
  /** The slice taking it up is on its way. */
  let following = false;
  let stopped = false;
  const failed = (err: unknown): void => logger.error({ err }, 'compaction failed; will retry');
  const goOn = (): void => {
    if (stopped || listed.length === 0 || following) return;
    following = true;
    setTimeout(() => {
      following = false;
      if (!writing && !stopped) run();
    }, options.pacer?.wait() ?? 0).unref();
  };
  const run = (): void => {
    const started = performance.now();
    try {
      // Mostly compact busy documents; now and then also the quiet ones, whose
      // few entries would otherwise keep the log from being collected.
      if (listed.length === 0) {
        const minEntries = ++tick % 10 === 0 ? 1 : Math.max(1, options.afterEntries);
        listed = [...options.store.docsNeedingCompaction(minEntries, options.batch ?? 64, BYTES_PER_ENTRY)];
      }
      const snapshots = slice(options, listed, setAside, started + SLICE_MS);
      options.pacer?.spent(performance.now() - started);
      const written = options.store.saveSnapshots(snapshots);
      if (written === undefined) return goOn();
      writing = true;
      written.then(() => {
        writing = false;
        goOn();
      }, (err: unknown) => {
        writing = false;
        listed = [];
        failed(err);
      });
    } catch (err) {
      listed = [];
      failed(err);
    }
  };
  const timer = setInterval(() => {
    if (!writing && !following && (options.pacer?.wait() ?? 0) === 0) run();
  }, options.everyMs);
  timer.unref();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}

/**
 * Snapshots of the documents most in need of compaction, skipping those
 * with a commit in flight and those set aside (`setAside`: until when) after
 * they failed. A snapshot is one update, every item of which Yjs places
 * against all the others when it is loaded; updates can be made (each
 * admitted cheaply, in the order a region took them) whose merge takes N x N
 * steps to load for N items. A document whose snapshot would not load within
 * the bound a load applies (crdt/load.ts) keeps its log entries instead, in
 * the order taken, and is set aside like one that failed. The trial costs a
 * load, bounded, and only documents of more structs than an item could scan
 * in the least bound need it.
 */
function slice(options: CompactorOptions, listed: DocKey[], setAside: Map<DocKey, number>, deadline: number): Snapshot[] {
  const snapshots: Snapshot[] = [];
  const now = Date.now();
  for (const [doc, until] of setAside) if (until <= now) setAside.delete(doc);
  let tried = false;
  while (listed.length > 0) {
    if (tried && performance.now() > deadline) break;
    const doc = listed.shift()!;
    if (options.busy(doc) || setAside.has(doc)) continue;
    tried = true;
    const cached = options.live(doc);
    let live: LiveDoc | null | undefined;
    try {
      live = cached ?? options.load(doc);
      if (!live) continue;
      const snapshot = snapshotOf(doc, live);
      if (loadsWithinBound(live.ydoc, snapshot.state)) {
        snapshots.push(snapshot);
        continue;
      }
      setAside.set(doc, now + SET_ASIDE_MS);
      options.onWithheld?.();
      options.logger.warn({ doc, retryInMs: SET_ASIDE_MS }, 'a document\'s merged state would load beyond the bound on placement work, unlike its updates in the order taken: kept as they are, not compacted');
    } catch (err) {
      setAside.set(doc, now + SET_ASIDE_MS);
      options.logger.error({ err, doc, retryInMs: SET_ASIDE_MS }, 'could not compact a document; the others go on, it is tried again later');
    } finally {
      if (!cached) live?.ydoc.destroy();
    }
  }
  return snapshots;
}
