/**
 * Resolving a content conflict between two replicas of a document.
 *
 * Yjs assumes one struct id names one content everywhere. Two clients that
 * write under the same Yjs client id break that, and the replicas that saw
 * different versions then hold equal state vectors and delete sets (the same
 * structure) with different content, which no merge repairs. Anti-entropy
 * finds such pairs (their digests differ in content only) and sends one
 * side's whole state to the other, which stages it here.
 *
 * The rule, the same in every region: the state whose content digest sorts
 * first (bytewise) wins. Pairwise replacement under a total order makes
 * every region end with the same winner, whichever regions meet first. The
 * losing state is never merged and never dropped silently: it is kept as a
 * conflict record (storage/conflicts.ts).
 *
 * Both sides compare states as they reload. When the clocks two clients
 * wrote under one id differ in length, the region holding the shorter
 * write takes the rest of the longer one: Yjs skips the clocks it holds and
 * splices the remainder next to its own content, and the live document is
 * then no longer what its own state (as stored, sent, or loaded after a
 * restart) reloads to. Such a document is replaced by its reloaded state
 * before anything is compared (the stored log is unchanged), and the peer
 * that offered its state gets this region's back whatever the outcome, so
 * that it does the same. Resolving against the live document instead,
 * each side would compare something the other never sees, and the two
 * would stay apart for good.
 */
import * as Y from 'yjs';
import type { DocKey, RegionId } from '../ids.js';
import { combineDigest, digestParts, loadDoc } from '../crdt/index.js';
import type { NewConflict } from '../storage/types.js';
import type { LiveDoc } from './cache.js';

/**
 * What offering a peer's state did: `replaced` (the peer's state won and
 * replaced this region's), `kept` (this region's state wins), `unrelated`
 * (the two do not conflict, or no longer). `mine` is this region's state
 * before (null when it holds no such document): a peer that offered its
 * state records it when it lost, and resolves against it in any case.
 */
export interface ReplaceResult {
  outcome: 'replaced' | 'kept' | 'unrelated';
  mine: Uint8Array | null;
}

/** The decision of {@link resolveConflict}, for the write path to carry out. */
export type Resolution =
  | { outcome: 'unrelated' }
  | { outcome: 'kept'; conflict: NewConflict }
  | { outcome: 'replaced'; ydoc: Y.Doc; conflict: NewConflict };

/** Who meets whom: this region and the peer that sent its state. */
export interface Parties {
  self: RegionId;
  peer: RegionId;
}

/**
 * Compares the live doc with a peer's whole state. When they conflict,
 * returns the record of what lost (both sides keep one) and, when the
 * peer's content wins, the doc to use instead (under `clientId`). Never
 * changes `live`.
 */
export function resolveConflict(
  doc: DocKey, live: LiveDoc, state: Uint8Array, parties: Parties, clientId: number, now: number,
): Resolution {
  let incoming: Y.Doc;
  try {
    incoming = loadDoc([state], clientId);
  } catch {
    return { outcome: 'unrelated' };
  }
  const mine = digestParts(live.ydoc);
  const theirs = digestParts(incoming);
  const sameStructure = Buffer.compare(mine.structure, theirs.structure) === 0;
  const order = Buffer.compare(theirs.content, mine.content);
  const pending = incoming.store.pendingStructs !== null || incoming.store.pendingDs !== null;
  if (!sameStructure || order === 0 || pending) {
    incoming.destroy();
    return { outcome: 'unrelated' };
  }
  if (order > 0) {
    incoming.destroy();
    const conflict = { doc, at: now, winner: parties.self, keptDigest: combineDigest(mine), lostDigest: combineDigest(theirs), lostState: state };
    return { outcome: 'kept', conflict };
  }
  const conflict: NewConflict = {
    doc, at: now, winner: parties.peer,
    keptDigest: combineDigest(theirs), lostDigest: combineDigest(mine), lostState: Y.encodeStateAsUpdate(live.ydoc),
  };
  return { outcome: 'replaced', ydoc: incoming, conflict };
}
