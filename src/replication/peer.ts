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
  /** When a dial was last started early because another region reached this peer (ms since epoch). */
  hintedDialAt: number;
  lastError: string | null;
  /** Links established since start; every one after the first is a reconnect. */
  connects: number;
  /**
   * When (Date.now()) this region last saw its region digest equal to the
   * peer's, or started an anti-entropy round with it (see
   * replicator.ts callsForRound); kept across links.
   */
  comparedAt: number;
}
