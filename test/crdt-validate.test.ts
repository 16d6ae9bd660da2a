import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as encoding from 'lib0/encoding';
import * as Y from 'yjs';
import { MeridianError } from '../src/errors.js';
import type { WriterId } from '../src/ids.js';
import { applyOps, putDocument, readDocument } from '../src/crdt/model.js';
import { docDigest } from '../src/crdt/digest.js';
import { applyUpdateSafely, validateUpdate } from '../src/crdt/validate.js';

const ORIGIN = 'test';
const MAX = 1 << 20;
const ctx = { writer: 'us-east~1' as WriterId };

/** A live doc with some content, and the update that builds it. */
function liveDoc(): { doc: Y.Doc; state: Uint8Array } {
  const doc = new Y.Doc();
  doc.clientID = 5;
  putDocument(doc, { a: 1, o: { x: [1, 2], y: 'z' } }, ctx, ORIGIN);
  applyOps(doc, [{ op: 'insertText', path: ['t'], index: 0, text: 'hello' }, { op: 'increment', path: ['c'], by: 2 }, { op: 'add', path: ['s'], value: 'e' }], ctx, ORIGIN);
  return { doc, state: Y.encodeStateAsUpdate(doc) };
}

function invalidUpdateError(fn: () => unknown): MeridianError | null {
  try {
    fn();
    return null;
  } catch (err) {
    expect(err).toBeInstanceOf(MeridianError);
    expect((err as MeridianError).code).toBe('invalid_update');
    return err as MeridianError;
  }
}

/** Random bytes, often starting with the small counts a real update starts with. */
const bytesArb = fc.oneof(
  fc.uint8Array({ minLength: 0, maxLength: 128 }),
  fc.tuple(fc.nat(2), fc.nat(3), fc.uint8Array({ maxLength: 96 })).map(([a, b, rest]) => Uint8Array.from([a, b, ...rest])),
);

describe('validateUpdate on untrusted bytes', () => {
  it('refuses random bytes quickly, or accepts them without any other error', () => {
    fc.assert(
      fc.property(bytesArb, (bytes) => {
        const started = performance.now();
        invalidUpdateError(() => validateUpdate(bytes, MAX));
        expect(performance.now() - started).toBeLessThan(250);
      }),
      { numRuns: 3000 },
    );
  });

  it('refuses absurd struct and client counts before decoding', () => {
    const huge = Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3]);
    expect(invalidUpdateError(() => validateUpdate(huge, MAX))?.message).toMatch(/claims \d+ clients/);
    // One client claiming four billion structs: decoding stops at the end of the input.
    const structs = Uint8Array.from([1, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 0, 0, 1]);
    expect(invalidUpdateError(() => validateUpdate(structs, MAX))).not.toBeNull();
  });

  it('refuses empty, oversized and truncated updates', () => {
    const { state } = liveDoc();
    expect(invalidUpdateError(() => validateUpdate(new Uint8Array(0), MAX))?.message).toMatch(/empty/);
    expect(invalidUpdateError(() => validateUpdate(state, state.byteLength - 1))?.message).toMatch(/at most/);
    expect(invalidUpdateError(() => validateUpdate(state, state.byteLength))).toBeNull();
    for (let len = 1; len < state.byteLength; len++) {
      expect(invalidUpdateError(() => validateUpdate(state.subarray(0, len), MAX))).not.toBeNull();
    }
  });

  it('refuses a zero-length deletion, which makes Yjs throw half way through applying', () => {
    const encoder = encoding.createEncoder();
    for (const n of [0, 1, 7, 1, 0, 0]) encoding.writeVarUint(encoder, n); // no structs; client 7 deletes [0, 0)
    const update = encoding.toUint8Array(encoder);
    expect(() => Y.applyUpdate(new Y.Doc(), update)).toThrow();
    expect(invalidUpdateError(() => validateUpdate(update, MAX))?.message).toMatch(/invalid length/);
  });

  it("refuses an item referring to its own client's later clock", () => {
    // A real update with one origin rewritten to point forward (found by fuzzing).
    const hex =
      '01090500280104726f6f740161017d01270104726f6f74016f012800050101780175027d017d02210104726f6f7405006c6976650128' +
      '0104726f6f74017401760102007477047465787404010a746578743a5b2274225d0568656c6c6f280104726f6f7401630176010200' +
      '747707636f756e74657228010d636f756e7465723a5b2263225d0177017d5fa8056901780105010301';
    const update = Uint8Array.from(Buffer.from(hex, 'hex'));
    expect(() => Y.applyUpdate(new Y.Doc(), update)).toThrow();
    expect(invalidUpdateError(() => validateUpdate(update, MAX))?.message).toMatch(/later clock/);
  });

  it('refuses subdocuments', () => {
    const doc = new Y.Doc();
    doc.clientID = 7;
    doc.getMap('root').set('sub', new Y.Doc());
    expect(invalidUpdateError(() => validateUpdate(Y.encodeStateAsUpdate(doc), MAX))?.message).toMatch(/subdocument/);

  });
});

describe('applyUpdateSafely', () => {
  it('integrates what Yjs held back once everything has arrived, in an order where Yjs alone keeps it waiting', () => {
    // Updates of two clients (1000, 1001) as a region's model wrote them, in
    // the order the convergence property test found: Yjs notes the clock it
    // waits for one too high, and without a retry keeps 1000@3 and 1001@0 back.
    const u = (...bytes: number[]) => Uint8Array.from(bytes);
    const updates = [
      u(1, 1, 232, 7, 5, 168, 232, 7, 4, 1, 120, 0), u(0, 1, 232, 7, 1, 4, 1), u(1, 1, 233, 7, 0, 168, 232, 7, 2, 1, 120, 0),
      u(1, 1, 232, 7, 4, 168, 232, 7, 3, 1, 120, 1, 232, 7, 1, 3, 1),
      u(1, 2, 232, 7, 0, 40, 1, 4, 114, 111, 111, 116, 1, 97, 1, 125, 0, 40, 1, 4, 114, 111, 111, 116, 5, 0, 108, 105, 118, 101, 1, 120, 0),
      u(0, 1, 232, 7, 1, 2, 1), u(1, 1, 232, 7, 2, 168, 232, 7, 1, 1, 120, 1, 232, 7, 1, 0, 2), u(1, 1, 232, 7, 3, 168, 233, 7, 0, 1, 120, 1, 233, 7, 1, 0, 1),
    ];
    const alone = new Y.Doc();
    for (const update of updates) Y.applyUpdate(alone, update);
    expect(alone.store.pendingStructs).not.toBeNull();

    const doc = new Y.Doc();
    for (const update of updates) expect(applyUpdateSafely(doc, update, null).pending).toBe(update !== updates[updates.length - 1]);
    expect(doc.store.pendingStructs).toBeNull();
    expect(doc.store.pendingDs).toBeNull();
    const merged = new Y.Doc();
    Y.applyUpdate(merged, Y.mergeUpdates(updates));
    expect(docDigest(doc)).toEqual(docDigest(merged));
    expect(readDocument(doc)).toEqual(readDocument(merged));
  });

  it('never changes a live doc when it refuses an update, and never throws anything else', () => {
    const { doc, state } = liveDoc();
    const mutated = fc
      .tuple(fc.array(fc.tuple(fc.nat(state.byteLength - 1), fc.nat(255)), { minLength: 1, maxLength: 4 }), fc.nat(state.byteLength))
      .map(([flips, cut]) => {
        const bytes = Uint8Array.from(state);
        for (const [at, value] of flips) bytes[at] = value;
        return bytes.subarray(0, Math.max(1, cut));
      });
    fc.assert(
      fc.property(fc.oneof(bytesArb, mutated), (bytes) => {
        const target = new Y.Doc();
        Y.applyUpdate(target, Y.encodeStateAsUpdate(doc));
        const before = JSON.stringify(readDocument(target));
        const digest = docDigest(target);
        const refused = invalidUpdateError(() => applyUpdateSafely(target, bytes, ORIGIN));
        if (refused !== null) {
          expect(JSON.stringify(readDocument(target))).toBe(before);
          expect(docDigest(target)).toEqual(digest);
        } else {
          readDocument(target);
        }
      }),
      { numRuns: 1500 },
    );
    expect(readDocument(doc)).toEqual({ a: 1, c: 2, o: { x: [1, 2], y: 'z' }, s: ['e'], t: 'hello' });
  });

  it('reports pending structs until their dependencies arrive', () => {
    const source = new Y.Doc();
    const updates: Uint8Array[] = [];
    source.on('update', (u: Uint8Array) => updates.push(u));
    putDocument(source, { a: 1 }, ctx, ORIGIN);
    putDocument(source, { a: 2 }, ctx, ORIGIN);
    const [first, second] = updates as [Uint8Array, Uint8Array];

    const target = new Y.Doc();
    expect(applyUpdateSafely(target, second, ORIGIN)).toEqual({ pending: true });
    expect(readDocument(target)).toBeNull();
    expect(applyUpdateSafely(target, first, ORIGIN)).toEqual({ pending: false });
    expect(readDocument(target)).toEqual({ a: 2 });
  });

  it('applies with the given origin', () => {
    const { state } = liveDoc();
    const target = new Y.Doc();
    const origins: unknown[] = [];
    target.on('update', (_u: Uint8Array, origin: unknown) => origins.push(origin));
    applyUpdateSafely(target, state, 'peer');
    expect(origins).toEqual(['peer']);
  });
});
