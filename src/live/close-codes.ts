/**
 * How the region ends a live connection, and the bounds of what a client
 * may send. Close codes follow y-websocket's convention: 4400-4499 mirror
 * HTTP 4xx (the client's fault; y-websocket stops reconnecting), 4500-4599
 * mirror 5xx (try again later; y-websocket reconnects). The reason is the
 * stable error code of src/errors.ts.
 */
import type { MeridianError } from '../errors.js';

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
  /** The update or awareness message is too large (`body_too_large`). */
  tooLarge: 4413,
  /** The region is stopping or not taking writes yet (`unavailable`): reconnect. */
  unavailable: 4503,
} as const;

export { MAX_AWARENESS_BYTES } from '../replication/types.js';

/** The close code of a refusal: 4000 plus its HTTP status, except `invalid_update` (see above). */
export function closeCodeOf(err: MeridianError): number {
  if (err.code === 'invalid_update') return LIVE_CLOSE.invalidUpdate;
  return 4000 + err.status;
}
