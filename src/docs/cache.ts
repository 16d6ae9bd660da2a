import * as Y from 'yjs';
import type { DocKey } from '../ids.js';
import type { Snapshot } from '../storage/types.js';
import { appliedWithinBound, loadDocOrNull, mayCollide, replayValidated, structsHeld } from '../crdt/index.js';

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
  /** The size last measured (see {@link sizeBound}), while no update from elsewhere replaced the document; see size-guard.ts. */
  measuredSize?: number;
  /** Bytes of the parts it was built from (stored state and entries), while {@link sizeBound} is unknown: for the cache's weight. */
  builtFrom?: number;
}

/**
 * Puts `ydoc` in place of the live document's (built anew or replaced; the
 * old one is destroyed): its size is measured again by the next write.
 */
export function swapYDoc(live: LiveDoc, ydoc: Y.Doc): void {
  live.ydoc.destroy();
  live.ydoc = ydoc;
  live.sizeBound = null;
  live.measuredSize = undefined;
}

/** A document the cache holds encoded: its committed state, as loading it from the store would give it. */
interface EncodedDoc {
  state: Uint8Array;
  /** Some of it waits for missing dependencies. */
  holdsPending: boolean;
  /**
   * Committed updates from peers not yet applied to `state` (see
   * {@link DocCache.appendCommitted}): applied when the document is decoded.
   */
  later: Uint8Array[];
  laterBytes: number;
  clientId: number;
  lastLsn: number;
  /** What the region's digest index holds for it (see LiveDoc.digest); kept by {@link DocCache.noteDigest}. */
  digest: Uint8Array | null;
  /** As LiveDoc's: the state's own size when encoded, raised by `later`. */
  sizeBound: number;
  /** When it was held encoded (performance.now()): committed, or the least recently used of the decoded ones. */
  encodedAt: number;
}

/** Most committed updates held beside one document's encoded state (see {@link DocCache.appendCommitted}). */
const MAX_LATER_UPDATES = 64;
/** Most bytes of them per document: larger entries are applied, as their documents grow by about as much. */
const MAX_LATER_DOC_BYTES = 64 * 1024;
/**
 * Most bytes of them over all documents. Unlike a document's state (where
 * Yjs drops what is overwritten), held updates keep every overwritten value.
 */
const MAX_LATER_BYTES = 32 * 1024 * 1024;

/**
 * Heap a decoded document takes per struct, beyond its content: the Item,
 * its ids and its entry in its parent's map. Measured: 566 bytes per key of
 * a map of 400,000 numbers (8 MB encoded, 226 MB decoded).
 */
const HEAP_PER_STRUCT = 600;
/** Heap per byte of encoded state, for content (strings not in Latin-1 take two bytes a character). */
const HEAP_PER_BYTE = 2;

/** About the heap `live` takes decoded: its structs, and its content as the bytes it was measured or built at. */
function decodedWeight(live: LiveDoc): number {
  return HEAP_PER_STRUCT * structsHeld(live.ydoc) + HEAP_PER_BYTE * (live.sizeBound ?? live.builtFrom ?? 0);
}

/**
 * A bounded least-recently-used set of documents in memory: the most
 * recently used decoded (live Yjs documents), the rest as their encoded
 * state. A decoded document takes about 3 KiB of heap in many small objects
 * even when it holds one field; every collection marks them all, and after
 * a heal, when thousands of documents change at once, those collections are
 * what a region's own clients wait for. Encoded, the same document is one
 * small byte array, and decoding it again costs less than a read of the
 * store (figures: README, "Storage and durability").
 *
 * Counts alone do not bound its memory: a document of many small map keys
 * takes 16 to 29 times its encoded size decoded, so twenty documents at
 * `limits.maxDocumentBytes`, written or only read, would take more heap than Node
 * gives a process (4.3 GB here). So the cache also holds at most `maxBytes`: decoded
 * documents weighed by {@link decodedWeight} (each time a commit changes
 * them), encoded ones by their bytes; the most recently used decoded
 * document stays whatever it weighs.
 *
 * Eviction can be held back while a group commit is in progress: a document
 * changed in memory but not yet committed must never be dropped and reloaded
 * (from disk or from its encoded form), or the reloaded copy would reuse Yjs
 * clocks that the dropped copy already spent. A document is encoded only
 * then, so its encoded form is what the store holds.
 */
export class DocCache {
  private readonly docs = new Map<string, LiveDoc>();
  private readonly encoded = new Map<string, EncodedDoc>();
  private readonly oldestDecoded = new OldestFirst(this.docs);
  private readonly oldestEncoded = new OldestFirst(this.encoded);
  private held = 0;
  /** Bytes of committed updates held beside encoded states. */
  private laterBytes = 0;
  /** What each decoded document weighs (see {@link decodedWeight}), and their sum. */
  private readonly weights = new Map<string, number>();
  private decodedBytes = 0;
  /** Bytes of encoded documents, states and updates held beside them. */
  private encodedBytes = 0;
  /** Documents decoded again from the form held encoded, since the cache was made. */
  decodedAgain = 0;

  /**
   * @param capacity most documents held, decoded or encoded
   * @param decodedCapacity most of them held decoded
   * @param maxBytes most heap they take, about (see {@link decodedWeight})
   */
  constructor(
    private readonly capacity: number,
    private readonly decodedCapacity = capacity,
    private readonly maxBytes = Infinity,
  ) {}

  /** Documents held, decoded or encoded. */
  get size(): number {
    return this.docs.size + this.encoded.size;
  }

  get decodedSize(): number {
    return this.docs.size;
  }

  /** About the heap the documents held take (see {@link maxBytes}). */
  get bytes(): number {
    return this.decodedBytes + this.encodedBytes;
  }

  /** Whether some documents are held encoded (decoded ones fewer than all). */
  get holdsEncoded(): boolean {
    return this.capacity > this.decodedCapacity;
  }

  /** The decoded document; undefined when it is not held decoded (see {@link revive}). */
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

  /** Whether the document is held decoded, or was held encoded less than `withinMs` ago. */
  recentlyUsed(key: string, withinMs: number): boolean {
    if (this.docs.has(key)) return true;
    const held = this.encoded.get(key);
    return held !== undefined && performance.now() - held.encodedAt < withinMs;
  }

  /** A document held encoded, decoded again and held decoded from now on; undefined when it is not held encoded. */
  revive(key: string): LiveDoc | undefined {
    const live = this.copy(key);
    if (live) this.set(key, live);
    return live;
  }

  /** The updates a document held encoded loads from (its state, then those held beside it); undefined when not held encoded. */
  encodedUpdates(key: string): Uint8Array[] | undefined {
    const held = this.encoded.get(key);
    return held ? [held.state, ...held.later] : undefined;
  }

  /** As {@link revive}, but a copy the caller destroys: the document stays held encoded. */
  copy(key: string): LiveDoc | undefined {
    const held = this.encoded.get(key);
    if (!held) return undefined;
    this.decodedAgain++;
    const parts = [held.state, ...held.later];
    let ydoc: Y.Doc | null;
    try {
      // Merged, the state may load far more slowly than the store's entries in the order taken (crdt/load.ts).
      ydoc = loadDocOrNull(parts, held.clientId);
    } catch {
      // An update held beside the state that Yjs refuses: loaded from the store instead, which skips it and repairs the document.
      ydoc = null;
    }
    if (ydoc === null) {
      this.forget(key);
      return undefined;
    }
    return { ydoc, lastLsn: held.lastLsn, digest: held.digest, sizeBound: held.sizeBound, builtFrom: held.sizeBound };
  }

  /**
   * Whether `updates` more committed updates of `bytes` in all (and
   * `elsewhere` bytes of other documents', not yet committed) may be held
   * beside the document's encoded state (see {@link appendCommitted}): not
   * when it is not held encoded, or holds structs waiting for missing
   * dependencies (it is decoded to take more, so that Yjs sees them
   * together), or past the bounds on what is held, or when they could
   * take it past `maxSize` (applied instead, where the document is measured).
   */
  mayHoldLater(key: string, updates: number, bytes: number, elsewhere: number, maxSize: number): boolean {
    const held = this.encoded.get(key);
    return held !== undefined && !held.holdsPending && held.later.length + updates <= MAX_LATER_UPDATES
      && held.laterBytes + bytes <= MAX_LATER_DOC_BYTES && this.laterBytes + elsewhere + bytes <= MAX_LATER_BYTES
      && held.sizeBound + bytes <= maxSize;
  }

  /** The digest the region's index holds for a document held encoded (see LiveDoc.digest). */
  encodedDigest(key: string): Uint8Array | null | undefined {
    return this.encoded.get(key)?.digest;
  }

  /**
   * Committed updates of a document, held beside its encoded state instead
   * of applied to a decoded one: a region catching up with its peers takes
   * each of thousands of documents a few times, and builds each once, when
   * it is read, changed otherwise or digested. A document held decoded
   * meanwhile (read while the commit was on its way) takes them now; one
   * no longer held takes nothing: the store has them.
   */
  appendCommitted(key: string, updates: readonly Uint8Array[], lastLsn: number, bytes: number): void {
    const held = this.encoded.get(key);
    if (held !== undefined) {
      // Copied out of the frame they came in, which a view would keep whole.
      for (const u of updates) held.later.push(u.byteLength === u.buffer.byteLength ? u : u.slice());
      held.laterBytes += bytes;
      this.laterBytes += bytes;
      this.encodedBytes += bytes;
      held.lastLsn = Math.max(held.lastLsn, lastLsn);
      held.sizeBound += bytes;
      return;
    }
    const live = this.docs.get(key);
    if (live === undefined) return;
    // Loaded from the store instead, which reloads a doc they spliced (see crdt/load.ts).
    if (mayCollide(live.ydoc, updates)) {
      this.evict(key);
      return;
    }
    let applied = false;
    try {
      applied = appliedWithinBound(live.ydoc, updates, () => replayValidated(live.ydoc, updates, 'load'), false);
    } catch {
      // Failed: as when stopped, below.
    }
    if (!applied) {
      // Stopped (see crdt/load.ts) or failed, it is loaded again from the store, which checks each part.
      this.evict(key);
      return;
    }
    live.lastLsn = Math.max(live.lastLsn, lastLsn);
    if (live.sizeBound !== null) live.sizeBound += bytes;
    else if (live.builtFrom !== undefined) live.builtFrom += bytes;
    this.weigh(key, live);
    this.trim();
  }

  /** Holds `live` decoded, as the most recently used; weighed again when it is held already (a commit changed it). */
  set(key: string, live: LiveDoc): void {
    this.forget(key);
    const before = this.docs.get(key);
    if (before !== undefined && before !== live) this.unweigh(key);
    this.docs.delete(key);
    this.docs.set(key, live);
    this.weigh(key, live);
    this.trim();
  }

  /**
   * Holds a committed document encoded (as the most recently used) and
   * destroys its Yjs document; held decoded (as {@link set}) when the cache
   * holds decoded documents only. `encoded`: its state as just encoded for
   * a snapshot, if it was.
   */
  keepEncoded(key: string, live: LiveDoc, encoded?: EncodedState): void {
    if (!this.holdsEncoded) return this.set(key, live);
    const decoded = this.docs.get(key);
    this.docs.delete(key);
    this.unweigh(key);
    if (decoded !== undefined && decoded !== live) decoded.ydoc.destroy();
    this.forget(key);
    this.holdEncoded(key, encode(live, encoded));
    live.ydoc.destroy();
    this.trim();
  }

  /**
   * A digest was computed for `key` (from a copy, when it is held encoded):
   * what the region's index now holds for it, as a decoded document's
   * `digest` is set in place.
   */
  noteDigest(key: string, digest: Uint8Array): void {
    const held = this.encoded.get(key);
    if (held) held.digest = digest;
  }

  /** Drops a document, e.g. after a failed commit left it ahead of the disk. */
  evict(key: string): void {
    this.forget(key);
    const live = this.docs.get(key);
    if (!live) return;
    this.docs.delete(key);
    this.unweigh(key);
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
    this.encoded.clear();
    this.laterBytes = 0;
    this.encodedBytes = 0;
    for (const key of [...this.docs.keys()]) this.evict(key);
  }

  private trim(): void {
    if (this.held > 0) return;
    const decoded = Math.min(this.decodedCapacity, this.capacity);
    while (this.docs.size > decoded || (this.decodedBytes > this.maxBytes && this.docs.size > 1)) {
      const oldest = this.oldestDecoded.take();
      if (oldest === undefined) return;
      const live = this.docs.get(oldest)!;
      this.docs.delete(oldest);
      this.unweigh(oldest);
      if (this.capacity > decoded) this.holdEncoded(oldest, encode(live));
      live.ydoc.destroy();
    }
    while (this.encoded.size > 0 && (this.encoded.size > this.capacity - this.docs.size || this.bytes > this.maxBytes)) {
      const oldest = this.oldestEncoded.take();
      if (oldest === undefined) return;
      this.forget(oldest);
    }
  }

  private weigh(key: string, live: LiveDoc): void {
    const weight = decodedWeight(live);
    this.decodedBytes += weight - (this.weights.get(key) ?? 0);
    this.weights.set(key, weight);
  }

  private unweigh(key: string): void {
    this.decodedBytes -= this.weights.get(key) ?? 0;
    this.weights.delete(key);
  }

  private holdEncoded(key: string, held: EncodedDoc): void {
    this.encoded.set(key, held);
    this.encodedBytes += held.state.byteLength + held.laterBytes;
  }

  /** Drops a document held encoded, with what is held beside it. */
  private forget(key: string): void {
    const held = this.encoded.get(key);
    if (held === undefined) return;
    this.laterBytes -= held.laterBytes;
    this.encodedBytes -= held.state.byteLength + held.laterBytes;
    this.encoded.delete(key);
  }
}

/**
 * The oldest key of a Map kept in least-recently-used order, for a caller
 * that deletes each key it takes. `map.keys().next()` starts from the
 * table's first slot and steps over every entry deleted since the table was
 * last rebuilt: thousands once the oldest documents are evicted one by one
 * (5.7 µs per eviction with 10,000 held; 4 % of a rebuilding region's
 * main thread in a CPU profile). An iterator kept between calls resumes where it stopped (0.15 µs);
 * entries set after it was made, or set again, are still visited in order.
 */
class OldestFirst<K> {
  private keys: IterableIterator<K> | null = null;

  constructor(private readonly map: Map<K, unknown>) {}

  take(): K | undefined {
    let next = this.keys?.next();
    if (next === undefined || next.done === true) {
      // An exhausted iterator stays exhausted: start again.
      this.keys = this.map.keys();
      next = this.keys.next();
    }
    return next.done === true ? undefined : next.value;
  }
}

function encode(live: LiveDoc, encoded = encodedState(live)): EncodedDoc {
  const { state, holdsPending } = encoded;
  return { state, holdsPending, later: [], laterBytes: 0, clientId: live.ydoc.clientID, lastLsn: live.lastLsn, digest: live.digest, sizeBound: state.byteLength, encodedAt: performance.now() };
}

/** A document's state, and whether some of it waits for missing dependencies. */
export interface EncodedState {
  /**
   * All of it: `Y.encodeStateAsUpdate` appends what waits, converted from
   * the v2 encoding Yjs keeps it in. (Kept apart and read as v1, those
   * bytes misread: an editor document's waiting structs threw or decoded
   * as other deletions.)
   */
  state: Uint8Array;
  holdsPending: boolean;
}

export function encodedState(live: LiveDoc): EncodedState {
  const { pendingStructs, pendingDs } = live.ydoc.store;
  return { state: Y.encodeStateAsUpdate(live.ydoc), holdsPending: pendingStructs !== null || pendingDs !== null };
}

/** The compacted form of a live document, and its encoded state. */
export function snapshotOf(doc: DocKey, live: LiveDoc): Snapshot & EncodedState {
  return { doc, ...encodedState(live), uptoLsn: live.lastLsn };
}
