/**
 * A fingerprint of a doc's Yjs state, for comparing replicas cheaply.
 *
 * A state vector alone does not identify a state: deleting an item writes a
 * delete-set entry but no new struct, so it does not advance the state
 * vector. The digest therefore covers the state vector and the delete set.
 * Since every struct's content is fixed by its id, docs with equal state
 * vectors and equal delete sets hold the same document.
 */
import { createHash } from 'node:crypto';
import * as encoding from 'lib0/encoding';
import * as Y from 'yjs';

/** A delete set as sorted, merged `[clock, length]` ranges per client. */
type Ranges = Array<[number, number]>;

/**
 * sha256 (32 bytes) of the doc's integrated state: state vector and delete
 * set, both sorted by client, ranges merged. Equal exactly when the two docs
 * hold the same Yjs state, whatever order their updates arrived in. Structs
 * still pending (waiting for missing dependencies) are not covered.
 */
export function docDigest(doc: Y.Doc): Uint8Array {
  const encoder = encoding.createEncoder();
  const clients = Array.from(doc.store.clients.keys()).sort((a, b) => a - b);
  encoding.writeVarUint(encoder, clients.length);
  for (const client of clients) {
    encoding.writeVarUint(encoder, client);
    encoding.writeVarUint(encoder, Y.getState(doc.store, client));
  }
  const deleted = deleteRanges(doc);
  encoding.writeVarUint(encoder, deleted.size);
  for (const client of Array.from(deleted.keys()).sort((a, b) => a - b)) {
    const ranges = deleted.get(client) as Ranges;
    encoding.writeVarUint(encoder, client);
    encoding.writeVarUint(encoder, ranges.length);
    for (const [clock, len] of ranges) {
      encoding.writeVarUint(encoder, clock);
      encoding.writeVarUint(encoder, len);
    }
  }
  return new Uint8Array(createHash('sha256').update(encoding.toUint8Array(encoder)).digest());
}

function deleteRanges(doc: Y.Doc): Map<number, Ranges> {
  const out = new Map<number, Ranges>();
  const ds = Y.createDeleteSetFromStructStore(doc.store);
  for (const [client, items] of ds.clients) {
    const sorted = items.map((d): [number, number] => [d.clock, d.len]).sort((a, b) => a[0] - b[0]);
    const merged: Ranges = [];
    for (const [clock, len] of sorted) {
      const last = merged[merged.length - 1];
      if (last !== undefined && last[0] + last[1] >= clock) {
        last[1] = Math.max(last[1], clock + len - last[0]);
      } else if (len > 0) {
        merged.push([clock, len]);
      }
    }
    if (merged.length > 0) out.set(client, merged);
  }
  return out;
}
