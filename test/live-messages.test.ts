/**
 * The first sync a live client gets: one message per shared render of the
 * document, not a copy of megabytes for every connection that joins it.
 */
import * as decoding from 'lib0/decoding';
import * as Y from 'yjs';
import { describe, expect, it } from 'vitest';
import { syncStep2 } from '../src/live/messages.js';

describe('sync step 2', () => {
  it('is made once for an update shared by many connections, and carries it whole', () => {
    const doc = new Y.Doc();
    doc.getText('essay').insert(0, 'x'.repeat(100_000));
    const update = Y.encodeStateAsUpdate(doc);
    const message = syncStep2(update);
    expect(syncStep2(update)).toBe(message);
    const decoder = decoding.createDecoder(message);
    expect(decoding.readVarUint(decoder)).toBe(0);
    expect(decoding.readVarUint(decoder)).toBe(1);
    expect(Buffer.from(decoding.readVarUint8Array(decoder)).equals(Buffer.from(update))).toBe(true);
    // Another update of the same bytes is another message: only the shared render is shared.
    expect(syncStep2(update.slice())).not.toBe(message);
  });
});
