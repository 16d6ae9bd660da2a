/**
 * How the region ends a live connection. The codes are part of the wire
 * contract (src/contract.ts, `LIVE_CLOSE`); the reason is the stable error
 * code of src/errors.ts.
 */
import { LIVE_CLOSE } from '../contract.js';
import type { MeridianError } from '../errors.js';

export { LIVE_CLOSE };
export { MAX_AWARENESS_BYTES } from '../replication/types.js';

/** The close code of a refusal: 4000 plus its HTTP status, except `invalid_update` (see `LIVE_CLOSE`). */
export function closeCodeOf(err: MeridianError): number {
  if (err.code === 'invalid_update') return LIVE_CLOSE.invalidUpdate;
  return 4000 + err.status;
}
