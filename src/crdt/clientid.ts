/**
 * Yjs client ids. Each writer (one incarnation of a region) writes each
 * document under one fixed client id derived from the writer and the
 * document, so that reloading a document from storage keeps writing under
 * the same id and the state vector does not grow an entry per reload.
 *
 * Region client ids live at and above {@link REGION_CLIENT_BASE} (2^32), a
 * range ordinary Yjs clients never use (they draw random uint32 ids), so a
 * client can be refused any write under a region's id, even the id of a
 * region incarnation this region has not heard of yet.
 *
 * The client id also breaks ties: when two writers set the same field
 * concurrently, Yjs keeps the value from the higher client id, so a region's
 * write wins such a tie against a binary-update client's.
 */
import { randomInt } from 'node:crypto';
import * as Y from 'yjs';
import type { DocKey, WriterId } from '../ids.js';
import { sha256 } from '../sha256.js';

/** Lowest client id of a region writer; every id from here up is reserved for regions. */
export const REGION_CLIENT_BASE = 2 ** 32;

/**
 * A deterministic id in [2^32, 2^32 + 2^48) from sha256(writer, doc). Two
 * writers of one document collide with probability about 2^-48 per pair.
 */
export function stableClientId(writer: WriterId, doc: DocKey): number {
  const digest = sha256(writer, '\u0000', doc);
  let high48 = 0;
  for (let i = 0; i < 6; i++) high48 = high48 * 256 + digest[i]!;
  return REGION_CLIENT_BASE + high48;
}

/**
 * A random region-range id, for a document whose stored state may lack some
 * of this writer's own structs (corrupt data): its stable id could reuse clocks.
 */
export function freshRegionClientId(): number {
  return REGION_CLIENT_BASE + randomInt(2 ** 47) * 2 + randomInt(2);
}

/** Whether `client` is in the range reserved for region writers. */
export function isRegionClient(client: number): boolean {
  return client >= REGION_CLIENT_BASE;
}

/**
 * A fresh doc (gc on), under `clientId` when given. Its guid is fixed: Yjs
 * would otherwise draw a random UUID for each doc (31 calls for random
 * bytes, a fifth of a region's CPU when it loads many documents), and guids
 * only matter for subdocuments, which are refused (validate.ts). It never
 * cleans up text formatting (see {@link skipFormattingCleanup}).
 */
export function newDoc(clientId?: number): Y.Doc {
  const doc = new Y.Doc({ gc: true, guid: 'meridian' });
  if (clientId !== undefined) doc.clientID = clientId;
  doc.on('afterTransaction', skipFormattingCleanup);
  return doc;
}

/**
 * After a transaction that applied others' changes to a text holding
 * formatting, Yjs deletes the formatting marks it finds redundant, in a
 * transaction of its own (origin null). In a region that change would be
 * no client's write and in no log: the document in memory would no longer
 * be what its stored updates make, its digest would differ from its peers'
 * (which clean up after other updates, or none) until anti-entropy merged
 * them, and a reload would lose it again. Two editors bolding overlapping
 * words at once were enough. A region is no editor: editors clean their
 * own formatting up and send that as their own update. Yjs checks the flag
 * right after `afterTransaction` (13.6).
 */
function skipFormattingCleanup(transaction: Y.Transaction): void {
  (transaction as unknown as { _needFormattingCleanup: boolean })._needFormattingCleanup = false;
}
