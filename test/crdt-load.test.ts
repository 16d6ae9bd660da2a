/**
 * Updates that hold different content under the same Yjs ids (two clients
 * wrote under one client id at two regions): which ones may splice, and that
 * a doc built from them stays encodable once its types are read.
 */
import * as Y from 'yjs';
import { describe, expect, it } from 'vitest';
import { CostlyLoad, loadDoc, loadsWithinBound, mayCollide, mayHaveDiverged, mergeMany, placedOf, rebuiltDocs, refusedDocLoads, reloadedIfDiverged } from '../src/crdt/load.js';
import { applyValidated } from '../src/crdt/validate.js';
import { contentOf, quadraticMerge } from './helpers/quadratic-merge.js';

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

  it('finds an item placed beside a map entry, or between two characters of one run with others between', () => {
    // Another writer's insert between the first two characters of a text it saw under this client id.
    const text = written((d) => d.getText('t').insert(0, 'abc'));
    const other = new Y.Doc();
    other.clientID = 7;
    Y.applyUpdate(other, Y.encodeStateAsUpdate(text));
    const seen = Y.encodeStateVector(other);
    other.getText('t').insert(1, 'Z');
    const insert = Y.encodeStateAsUpdate(other, seen);
    // Held here under those ids: three sets of one key (the first two merged into one deleted run).
    const sets = loadDoc([Y.encodeStateAsUpdate(written((d) => {
      for (const value of [1, 2, 3]) d.getMap('root').set('a', value);
    }))], 1);
    expect(mayCollide(sets, [Y.decodeUpdate(insert)])).toBe(true);
    // Held here: the run 'abc'. An insert naming 'a' and 'c' as its neighbours: only a writer that held other content
    // under the id of 'b' can have seen them side by side.
    const run = loadDoc([Y.encodeStateAsUpdate(text)], 1);
    expect(mayCollide(run, [Y.decodeUpdate(insert)])).toBe(false);
    const skipping = Y.decodeUpdate(insert);
    (skipping.structs[0] as Y.Item).rightOrigin = Y.createID(CLIENT, 2);
    expect(mayCollide(run, [skipping])).toBe(true);
  });

  it('finds an item placed inside a map entry that collided into a run (found by fuzzing)', () => {
    // Client 100's text run 'yzx' sits here under a map key, where a writer of client 100 set it; client 202 inserted
    // between its first two characters where they were text. Placed, the document differs from what it reloads to.
    const before = new Uint8Array([3,4,203,1,0,39,1,4,114,111,111,116,2,109,50,1,40,0,203,1,0,1,110,1,125,5,168,1,0,1,119,2,118,57,136,1,2,1,125,1,4,100,0,33,1,4,114,111,111,116,2,107,50,1,164,100,0,3,121,122,120,39,1,4,114,111,111,116,2,109,49,1,40,0,100,4,1,110,1,125,8,4,1,0,33,1,4,114,111,111,116,2,107,51,1,8,1,4,108,105,115,116,1,125,0,129,1,1,1,33,1,4,114,111,111,116,2,107,48,1,2,100,1,0,1,1,2,0,1,2,2]);
    const update = new Uint8Array([1,1,202,1,0,196,100,1,100,2,1,120,2,100,1,0,1,1,1,0,1]);
    const doc = new Y.Doc();
    Y.applyUpdate(doc, before);
    expect(reloadedIfDiverged(doc)).toBeNull();
    expect(mayCollide(doc, [Y.decodeUpdate(update)])).toBe(true);
    applyValidated(doc, update, 'peer');
    expect(reloadedIfDiverged(doc)).not.toBeNull();
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

describe('loading many updates of concurrent editors', () => {
  /** Two editors typing into the middle of one text, each keystroke an update, syncing every fifth. */
  function typedAtOnce(keystrokes: number): { updates: Uint8Array[]; text: string } {
    const a = new Y.Doc();
    a.clientID = 11;
    const b = new Y.Doc();
    b.clientID = 22;
    const updates: Uint8Array[] = [];
    const keep = (u: Uint8Array, origin: unknown): void => void (origin !== 'sync' && updates.push(u));
    a.on('update', keep);
    b.on('update', keep);
    for (let i = 0; i < keystrokes; i++) {
      for (const d of [a, b]) d.getText('t').insert(Math.floor(d.getText('t').length / 2), 'x');
      if (i % 5 === 0) {
        Y.applyUpdate(b, Y.encodeStateAsUpdate(a, Y.encodeStateVector(b)), 'sync');
        Y.applyUpdate(a, Y.encodeStateAsUpdate(b, Y.encodeStateVector(a)), 'sync');
      }
    }
    Y.applyUpdate(b, Y.encodeStateAsUpdate(a, Y.encodeStateVector(b)), 'sync');
    return { updates, text: b.getText('t').toString() };
  }

  it('applies them one by one: their few short scans do not count as a reason to build the document anew', () => {
    const { updates, text } = typedAtOnce(5_000);
    const before = rebuiltDocs();
    expect(loadDoc(updates, 5).getText('t').toString()).toBe(text);
    expect(rebuiltDocs()).toBe(before);
  });

  it('merges them in groups to the update that merging all at once gives', () => {
    const { updates, text } = typedAtOnce(2_000);
    const merged = mergeMany(updates);
    expect(Buffer.from(merged).equals(Buffer.from(Y.mergeUpdates(updates)))).toBe(true);
    const doc = new Y.Doc();
    Y.applyUpdate(doc, merged);
    expect(doc.getText('t').toString()).toBe(text);
  });
});

describe('updates whose merge every load places item by item', () => {
  const { updates, content } = quadraticMerge(3_000);
  const merged = Y.mergeUpdates(updates);

  it('load in the order admitted; their merge would not load within the bound', () => {
    expect(contentOf(loadDoc(updates, 5))).toBe(content);
    // 1,000 of each: 10^6 steps merged, past the bound of 500,000, in a state small enough to be tried (under 64 KiB).
    const fewer = quadraticMerge(1_000);
    const doc = loadDoc(fewer.updates, 5);
    expect(contentOf(doc)).toBe(fewer.content);
    expect(loadsWithinBound(doc, Y.encodeStateAsUpdate(doc))).toBe(false);
  });

  it('are not built from their merge: the load stops at the bound and says so', () => {
    const refused = refusedDocLoads();
    expect(() => loadDoc([merged], 5)).toThrow(CostlyLoad);
    // Two parts whose order is no cheaper: tried as given, then merged, both stopped.
    const another = written((doc) => doc.getMap('m').set('k', 1));
    expect(() => loadDoc([merged, Y.encodeStateAsUpdate(another)], 5)).toThrow(CostlyLoad);
    expect(refusedDocLoads()).toBe(refused + 2);
  });

  it('leave documents whose merge loads in a pass alone', () => {
    const typed = new Y.Doc();
    for (let i = 0; i < 3_000; i++) typed.getText('t').insertEmbed(i, { i });
    expect(loadsWithinBound(typed, Y.encodeStateAsUpdate(typed))).toBe(true);
  });
});

describe('the check after a peer update (mayHaveDiverged)', () => {
  // Found by fuzzing: a base document, then two updates under client id 100 written by two writers, the second
  // arriving while the first waits for a struct of client 202 (and so do its deletions). The second collides with
  // nothing it holds, yet once placed the document is no longer what its own encoding reloads to.
  const base = new Uint8Array([1,4,1,0,33,1,4,114,111,111,116,2,107,48,1,40,1,4,114,111,111,116,2,107,49,1,119,2,118,56,4,1,4,116,101,120,116,3,120,121,122,8,1,4,108,105,115,116,2,119,2,97,51,119,1,98,1,1,1,0,1]);
  const waiting = new Uint8Array([1,2,100,0,168,202,1,0,1,119,3,118,56,49,200,1,5,1,6,2,119,2,97,57,119,1,98,1,202,1,1,0,1]);
  const placed = new Uint8Array([1,2,100,0,136,1,6,1,125,0,168,1,1,1,119,3,118,52,53,1,1,1,1,1]);

  it('asks for a check wherever the document came to differ from what it reloads to', () => {
    const doc = new Y.Doc();
    Y.applyUpdate(doc, base);
    applyValidated(doc, waiting, 'peer');
    expect(doc.store.pendingStructs).not.toBeNull();
    expect(reloadedIfDiverged(doc)).toBeNull();
    const collided = mayCollide(doc, [Y.decodeUpdate(placed)]);
    const before = placedOf(doc);
    applyValidated(doc, placed, 'peer');
    expect(collided).toBe(false);
    expect(reloadedIfDiverged(doc)).not.toBeNull();
    expect(mayHaveDiverged(doc, before, collided)).toBe('waited');
  });
});
