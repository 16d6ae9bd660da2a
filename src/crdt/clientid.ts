/**
 * Yjs client ids. Each writer (one incarnation of a region) writes each
 * document under one fixed client id derived from the writer and the
 * document, so that reloading a document from storage keeps writing under
 * the same id and the state vector does not grow an entry per reload.
 *
 * The client id also breaks ties: when two regions set the same field
 * concurrently, Yjs keeps the value from the higher client id.
 */
import { createHash } from 'node:crypto';
import * as Y from 'yjs';
import type { DocKey, WriterId } from '../ids.js';

/**
 * A deterministic nonzero uint32 from sha256(writer, doc). Two writers of
 * one document collide with probability about 2^-32 per pair.
 */
export function stableClientId(writer: WriterId, doc: DocKey): number {
  const digest = createHash('sha256').update(writer).update('\u0000').update(doc).digest();
  const id = digest.readUInt32BE(0);
  return id === 0 ? 1 : id;
}

/**
 * Builds a doc (gc on) from stored updates, applied in one transaction, and
 * only then sets `doc.clientID = clientId`. The order matters: Yjs replaces
 * a doc's client id when a non-local transaction advances the clock of that
 * id, which loading the doc's own earlier writes would do.
 *
 * The updates must have been validated before they were stored; an error
 * from Yjs propagates unchanged.
 */
export function loadDoc(updates: readonly Uint8Array[], clientId: number): Y.Doc {
  const doc = new Y.Doc({ gc: true });
  doc.transact(() => {
    for (const update of updates) Y.applyUpdate(doc, update);
  });
  doc.clientID = clientId;
  return doc;
}
