/**
 * Who catches a region up by state when several could: the first by name of
 * the regions that reach it and hold everything, so that a wiped region is
 * not sent every document by every peer. The others wait, within a bound.
 */
import type { RegionId, VersionVector } from '../ids.js';
import { covers } from '../vv.js';

/**
 * Longest a region leaves a catch-up to another, ms: the other may claim to
 * reach the region and to hold everything (its heartbeats say so) and never
 * send the state, by a fault or on purpose; the region would lack the
 * entries no log holds any more for as long as the claim lasts. A rebuild
 * of a large region takes minutes; past this, both send (the second round
 * repeats work, it loses nothing).
 */
export const MAX_LEAVE_MS = 10 * 60_000;

/** What is known of another peer here: its link's session, if it is up. */
export interface CatchUpPeer {
  region: RegionId;
  session: { peerHas: VersionVector; peerReaches(region: RegionId): boolean } | null;
}

/**
 * Whether `self` leaves catching `target` up by state to another region.
 * One earlier by name is waited for three heartbeats before deciding (time
 * for it to redial `target`, told that it is back, and say so in a
 * heartbeat), then as long as it reaches `target` and holds all `self` held
 * when the wait began (`since`) — it can send the same; not all `self` holds
 * now: while clients write, a peer is always a few writes behind, and those
 * are still in this region's log, streamed to `target` as any entries are —
 * and never past {@link MAX_LEAVE_MS}.
 */
export function leavesCatchUp(o: {
  self: RegionId;
  target: RegionId;
  peers: Iterable<CatchUpPeer>;
  held: VersionVector;
  since: number;
  now: number;
  heartbeatMs: number;
}): boolean {
  const before = [...o.peers].filter((p) => p.region !== o.target && p.region < o.self);
  if (before.length === 0) return false;
  const waited = o.now - o.since;
  if (waited < 3 * o.heartbeatMs) return true;
  if (waited >= MAX_LEAVE_MS) return false;
  return before.some((p) => p.session !== null && covers(p.session.peerHas, o.held) && p.session.peerReaches(o.target));
}
