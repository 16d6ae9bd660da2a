/**
 * The wire contract of Meridian: what the server sends and what every
 * client of it (the SDK, the simulator, the verifier, the dashboard, the
 * benchmarks) reads. Types and constants only, with no runtime imports, so
 * that a browser bundle can take it whole. The identifier brands come from
 * `ids.ts` as types only; on the wire they are plain strings.
 *
 * Changing anything here changes the public API: the OpenAPI document
 * (`GET /v1/openapi.json`) is generated from route schemas that are checked
 * against these types (src/api/responses.ts).
 */
import type { DocKey, RegionId, WriterId } from './ids.js';

// ---------------------------------------------------------------- headers

/** Request header: serve only once this region has applied the version token it names. */
export const AFTER_HEADER = 'meridian-after';
/** Request header: how long (ms) a request may wait for `meridian-after` or `meridian-replicas`. */
export const WAIT_HEADER = 'meridian-wait-ms';
/** Request header: acknowledge a write only once this many regions hold it durably. */
export const REPLICAS_HEADER = 'meridian-replicas';
/** Response header: the version token of what was read or written. */
export const VERSION_HEADER = 'meridian-version';

// ------------------------------------------------------------ error codes

/**
 * Every error code a caller can see, with its HTTP status. 4xx codes are the
 * caller's mistakes; 5xx are the node's own.
 */
export const ERRORS = {
  bad_request: 400,
  invalid_json: 400,
  invalid_name: 400,
  invalid_body: 400,
  invalid_query: 400,
  invalid_ops: 400,
  invalid_update: 400,
  invalid_token: 400,
  invalid_command: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  request_timeout: 408,
  type_mismatch: 409,
  client_id_conflict: 409,
  quota_exceeded: 403,
  body_too_large: 413,
  too_complex: 413,
  unsupported_media_type: 415,
  too_many_requests: 429,
  internal: 500,
  lagging: 503,
  unavailable: 503,
  /** A live connection beyond `limits.liveConnections` or `limits.liveConnectionsPerDoc`. */
  too_many_connections: 503,
  quorum_timeout: 504,
} as const;

/** A stable error code (the `error` field of an error body). */
export type ErrorCode = keyof typeof ERRORS;

/**
 * The JSON body of every error response. Details sit beside the code, e.g.
 * `field` (`invalid_body`, `invalid_query`), `index` (`invalid_ops`),
 * `missing` (`lagging`), `version` (`quorum_timeout`), `accepted`
 * (`unsupported_media_type`).
 */
export interface ErrorBody {
  error: ErrorCode;
  message: string;
  [detail: string]: unknown;
}

// ------------------------------------------------------ WebSocket close codes

/** WebSocket close codes of replication links between regions. */
export const CloseCode = {
  ProtocolError: 4400,
  Unauthorized: 4401,
  UnknownPeer: 4403,
  HeartbeatTimeout: 4408,
  /** A newer link for the same pair of regions replaced this one. */
  Superseded: 4409,
  IncompatibleVersion: 4426,
  ShuttingDown: 4503,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

// --------------------------------------------------------- GET /v1/sync

/** The state of a link to a peer, as the failure detector sees it. */
export type PeerState = 'up' | 'suspect' | 'down';

/** One peer of a region, in `GET /v1/sync`. */
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

/** The body of `GET /v1/sync`: a region's replication status. */
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

// ---------------------------------------- GET /v1/docs/{collection}/{id}/sync

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

/** The body of `GET /v1/docs/{collection}/{id}/sync`. */
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
