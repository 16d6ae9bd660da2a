/**
 * Updates that hold different content under the same Yjs ids (two clients
 * wrote under one client id at two regions): which ones may splice, and that
 * a doc built from them stays encodable once its types are read.
 */
import * as Y from 'yjs';
import { describe, expect, it } from 'vitest';
import { loadDoc, mayCollide } from '../src/crdt/load.js';

const CLIENT = 1_395_687_137;

function written(write: (doc: Y.Doc) => void): Y.Doc {
  const doc = new Y.Doc();
  doc.clientID = CLIENT;
  write(doc);
  return doc;
}

// Two clocks in a map, and three in a text inserted at its start: the rest
// of the text, taken where the map is held, sits between two map entries.
const mapWrite = written((doc) => {
  doc.getMap('root').set('a', 'x');
  doc.getMap('root').set('b', 'x');
});
const textWrite = written((doc) => {
  doc.getText('t').insert(0, 'a');
  doc.getText('t').insert(0, 'XY');
});
const mapState = Y.encodeStateAsUpdate(mapWrite);
const textState = Y.encodeStateAsUpdate(textWrite);

describe('mayCollide', () => {
  it('finds an update reaching below the clocks held, in a doc or earlier in a list', () => {
    const held = loadDoc([mapState], 1);
    expect(mayCollide(held, [textState])).toBe(true);
    expect(mayCollide(null, [mapState, textState])).toBe(true);
    expect(mayCollide(held, [Y.decodeUpdate(textState)])).toBe(true);
  });

  it('finds a diff that starts just past the clocks held and is placed between items of two types', () => {
    const held = loadDoc([mapState], 1);
    const diff = Y.encodeStateAsUpdate(textWrite, Y.encodeStateVector(held));
    expect(mayCollide(held, [Y.decodeUpdate(diff)])).toBe(true);
  });

  it('passes ordinary updates: later edits of the same writer, and other writers', () => {
    const doc = written((d) => {
      d.getMap('root').set('a', 1);
      d.getText('t').insert(0, 'ab');
    });
    const before = Y.encodeStateAsUpdate(doc);
    const updates: Uint8Array[] = [];
    doc.on('update', (u: Uint8Array) => updates.push(u));
    doc.getMap('root').set('a', 2);
    // Placed between two held items of one text.
    doc.getText('t').insert(1, 'c');
    const other = Y.encodeStateAsUpdate(written((d) => {
      d.clientID = 7;
      d.getMap('root').set('z', 1);
    }));
    const held = loadDoc([before], 1);
    expect(mayCollide(held, updates.map((u) => Y.decodeUpdate(u)))).toBe(false);
    expect(mayCollide(held, [...updates, other])).toBe(false);
    expect(mayCollide(null, [before, ...updates, other])).toBe(false);
  });
});

describe('loadDoc of updates that collide', () => {
  it('gives a doc that still encodes once its types are read, whichever update came first', () => {
    for (const order of [[mapState, textState], [textState, mapState]]) {
      const doc = loadDoc(order, 1);
      doc.getMap('root').toJSON();
      doc.getText('t').toString();
      const state = Y.encodeStateAsUpdate(doc);
      // And it is what its own state reloads to.
      const again = loadDoc([state], 1);
      expect(again.getMap('root').toJSON()).toEqual(doc.getMap('root').toJSON());
      expect(again.getText('t').toString()).toBe(doc.getText('t').toString());
    }
  });

  it('without the reload, the spliced doc throws on encoding once the map is read (why loadDoc reloads)', () => {
    const raw = new Y.Doc();
    Y.applyUpdate(raw, mapState);
    Y.applyUpdate(raw, textState);
    raw.getMap('root');
    expect(() => Y.encodeStateAsUpdate(raw)).toThrow(/Unexpected case/);
  });
});
