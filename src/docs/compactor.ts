/**
 * Background compaction: folds a document's log entries into its snapshot,
 * so that loading it reads one blob and the log can be garbage-collected.
 * Runs in small slices between requests; each slice is synchronous, so it
 * never sees a document between its in-memory change and its commit.
 */
import type { Logger } from 'pino';
import type { DocKey } from '../ids.js';
import type { Store } from '../storage/types.js';
import type { LiveDoc } from './cache.js';
import { snapshotOf } from './cache.js';

export interface CompactorOptions {
  store: Store;
  logger: Logger;
  everyMs: number;
  /** Documents compacted per slice. */
  batch?: number;
  afterEntries: number;
  /** The cached live doc, if any (it is newer than anything on disk). */
  live: (doc: DocKey) => LiveDoc | undefined;
  /** Loads a doc from disk without caching it. */
  load: (doc: DocKey) => LiveDoc | null;
}

/** Starts compacting in the background; returns a function that stops it. */
export function startCompactor(options: CompactorOptions): () => void {
  const { store, logger, batch = 64 } = options;
  if (options.everyMs <= 0) return () => undefined;
  let tick = 0;
  const timer = setInterval(() => {
    // Mostly compact busy documents; now and then also the quiet ones, whose
    // few entries would otherwise keep the log from being collected.
    const minEntries = ++tick % 10 === 0 ? 1 : Math.max(1, options.afterEntries);
    try {
      // One transaction for the slice: one fsync, not one per document.
      const snapshots = [];
      for (const doc of store.docsNeedingCompaction(minEntries, batch)) {
        const cached = options.live(doc);
        const live = cached ?? options.load(doc);
        if (!live) continue;
        snapshots.push(snapshotOf(doc, live));
        if (!cached) live.ydoc.destroy();
      }
      store.saveSnapshots(snapshots);
    } catch (err) {
      logger.error({ err }, 'compaction failed; will retry');
    }
  }, options.everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
