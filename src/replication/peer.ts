/**
 * Bookkeeping for one configured peer: its link (if any), failure detector,
 * acknowledgements, and the figures that `GET /v1/sync` reports.
 */
import type { RegionId, VersionVector } from '../ids.js';
import type { Session } from './session.js';
import type { Detector } from './detector.js';

export interface Peer {
  region: RegionId;
  url: string;
  detector: Detector;
  session: Session | null;
  /** Closes the current link's socket. */
  closeLink: ((code: number, reason: string) => void) | null;
  /** What the peer has acknowledged storing (in memory; persisted lazily). */
  acks: VersionVector;
  acksDirty: boolean;
  /** What the peer held when the current link opened (its sync request). */
  heldAtConnect: VersionVector | null;
  attempts: number;
  reconnectTimer: NodeJS.Timeout | null;
  lastError: string | null;
  connects: number;
}

/** How many updates `have` lacks of `want`. */
export function missingCount(want: VersionVector, have: VersionVector): number {
  let n = 0;
  for (const [origin, seq] of want) n += Math.max(0, seq - (have.get(origin) ?? 0));
  return n;
}

/** Per-origin counts that `have` lacks of `want` (origins lacking nothing are left out). */
export function missingByOrigin(want: VersionVector, have: VersionVector): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [origin, seq] of want) {
    const gap = seq - (have.get(origin) ?? 0);
    if (gap > 0) out[origin] = gap;
  }
  return out;
}

export function covers(have: VersionVector, want: VersionVector): boolean {
  for (const [origin, seq] of want) if ((have.get(origin) ?? 0) < seq) return false;
  return true;
}
