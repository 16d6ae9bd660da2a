import type { DocKey, RegionId, VersionVector, WriterId } from '../ids.js';

export type PeerState = 'up' | 'suspect' | 'down';

export interface PeerStatus {
  region: RegionId;
  url: string;
  state: PeerState;
  rttMs: number | null;
  lastSeenMs: number | null;
  /** `direct`, `via <region>` or `none`. */
  route: string;
  /** Why the last connection attempt failed or was refused, if it did. */
  lastError: string | null;
  outbound: { pendingUpdates: number; pendingBytes: number; lagMs: number };
  /**
   * `quarantined`: entries from this peer that this region could not apply
   * (kept in its quarantine table, documents repaired by state), ever.
   */
  inbound: { pendingUpdates: number; lagMs: number; quarantined: number };
}

export interface SyncStatus {
  region: RegionId;
  writer: WriterId;
  digest: string;
  /** No peer is up. The region still serves reads and writes. */
  isolated: boolean;
  /** Documents holding updates whose dependencies have not arrived. */
  pendingDocs: number;
  /** Content conflicts recorded in this region (see `GET /v1/docs/{c}/{id}/conflicts`). */
  conflicts: number;
  peers: PeerStatus[];
}

/** One region's view of one document, as this region knows it. */
export interface DocRegionSync {
  region: RegionId;
  /**
   * Holds every update of the document this region knows of, from every
   * origin (for this region itself: always true).
   */
  hasLatest: boolean;
  /** Updates of this document (only this one) that the region has not acknowledged. */
  missingUpdates: number;
  /** Age of the oldest of those updates (origin clock), ms; 0 when none is missing. */
  lagMs: number;
}

export interface DocSyncStatus {
  doc: DocKey;
  /** The document reads as deleted here (the deletion replicates like any update). */
  deleted: boolean;
  /** The latest local change of this document, if this region has made one still in its log. */
  latestLocal: { origin: WriterId; seq: number } | null;
  /**
   * Per origin (every writer, not only this region), the newest update of
   * the document still in this region's log. Updates that every region has
   * acknowledged are compacted and dropped from the log, so an empty list
   * means "nothing outstanding", not "never written".
   */
  latest: { origin: WriterId; seq: number; ts: number }[];
  /** This region first, then its peers in configuration order. */
  regions: DocRegionSync[];
}

/** What the HTTP API may ask of replication. */
export interface ReplicationView {
  status(): SyncStatus;
  /** Throws a `not_found` MeridianError for a document this region has never seen. */
  docStatus(doc: DocKey): DocSyncStatus;
  /**
   * Resolves true once this region has applied everything in `vv`, false on
   * timeout or as soon as `signal` aborts (the wait is then forgotten).
   */
  waitForVersion(vv: VersionVector, timeoutMs: number, signal?: AbortSignal): Promise<boolean>;
  /**
   * Resolves true once `replicas` regions (this one included) durably hold
   * (origin, seq); false on timeout or as soon as `signal` aborts.
   */
  waitForReplicas(origin: WriterId, seq: number, replicas: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean>;
}
