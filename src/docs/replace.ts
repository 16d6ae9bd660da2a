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
 * before, for the peer to record (null when unrelated).
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
