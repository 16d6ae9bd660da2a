/**
 * `pendingMark` names what a document holds back for missing dependencies:
 * the same whatever order it arrived in, and different as soon as any of it
 * changes (held-back.ts counts peers' answers against it).
 */
import * as Y from 'yjs';
import { expect, it } from 'vitest';
import { pendingMark } from '../src/crdt/index.js';

/** Updates of client 50 inserting after client 60's item, which the receiver lacks; and a deletion of client 70's items. */
function updates(): { first: Uint8Array; a1: Uint8Array; a2: Uint8Array; a3: Uint8Array; deletion: Uint8Array } {
  const origin = new Y.Doc();
  origin.clientID = 60;
  origin.getArray('l').insert(0, ['x0']);
  const other = new Y.Doc();
  other.clientID = 70;
  other.getText('t').insert(0, 'abc');
  const editor = new Y.Doc();
  editor.clientID = 50;
  Y.applyUpdate(editor, Y.encodeStateAsUpdate(origin));
  Y.applyUpdate(editor, Y.encodeStateAsUpdate(other));
  const capture = (change: () => void): Uint8Array => {
    let update: Uint8Array | null = null;
    const take = (u: Uint8Array): void => void (update = u);
    editor.on('update', take);
    change();
    editor.off('update', take);
    return update!;
  };
  const a1 = capture(() => editor.getArray('l').insert(1, ['a1']));
  const a2 = capture(() => editor.getArray('l').insert(2, ['a2']));
  const a3 = capture(() => editor.getArray('l').insert(3, ['a3']));
  const deletion = capture(() => editor.getText('t').delete(0, 2));
  return { first: Y.encodeStateAsUpdate(origin), a1, a2, a3, deletion };
}

function docWith(...parts: Uint8Array[]): Y.Doc {
  const doc = new Y.Doc();
  for (const u of parts) Y.applyUpdate(doc, u);
  return doc;
}

it('is null with nothing held back, and the same for the same updates held back in any order or merged', () => {
  const { first, a1, a2, deletion } = updates();
  expect(pendingMark(docWith())).toBeNull();
  expect(pendingMark(docWith(first, a1, a2))).toBeNull();
  const one = pendingMark(docWith(a1, a2, deletion));
  expect(one).not.toBeNull();
  expect(pendingMark(docWith(deletion, a2, a1))).toBe(one);
  expect(pendingMark(docWith(Y.mergeUpdates([a1, a2, deletion])))).toBe(one);
  // Held back a second time (a peer sends them again), and read from a copy's state (which carries them).
  const twice = docWith(a1, a2, deletion, a1, a2, deletion);
  expect(pendingMark(twice)).toBe(one);
  expect(pendingMark(docWith(Y.encodeStateAsUpdate(twice)))).toBe(one);
});

it('changes as soon as what is held back changes, including in place on the same document', () => {
  const { first, a1, a2, deletion } = updates();
  const doc = docWith(a1);
  const structsOnly = pendingMark(doc);
  Y.applyUpdate(doc, a2);
  const more = pendingMark(doc);
  expect(more).not.toBe(structsOnly);
  Y.applyUpdate(doc, deletion);
  const withDeletion = pendingMark(doc);
  expect(withDeletion).not.toBe(more);
  expect(withDeletion).not.toBeNull();
  Y.applyUpdate(doc, first);
  // The items integrate; the deletion of client 70's items still waits.
  expect(doc.getArray('l').toJSON()).toEqual(['x0', 'a1', 'a2']);
  const left = pendingMark(doc);
  expect(left).not.toBeNull();
  expect(left).not.toBe(withDeletion);
  expect(left).toBe(pendingMark(docWith(deletion)));
});

it('changes when a gap between held-back structs of one client fills, though the first and last clocks stay', () => {
  const { a1, a2, a3 } = updates();
  const doc = docWith(a1, a3);
  const gap = pendingMark(doc);
  Y.applyUpdate(doc, a2);
  expect(pendingMark(doc)).not.toBe(gap);
  expect(pendingMark(doc)).toBe(pendingMark(docWith(Y.mergeUpdates([a1, a2, a3]))));
});
