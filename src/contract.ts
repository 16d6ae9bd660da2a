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

/** Request header: serve only once this region has applied the version token it names (or each of several, comma-separated). */
export const AFTER_HEADER = 'meridian-after';
/**
 * Tokens one `meridian-after` may list. A client with several writes in
 * flight holds a token for each that no answer is known to cover yet; listed
 * together, one request waits for all of them instead of one request each.
 */
export const MAX_AFTER_TOKENS = 64;
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
  /** A live client's document was replaced by a peer's state (a content conflict): reload it. */
  document_replaced: 410,
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
  /** The peer left more unread than a link may hold (see `replication.maxBufferedBytes`). */
  Backlog: 4429,
  ShuttingDown: 4503,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/**
 * WebSocket close codes of live clients (`GET /v1/live/{collection}/{id}`).
 * They follow y-websocket's convention: 4400-4499 mirror HTTP 4xx and are
 * final (y-websocket stops reconnecting and emits `closed`); every other
 * code, 4500-4599 included, makes it reconnect. The close reason is the
 * stable error code.
 */
export const LIVE_CLOSE = {
  /** The message is not y-websocket (`bad_request`). */
  badMessage: 4400,
  /**
   * The update was refused as `invalid_update`: malformed, or built on
   * changes this region does not hold yet (edits made at another region).
   * A 45xx code, so y-websocket reconnects: its sync then sends everything
   * the region lacks, dependencies included.
   */
  invalidUpdate: 4500,
  /** The token may only read and the client sent an update (`forbidden`). */
  forbidden: 4403,
  /** The update writes under a region's client id or rewrites held content (`client_id_conflict`). */
  clientIdConflict: 4409,
  /**
   * A peer's state replaced the document (`document_replaced`, a content
   * conflict): the client's Y.Doc holds the losing content under the same
   * ids, so it must start over with a new Y.Doc. Final for y-websocket.
   */
  documentReplaced: 4410,
  /** The update or awareness message is too large (`body_too_large`). */
  tooLarge: 4413,
  /** The caller holds its share of the region's live connections (`too_many_requests`). */
  callerBusy: 4429,
  /** The region is stopping or not taking writes yet (`unavailable`): reconnect. */
  unavailable: 4503,
} as const;

// ----------------------------------------------------------- change feeds

/** Request header of a change feed: the version token to resume after (EventSource sends it on reconnects). */
export const LAST_EVENT_ID_HEADER = 'last-event-id';

/** The event names of a change feed (`GET /v1/events/...`). */
export const FEED_EVENT = {
  /** A document changed: `{collection, id, version, value}`. */
  change: 'change',
  /** The feed is live at `{version, mode}` after its resume. */
  ready: 'ready',
  /** A resume by state follows: drop what the next `change` events do not name. */
  reset: 'reset',
  /** The last event of a stream the region ends: `{version, reason}`. */
  cutoff: 'cutoff',
} as const;
export type FeedEventName = (typeof FEED_EVENT)[keyof typeof FEED_EVENT];

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
  /**
   * The peer's region digest from its last heartbeat, kept after its link
   * drops (see `reportAgeMs`); null before the first heartbeat.
   */
  digest: string | null;
  /** The peer's own links as its last heartbeat reported them (empty before the first). */
  links: LinkStatus[];
  /** Age of that heartbeat, ms; null before the first. */
  reportAgeMs: number | null;
}

/** One link of a peer, as the peer reported it. */
export interface LinkStatus {
  region: RegionId;
  state: PeerState;
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
  /**
   * The regions agree: every peer is up and its last heartbeat carried this
   * region's digest, and nothing is pending either way.
   */
  agree: boolean;
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
  /**
   * Updates of this document (only this one) that the region has not
   * acknowledged, counted up to 10,000 per origin.
   */
  missingUpdates: number;
  /** The count stopped at that limit for some origin: the region lacks at least `missingUpdates`. */
  missingUpdatesCapped: boolean;
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
