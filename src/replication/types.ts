import type { DocSyncStatus, PeerStatus, SyncStatus } from '../contract.js';
import type { DocKey, RegionId, VersionVector } from '../ids.js';

// The status shapes are part of the wire contract, shared with every client.
export type { DocRegionSync, DocSyncStatus, PeerState, PeerStatus, SyncStatus } from '../contract.js';

/** What the HTTP API may ask of replication. */
export interface ReplicationView {
  /** Computes the region digest first: await {@link settled} before, or it may hold the event loop after a catch-up. */
  status(): SyncStatus;
  /** Resolves once status() has little left to compute (changed documents' digests, in slices between other work). */
  settled(): Promise<void>;
  /** Each link's state and lag, as {@link status} reports them, without the region digest: computes no document digest. */
  peerStatuses(): PeerStatus[];
  /** Throws a `not_found` MeridianError for a document this region has never seen. */
  docStatus(doc: DocKey): DocSyncStatus;
  /**
   * Resolves true once this region has applied everything in `vv`, false on
   * timeout or as soon as `signal` aborts (the wait is then forgotten).
   */
  waitForVersion(vv: VersionVector, timeoutMs: number, signal?: AbortSignal): Promise<boolean>;
  /**
   * Resolves true once `replicas` regions (this one included) durably hold
   * every entry of `held`; false on timeout or as soon as `signal` aborts.
   */
  waitForReplicas(held: VersionVector, replicas: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean>;
}

/** Whether a region with these links is cut off from every peer (`isolated` in the status). */
export function isolatedOf(peers: readonly PeerStatus[]): boolean {
  return peers.length > 0 && peers.every((p) => p.state === 'down');
}

/** Largest awareness update a live client may send and a peer may relay, in bytes. */
export const MAX_AWARENESS_BYTES = 64 * 1024;

/**
 * Presence (y-protocols awareness updates) exchanged with peers, for live
 * clients: ephemeral, never stored or logged, sent only over links that are
 * up and whose peer speaks it, dropped rather than queued.
 */
export interface AwarenessRelay {
  /** Sends an awareness update of `doc` to every peer reachable now. */
  relayAwareness(doc: DocKey, update: Uint8Array): void;
  /** Calls `listener` with each awareness update a peer relays; returns the unsubscribe. */
  onAwareness(listener: (doc: DocKey, update: Uint8Array, from: RegionId) => void): () => void;
}
