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
 * How two replicas' states of a document compare under the rule: whether
 * they conflict, and if so which wins, with the digests of both. Pure: it
 * changes neither doc, and runs on the event loop or the render thread.
 */
export type Verdict =
  | { outcome: 'unrelated' }
  | { outcome: 'kept' | 'replaced'; mine: Uint8Array; theirs: Uint8Array };

export function judge(mine: Y.Doc, incoming: Y.Doc): Verdict {
  const mineParts = digestParts(mine);
  const theirParts = digestParts(incoming);
  const sameStructure = Buffer.compare(mineParts.structure, theirParts.structure) === 0;
  const order = Buffer.compare(theirParts.content, mineParts.content);
  const pending = incoming.store.pendingStructs !== null || incoming.store.pendingDs !== null;
  if (!sameStructure || order === 0 || pending) return { outcome: 'unrelated' };
  return { outcome: order > 0 ? 'kept' : 'replaced', mine: combineDigest(mineParts), theirs: combineDigest(theirParts) };
}

/** The record of what lost a conflict `verdict` decided; `mine`: this region's state, `theirs`: the peer's. */
export function conflictOf(
  doc: DocKey, verdict: Extract<Verdict, { outcome: 'kept' | 'replaced' }>, mine: Uint8Array, theirs: Uint8Array, parties: Parties, now: number,
): NewConflict {
  return verdict.outcome === 'kept'
    ? { doc, at: now, winner: parties.self, keptDigest: verdict.mine, lostDigest: verdict.theirs, lostState: theirs }
    : { doc, at: now, winner: parties.peer, keptDigest: verdict.theirs, lostDigest: verdict.mine, lostState: mine };
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
  const verdict = judge(live.ydoc, incoming);
  if (verdict.outcome !== 'replaced') incoming.destroy();
  if (verdict.outcome === 'unrelated') return verdict;
  // The live state is encoded only when it lost: it is then kept as the record.
  const mine = verdict.outcome === 'replaced' ? Y.encodeStateAsUpdate(live.ydoc) : new Uint8Array();
  const conflict = conflictOf(doc, verdict, mine, state, parties, now);
  return verdict.outcome === 'kept' ? { outcome: 'kept', conflict } : { outcome: 'replaced', ydoc: incoming, conflict };
}
