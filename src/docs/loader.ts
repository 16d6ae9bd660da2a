/**
 * Rebuilding a live document from what the store holds.
 */
import * as Y from 'yjs';
import type { DocKey, WriterId } from '../ids.js';
import { CostlyLoad, costlyLoad, freshRegionClientId, loadDoc, mayCollide, mergeMany, stableClientId } from '../crdt/index.js';
import type { DocumentStates, Maintenance } from '../storage/types.js';
import type { LiveDoc } from './cache.js';
import { setNewest } from '../newest.js';

/**
 * The updates Yjs takes, each applied on top of those taken before it, to
 * one document rebuilt only after a refusal (a failed apply may leave it
 * half-changed). Rebuilt for every part, a large document of thousands of
 * entries held the event loop for minutes.
 */
function keptOneByOne(updates: readonly Uint8Array[]): Uint8Array[] {
  const kept: Uint8Array[] = [];
  let scratch = loadDoc([], 0);
  try {
    for (const u of updates) {
      try {
        Y.applyUpdate(scratch, u);
        kept.push(u);
      } catch {
        scratch.destroy();
        scratch = loadDoc(kept, 0);
      }
    }
    return kept;
  } finally {
    scratch.destroy();
  }
}

/**
 * As `loadDoc`, skipping updates Yjs fails to apply. Each part passed
 * its checks when it was taken, but an entry held beside a document's state
 * is applied only when the document is built (cache.ts), and one Yjs still
 * refused would otherwise leave the document unreadable for good. Skipped
 * parts count as corrupt: the document is repaired from peers.
 */
export function yDocSkipping(updates: readonly Uint8Array[], clientId: number): { ydoc: Y.Doc; skipped: number } {
  try {
    return { ydoc: loadDoc(updates, clientId), skipped: 0 };
  } catch (err) {
    // Not a part Yjs refuses: tried one by one, the parts would be placed uncounted.
    if (err instanceof CostlyLoad) throw err;
    // One at a time, below.
  }
  try {
    const kept = keptOneByOne(updates);
    return { ydoc: loadDoc(kept, clientId), skipped: updates.length - kept.length };
  } catch (err) {
    // Not built within the cap is not a part to skip as corrupt.
    if (err instanceof CostlyLoad) throw err;
    // Loading parts together refused what applying them one by one took (see crdt/load.ts): each tried as a whole load.
  }
  const kept: Uint8Array[] = [];
  for (const u of updates) {
    try {
      loadDoc([...kept, u], 0).destroy();
      kept.push(u);
    } catch (err) {
      if (err instanceof CostlyLoad) throw err;
      // Skipped.
    }
  }
  return { ydoc: loadDoc(kept, clientId), skipped: updates.length - kept.length };
}

export interface LoadedDoc {
  live: LiveDoc;
  /** Stored entries or snapshot that failed their checksum and were skipped. */
  corrupt: number;
}

/**
 * Documents whose stored updates were not built within the bound on
 * placement work (crdt/load.ts CostlyLoad), with the last lsn they held
 * then: refused again at once until they hold more, as each try costs up
 * to the bound (a second or so) and nothing but a new entry changes the
 * outcome. The most recent {@link MAX_UNBUILT} are kept.
 */
export class Unbuilt {
  private readonly at = new Map<DocKey, number>();

  has(doc: DocKey, lastLsn: number): boolean {
    return this.at.get(doc) === lastLsn;
  }

  note(doc: DocKey, lastLsn: number): void {
    setNewest(this.at, doc, lastLsn, MAX_UNBUILT);
  }
}

const MAX_UNBUILT = 16_384;

/**
 * Loads a document from its snapshot and later log entries, and `later`
 * updates not stored yet (of the batch being staged); null if never stored
 * and none are given. `unbuilt`: documents refused at once (see {@link Unbuilt}).
 */
export function loadLiveDoc(
  store: Pick<DocumentStates, 'summary' | 'loadDoc'> & Pick<Maintenance, 'markCorrupt'>,
  writer: WriterId,
  doc: DocKey,
  later: readonly Uint8Array[] = [],
  unbuilt?: Unbuilt,
): LoadedDoc | null {
  // A new document is the common miss: one read tells it.
  const stored = store.loadDoc(doc) ?? (later.length > 0 ? { snapshot: null, snapshotLsn: 0, entries: [], corrupt: 0 } : null);
  if (!stored) return null;
  const storedDigest = store.summary(doc)?.digest ?? null;
  const updates = [stored.snapshot, ...stored.entries.map((e) => e.update), ...later].filter((u): u is Uint8Array => u !== null);
  const lastLsn = stored.entries.reduce((max, e) => Math.max(max, e.lsn), stored.snapshotLsn);
  const alone = later.length === 0 && unbuilt !== undefined;
  if (alone && unbuilt.has(doc, lastLsn)) throw costlyLoad();
  // Our own lost entries may have spent Yjs clocks that peers have seen: a
  // corrupt document is written under a fresh client id until anti-entropy repairs it.
  let built: ReturnType<typeof yDocSkipping>;
  try {
    built = yDocSkipping(updates, stableClientId(writer, doc));
  } catch (err) {
    if (alone && err instanceof CostlyLoad) unbuilt.note(doc, lastLsn);
    throw err;
  }
  const corrupt = stored.corrupt + built.skipped;
  const ydoc = built.ydoc;
  if (corrupt > 0) ydoc.clientID = freshRegionClientId();
  let digest = storedDigest;
  if (corrupt > 0) {
    store.markCorrupt(doc);
    digest = new Uint8Array(32);
  }
  const builtFrom = updates.reduce((n, u) => n + u.byteLength, 0);
  return { live: { ydoc, lastLsn, digest, sizeBound: null, builtFrom }, corrupt };
}

/**
 * The updates a document loads from, straight from the store (snapshot,
 * then later entries); null when the store has none, when any fails its
 * checksum, or when it was refused as too costly to build and holds nothing
 * new since (`unbuilt`): loading it live reports or repairs those.
 */
export function storedUpdates(store: Pick<DocumentStates, 'loadDoc'>, doc: DocKey, unbuilt?: Unbuilt): Uint8Array[] | null {
  const stored = store.loadDoc(doc);
  if (!stored || stored.corrupt > 0) return null;
  const lastLsn = stored.entries.reduce((max, e) => Math.max(max, e.lsn), stored.snapshotLsn);
  if (unbuilt?.has(doc, lastLsn) === true) return null;
  const parts = stored.entries.map((e) => e.update);
  if (stored.snapshot) parts.unshift(stored.snapshot);
  return parts.length === 0 ? null : parts;
}

/**
 * A document's whole state as one Yjs update, straight from the store
 * (snapshot and later entries merged, no document built); null when the store
 * has none, or when any part fails its checksum (loading it live marks and
 * repairs that). Parts that collide are built (CostlyLoad past the cap;
 * `unbuilt` as for {@link loadLiveDoc}).
 */
export function storedUpdate(store: Pick<DocumentStates, 'loadDoc'>, doc: DocKey, unbuilt?: Unbuilt): Uint8Array | null {
  const stored = store.loadDoc(doc);
  if (!stored || stored.corrupt > 0) return null;
  const parts: Uint8Array[] = [];
  if (stored.snapshot) parts.push(stored.snapshot);
  for (const e of stored.entries) parts.push(e.update);
  if (parts.length === 0) return null;
  if (parts.length === 1) return parts[0]!;
  // Merging parts that collide would splice them another way than loading does (see crdt/load.ts).
  if (!mayCollide(null, parts)) return mergeMany(parts);
  const lastLsn = stored.entries.reduce((max, e) => Math.max(max, e.lsn), stored.snapshotLsn);
  if (unbuilt?.has(doc, lastLsn) === true) throw costlyLoad();
  let ydoc: Y.Doc;
  try {
    ydoc = loadDoc(parts, 0);
  } catch (err) {
    if (err instanceof CostlyLoad) unbuilt?.note(doc, lastLsn);
    throw err;
  }
  // What waits for missing dependencies included.
  const whole = Y.encodeStateAsUpdate(ydoc);
  ydoc.destroy();
  return whole;
}
