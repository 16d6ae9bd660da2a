/**
 * What a commit keeps besides documents: states that lost a content
 * conflict, and entries from peers this region could not apply. The commit
 * stores them; here each is logged, and (for quarantined entries) its
 * document is marked for repair by state.
 */
import type { Logger } from 'pino';
import { splitDocKey } from '../ids.js';
import type { Batch } from './stage.js';

/**
 * Logs what the batch's commit kept besides documents: entries it could not
 * apply (a peer's entry reaches one commit only: its seq is held after it)
 * and states that lost a content conflict.
 */
export function logIncidents(log: Logger, batch: Batch): void {
  for (const q of batch.quarantined) {
    const { collection, id } = splitDocKey(q.doc);
    log.warn(
      { peer: q.peer, origin: q.origin, seq: q.seq, collection, id, bytes: q.update.byteLength, reason: q.reason },
      'entry from peer could not be applied; quarantined, document left for repair by state',
    );
  }
  for (const doc of batch.reloaded) {
    const { collection, id } = splitDocKey(doc);
    log.warn(
      { collection, id },
      'document took content its own state does not reload to (clients wrote under one Yjs id at two regions); replaced by its reloaded state, a content conflict may follow',
    );
  }
  for (const doc of batch.rebuilt) {
    const { collection, id } = splitDocKey(doc);
    log.warn(
      { collection, id },
      'a peer\'s update placed items among many inserted at the same place concurrently (clients inserting at one place at several regions at once); the document was built anew from its stored updates and this one merged, instead of Yjs placing each item in turn',
    );
  }
  for (const c of batch.conflicts) {
    const { collection, id } = splitDocKey(c.doc);
    log.warn(
      { collection, id, winner: c.winner, kept: hex(c.keptDigest), lost: hex(c.lostDigest) },
      'replicas held different content under the same Yjs ids; the lower content digest won, the other state is kept as a conflict',
    );
  }
}

export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}
