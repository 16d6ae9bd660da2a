import * as Y from 'yjs';
import type { DocKey } from '../ids.js';
import type { Snapshot } from '../storage/types.js';

/** A document held in memory, with what is needed to persist it later. */
export interface LiveDoc {
  ydoc: Y.Doc;
  /** Highest local log lsn whose update this in-memory doc contains. */
  lastLsn: number;
  /** The digest last stored for this document (null when never stored). */
  digest: Uint8Array | null;
  /**
   * At least the size of the document's encoded state, bytes: measured, then
   * raised by each update applied since; null until a local write measures it.
   */
  sizeBound: number | null;
}

/**
 * A bounded least-recently-used set of live documents. Eviction can be held
 * back while a group commit is in progress: a document changed in memory but
 * not yet committed must never be dropped and reloaded from disk, or the
 * reloaded copy would reuse Yjs clocks that the dropped copy already spent.
 */
export class DocCache {
  private readonly docs = new Map<string, LiveDoc>();
  private held = 0;

  constructor(private readonly capacity: number) {}

  get size(): number {
    return this.docs.size;
  }

  get(key: string): LiveDoc | undefined {
    const live = this.docs.get(key);
    if (live) {
      // Re-insert to mark as most recently used (Map keeps insertion order).
      this.docs.delete(key);
      this.docs.set(key, live);
    }
    return live;
  }

  peek(key: string): LiveDoc | undefined {
    return this.docs.get(key);
  }

  set(key: string, live: LiveDoc): void {
    this.docs.delete(key);
    this.docs.set(key, live);
    this.trim();
  }

  /** Drops a document, e.g. after a failed commit left it ahead of the disk. */
  evict(key: string): void {
    const live = this.docs.get(key);
    if (!live) return;
    this.docs.delete(key);
    live.ydoc.destroy();
  }

  /**
   * Suspends eviction until the returned function is called (once), then
   * trims back to capacity: for as long as a group commit is staged or in flight.
   */
  hold(): () => void {
    this.held++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.held--;
      this.trim();
    };
  }

  clear(): void {
    for (const key of [...this.docs.keys()]) this.evict(key);
  }

  private trim(): void {
    if (this.held > 0) return;
    while (this.docs.size > this.capacity) {
      const oldest = this.docs.keys().next();
      if (oldest.done) return;
      this.evict(oldest.value);
    }
  }
}

/** The compacted form of a live document. */
export function snapshotOf(doc: DocKey, live: LiveDoc): Snapshot {
  const { pendingStructs, pendingDs } = live.ydoc.store;
  const parts = [pendingStructs?.update, pendingDs ?? undefined].filter((u): u is Uint8Array => !!u);
  return {
    doc,
    state: Y.encodeStateAsUpdate(live.ydoc),
    pending: parts.length > 0 ? Y.mergeUpdates(parts) : null,
    uptoLsn: live.lastLsn,
  };
}
