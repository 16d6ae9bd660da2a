import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { MeridianError, type ErrorCode } from '../src/errors.js';
import type { DocKey, WriterId } from '../src/ids.js';
import { applyOps, deleteDocument, mergePatch, parseOps, putDocument, readDocument } from '../src/crdt/model.js';
import { docDigest } from '../src/crdt/digest.js';
import { stableClientId } from '../src/crdt/clientid.js';
import { loadDoc } from '../src/crdt/load.js';
import type { Json, JsonObject, Op, WriteContext } from '../src/crdt/types.js';

const ORIGIN = Symbol('test');

interface Region {
  doc: Y.Doc;
  ctx: WriteContext;
}

function region(name: string, clientId: number): Region {
  const doc = new Y.Doc();
  doc.clientID = clientId;
  return { doc, ctx: { writer: `${name}~x` as WriterId } };
}

/** Runs a write and returns the updates it emitted. */
function updatesOf(doc: Y.Doc, write: () => void): Uint8Array[] {
  const updates: Uint8Array[] = [];
  const listener = (update: Uint8Array): void => {
    updates.push(update);
  };
  doc.on('update', listener);
  try {
    write();
  } finally {
    doc.off('update', listener);
  }
  return updates;
}

/** Brings every doc up to the union of all of them. */
function sync(...docs: Y.Doc[]): void {
  const states = docs.map((d) => Y.encodeStateAsUpdate(d));
  for (const d of docs) for (const s of states) Y.applyUpdate(d, s);
}

function expectError(fn: () => unknown, code: ErrorCode, message?: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(MeridianError);
  expect((caught as MeridianError).code).toBe(code);
  if (message) expect((caught as MeridianError).message).toMatch(message);
}

function ops(r: Region, list: Op[]): void {
  applyOps(r.doc, list, r.ctx, ORIGIN);
}

describe('put', () => {
  it('creates, then replaces exactly, rendering keys sorted', () => {
    const r = region('a', 1);
    expect(readDocument(r.doc)).toBeNull();
    putDocument(r.doc, { b: 1, a: { y: [1, { z: null }], x: 's' } }, r.ctx, ORIGIN);
    expect(JSON.stringify(readDocument(r.doc))).toBe('{"a":{"x":"s","y":[1,{"z":null}]},"b":1}');
    putDocument(r.doc, { a: { x: 't' }, c: true }, r.ctx, ORIGIN);
    expect(readDocument(r.doc)).toEqual({ a: { x: 't' }, c: true });
    putDocument(r.doc, {}, r.ctx, ORIGIN);
    expect(readDocument(r.doc)).toEqual({});
  });

  it('emits exactly one update per write and does not rewrite unchanged fields', () => {
    const r = region('a', 1);
    putDocument(r.doc, { s: 'x', o: { n: 1 }, arr: [1, 2] }, r.ctx, ORIGIN);
    const root = r.doc.getMap('root');
    const nested = root.get('o') as Y.Map<unknown>;
    const before = [root._map.get('s')?.id, root._map.get('arr')?.id, nested._map.get('n')?.id];
    // The document as it is: nothing to write.
    expect(updatesOf(r.doc, () => putDocument(r.doc, { s: 'x', o: { n: 1 }, arr: [1, 2] }, r.ctx, ORIGIN))).toHaveLength(0);
    expect(updatesOf(r.doc, () => putDocument(r.doc, { s: 'y', o: { n: 1 }, arr: [1, 2] }, r.ctx, ORIGIN))).toHaveLength(1);
    expect([root._map.get('arr')?.id, nested._map.get('n')?.id]).toEqual(before.slice(1));
    expect(root.get('o')).toBe(nested);
  });

  it('recurses into nested maps so concurrent puts of different fields both survive', () => {
    const a = region('a', 1);
    const b = region('b', 2);
    putDocument(a.doc, { o: { x: 1, y: 1 }, k: 0 }, a.ctx, ORIGIN);
    sync(a.doc, b.doc);
    putDocument(a.doc, { o: { x: 2, y: 1 }, k: 0 }, a.ctx, ORIGIN);
    putDocument(b.doc, { o: { x: 1, y: 2 }, k: 0 }, b.ctx, ORIGIN);
    sync(a.doc, b.doc);
    expect(readDocument(a.doc)).toEqual({ o: { x: 2, y: 2 }, k: 0 });
    expect(readDocument(b.doc)).toEqual(readDocument(a.doc));
  });

  it('keeps a counter, set or text whose rendering it repeats, and resets one it overwrites', () => {
    const r = region('a', 1);
    ops(r, [
      { op: 'increment', path: ['c'], by: 5 },
      { op: 'add', path: ['s'], value: 'x' },
      { op: 'insertText', path: ['t'], index: 0, text: 'hi' },
    ]);
    const read = readDocument(r.doc) as JsonObject;
    putDocument(r.doc, { ...read, extra: 1 }, r.ctx, ORIGIN);
    ops(r, [{ op: 'increment', path: ['c'], by: 1 }, { op: 'add', path: ['s'], value: 'y' }]);
    expect(readDocument(r.doc)).toEqual({ c: 6, s: ['x', 'y'], t: 'hi', extra: 1 });
    putDocument(r.doc, { c: 100, s: [], t: 'other' }, r.ctx, ORIGIN);
    expect(readDocument(r.doc)).toEqual({ c: 100, s: [], t: 'other' });
    putDocument(r.doc, {}, r.ctx, ORIGIN);
    ops(r, [
      { op: 'increment', path: ['c'], by: 1 },
      { op: 'add', path: ['s'], value: 'z' },
      { op: 'insertText', path: ['t'], index: 0, text: '!' },
    ]);
    expect(readDocument(r.doc)).toEqual({ c: 1, s: ['z'], t: '!' });
  });

  it('refuses non-JSON, non-objects, reserved keys and deep nesting without emitting anything', () => {
    const r = region('a', 1);
    putDocument(r.doc, { keep: 1 }, r.ctx, ORIGIN);
    const bad: unknown[] = [
      { '\u0000live': false },
      { a: { '\u0000t': 'counter' } },
      { a: [{ '\u0000x': 1 }] },
      { n: Number.NaN },
      { u: undefined },
      [1, 2],
      null,
      { d: JSON.parse('['.repeat(70) + ']'.repeat(70)) as Json },
      JSON.parse('{"a": [{"__proto__": {"x": 1}}]}') as unknown,
      { s: 'lone \ud800 surrogate' },
      { ['k\udc00']: 1 },
    ];
    for (const value of bad) {
      const updates = updatesOf(r.doc, () => {
        expectError(() => putDocument(r.doc, value as JsonObject, r.ctx, ORIGIN), 'invalid_body');
        expectError(() => mergePatch(r.doc, value as JsonObject, r.ctx, ORIGIN), 'invalid_body');
      });
      expect(updates).toHaveLength(0);
    }
    expect(readDocument(r.doc)).toEqual({ keep: 1 });
  });
});

describe('merge patch (RFC 7396)', () => {
  it('merges objects, deletes on null, replaces arrays and scalars, creates the document', () => {
    const r = region('a', 1);
    mergePatch(r.doc, { a: { b: null, c: 1 } }, r.ctx, ORIGIN);
    expect(readDocument(r.doc)).toEqual({ a: { c: 1 } });
    mergePatch(r.doc, { a: { d: [1] }, e: 'x', gone: null }, r.ctx, ORIGIN);
    expect(readDocument(r.doc)).toEqual({ a: { c: 1, d: [1] }, e: 'x' });
    mergePatch(r.doc, { a: { c: null, d: [2, 3] }, e: { f: { g: null, h: 1 } } }, r.ctx, ORIGIN);
    expect(readDocument(r.doc)).toEqual({ a: { d: [2, 3] }, e: { f: { h: 1 } } });
    mergePatch(r.doc, { e: 5, a: null }, r.ctx, ORIGIN);
    expect(readDocument(r.doc)).toEqual({ e: 5 });
  });

  it('clears a counter it replaces', () => {
    const r = region('a', 1);
    ops(r, [{ op: 'increment', path: ['o', 'c'], by: 3 }]);
    mergePatch(r.doc, { o: null }, r.ctx, ORIGIN);
    ops(r, [{ op: 'increment', path: ['o', 'c'], by: 1 }]);
    expect(readDocument(r.doc)).toEqual({ o: { c: 1 } });
  });
});

describe('ops', () => {
  it('set and delete, creating missing intermediate objects', () => {
    const r = region('a', 1);
    ops(r, [{ op: 'set', path: ['a', 'b', 'c'], value: { d: [1] } }]);
    expect(readDocument(r.doc)).toEqual({ a: { b: { c: { d: [1] } } } });
    ops(r, [
      { op: 'delete', path: ['a', 'b', 'c'] },
      { op: 'delete', path: ['nothing', 'here'] },
      { op: 'set', path: ['x'], value: null },
    ]);
    expect(readDocument(r.doc)).toEqual({ a: { b: {} }, x: null });
  });

  it('later ops see earlier ones in the same request', () => {
    const r = region('a', 1);
    ops(r, [
      { op: 'set', path: ['o'], value: { n: 1 } },
      { op: 'increment', path: ['o', 'c'], by: 2 },
      { op: 'increment', path: ['o', 'c'], by: 3 },
      { op: 'insertText', path: ['t'], index: 0, text: 'abc' },
      { op: 'insertText', path: ['t'], index: 3, text: 'de' },
      { op: 'deleteText', path: ['t'], index: 1, length: 3 },
      { op: 'add', path: ['s'], value: 1 },
      { op: 'remove', path: ['s'], value: 1 },
      { op: 'add', path: ['s'], value: 2 },
    ]);
    expect(readDocument(r.doc)).toEqual({ o: { n: 1, c: 5 }, t: 'ae', s: [2] });
    expectError(() => ops(r, [{ op: 'set', path: ['v'], value: 1 }, { op: 'increment', path: ['v'], by: 1 }]), 'type_mismatch', /ops\[1\]/);
    ops(r, [{ op: 'delete', path: ['o'] }, { op: 'increment', path: ['o', 'c'], by: 1 }]);
    expect(readDocument(r.doc)).toEqual({ o: { c: 1 }, t: 'ae', s: [2] });
  });

  it('refuses type mismatches', () => {
    const r = region('a', 1);
    ops(r, [
      { op: 'set', path: ['n'], value: 1 },
      { op: 'set', path: ['nul'], value: null },
      { op: 'increment', path: ['c'], by: 1 },
      { op: 'add', path: ['s'], value: 'x' },
      { op: 'insertText', path: ['t'], index: 0, text: 'x' },
      { op: 'set', path: ['o'], value: {} },
    ]);
    const cases: Op[] = [
      { op: 'increment', path: ['n'], by: 1 },
      { op: 'increment', path: ['nul'], by: 1 },
      { op: 'increment', path: ['s'], by: 1 },
      { op: 'increment', path: ['o'], by: 1 },
      { op: 'add', path: ['c'], value: 1 },
      { op: 'remove', path: ['t'], value: 1 },
      { op: 'insertText', path: ['s'], index: 0, text: 'x' },
      { op: 'deleteText', path: ['n'], index: 0, length: 0 },
      { op: 'set', path: ['n', 'x'], value: 1 },
      { op: 'delete', path: ['c', 'x'] },
      { op: 'increment', path: ['t', 'deep', 'x'], by: 1 },
    ];
    for (const op of cases) expectError(() => ops(r, [op]), 'type_mismatch');
  });

  it('refuses text ranges outside the text', () => {
    const r = region('a', 1);
    ops(r, [{ op: 'insertText', path: ['t'], index: 0, text: 'abc' }]);
    expectError(() => ops(r, [{ op: 'insertText', path: ['t'], index: 4, text: 'x' }]), 'invalid_ops');
    expectError(() => ops(r, [{ op: 'deleteText', path: ['t'], index: 2, length: 2 }]), 'invalid_ops');
    expectError(() => ops(r, [{ op: 'insertText', path: ['new'], index: 1, text: 'x' }]), 'invalid_ops');
    expectError(() => ops(r, [{ op: 'deleteText', path: ['new'], index: 0, length: 1 }]), 'invalid_ops');
    ops(r, [{ op: 'deleteText', path: ['t'], index: 0, length: 3 }, { op: 'insertText', path: ['t'], index: 0, text: 'z' }]);
    expect(readDocument(r.doc)).toEqual({ t: 'z' });
  });

  it('never splits a character: an index or range end inside a surrogate pair is refused', () => {
    const r = region('a', 1);
    // An emoji, then "X" at index 1.
    ops(r, [{ op: 'insertText', path: ['t'], index: 0, text: '\u{1F600}' }]);
    const before = Y.encodeStateAsUpdate(r.doc);
    expectError(() => ops(r, [{ op: 'insertText', path: ['t'], index: 1, text: 'X' }]), 'invalid_ops', /surrogate pair/);
    expectError(() => ops(r, [{ op: 'deleteText', path: ['t'], index: 0, length: 1 }]), 'invalid_ops', /surrogate pair/);
    expectError(() => ops(r, [{ op: 'deleteText', path: ['t'], index: 1, length: 1 }]), 'invalid_ops', /surrogate pair/);
    expect(Y.encodeStateAsUpdate(r.doc)).toEqual(before);
    // Within one request, later ops see the pairs earlier ops inserted.
    expectError(
      () => ops(r, [{ op: 'insertText', path: ['t'], index: 2, text: 'a\u{1F680}b' }, { op: 'insertText', path: ['t'], index: 4, text: 'X' }]),
      'invalid_ops',
      /ops\[1\].*surrogate pair/,
    );
    ops(r, [
      { op: 'insertText', path: ['t'], index: 2, text: 'X' },
      { op: 'insertText', path: ['t'], index: 0, text: '\u{1F680}' },
      { op: 'deleteText', path: ['t'], index: 2, length: 2 },
    ]);
    expect(readDocument(r.doc)).toEqual({ t: '\u{1F680}X' });
  });

  it('is atomic: a failing op leaves the doc unchanged and emits nothing', () => {
    const r = region('a', 1);
    ops(r, [{ op: 'set', path: ['n'], value: 1 }]);
    const before = readDocument(r.doc);
    const digest = docDigest(r.doc);
    const updates = updatesOf(r.doc, () =>
      expectError(
        () =>
          ops(r, [
            { op: 'set', path: ['a'], value: 1 },
            { op: 'increment', path: ['c'], by: 1 },
            { op: 'add', path: ['n'], value: 1 },
          ]),
        'type_mismatch',
        /ops\[2\]/,
      ),
    );
    expect(updates).toHaveLength(0);
    expect(readDocument(r.doc)).toEqual(before);
    expect(docDigest(r.doc)).toEqual(digest);
  });

  it('refuses counter slots beyond the safe integer range', () => {
    const r = region('a', 1);
    ops(r, [{ op: 'increment', path: ['c'], by: Number.MAX_SAFE_INTEGER }]);
    expectError(() => ops(r, [{ op: 'increment', path: ['c'], by: 1 }]), 'invalid_ops');
  });
});

describe('parseOps', () => {
  const bad: Array<[unknown, RegExp]> = [
    [{}, /array of ops/],
    ['x', /array of ops/],
    [[], /at least one/],
    [[{ op: 'nope', path: ['a'] }], /ops\[0\]: unknown op/],
    [[{ op: 'set', path: [], value: 1 }], /ops\[0\]: "path" must not be empty/],
    [[{ op: 'set', path: 'a', value: 1 }], /"path" must be an array/],
    [[{ op: 'set', path: ['a', 1], value: 1 }], /path\[1\] must be a string/],
    [[{ op: 'set', path: ['\u0000live'], value: 1 }], /reserved/],
    [[{ op: 'set', path: ['a'], value: { '\u0000t': 'counter' } }], /reserved/],
    [[{ op: 'set', path: ['__proto__'], value: 1 }], /__proto__/],
    [[{ op: 'add', path: ['a'], value: '\udfff' }], /lone surrogate/],
    [[{ op: 'insertText', path: ['a'], index: 0, text: 'x\ud800' }], /lone surrogate/],
    [[{ op: 'set', path: ['a'] }], /requires "value"/],
    [[{ op: 'delete', path: ['a'], value: 1 }], /unexpected field "value"/],
    [[{ op: 'delete', path: ['a'] }, { op: 'increment', path: ['a'], by: 1.5 }], /ops\[1\]: "by" must be a safe integer/],
    [[{ op: 'increment', path: ['a'], by: 2 ** 53 }], /safe integer/],
    [[{ op: 'increment', path: ['a'], by: '1' }], /safe integer/],
    [[{ op: 'add', path: ['a'], value: [1] }], /must be a string, finite number/],
    [[{ op: 'remove', path: ['a'], value: { x: 1 } }], /must be a string, finite number/],
    [[{ op: 'insertText', path: ['a'], index: -1, text: 'x' }], /must not be negative/],
    [[{ op: 'insertText', path: ['a'], index: 0, text: 5 }], /"text" must be a string/],
    [[{ op: 'deleteText', path: ['a'], index: 0 }], /requires "length"/],
    [[null], /must be an object/],
    [Array.from({ length: 1001 }, () => ({ op: 'delete', path: ['a'] })), /at most 1000/],
  ];
  it.each(bad)('refuses %j', (body, message) => {
    expectError(() => parseOps(body), 'invalid_ops', message);
  });

  it('accepts an array or {"ops": [...]} and returns fresh copies', () => {
    const value = { x: [1] };
    const list = [{ op: 'set', path: ['a'], value }];
    const parsed = parseOps({ ops: list });
    expect(parsed).toEqual(list);
    expect(parseOps(list)).toEqual(list);
    expect((parsed[0] as { value: Json }).value).not.toBe(value);
  });
});

describe('merging between regions', () => {
  it('keeps the value from the higher client id when two regions set one field', () => {
    for (const [lowValue, highValue] of [['low', 'high'], ['HIGH?', 'low?']]) {
      const low = region('a', 100);
      const high = region('b', 200);
      ops(high, [{ op: 'set', path: ['k'], value: highValue as string }]);
      ops(low, [{ op: 'set', path: ['k'], value: lowValue as string }]);
      sync(low.doc, high.doc);
      expect(readDocument(low.doc)).toEqual({ k: highValue });
      expect(readDocument(high.doc)).toEqual({ k: highValue });
    }
  });

  it('sums counters across writers, including concurrently created ones', () => {
    const rs = [region('us', 1), region('eu', 2), region('ap', 3)];
    rs.forEach((r, i) => ops(r, [{ op: 'increment', path: ['stats', 'views'], by: i + 1 }]));
    sync(...rs.map((r) => r.doc));
    for (const r of rs) expect(readDocument(r.doc)).toEqual({ stats: { views: 6 } });
    rs.forEach((r) => ops(r, [{ op: 'increment', path: ['stats', 'views'], by: 10 }]));
    ops(rs[0] as Region, [{ op: 'increment', path: ['stats', 'views'], by: -4 }]);
    sync(...rs.map((r) => r.doc));
    for (const r of rs) expect(readDocument(r.doc)).toEqual({ stats: { views: 32 } });
  });

  it('is add-wins for sets and orders elements deterministically', () => {
    const a = region('a', 1);
    const b = region('b', 2);
    ops(a, [{ op: 'add', path: ['s'], value: 'x' }, { op: 'add', path: ['s'], value: 'y' }]);
    sync(a.doc, b.doc);
    ops(a, [{ op: 'remove', path: ['s'], value: 'x' }, { op: 'remove', path: ['s'], value: 'y' }]);
    ops(b, [{ op: 'add', path: ['s'], value: 'x' }]);
    sync(a.doc, b.doc);
    expect(readDocument(a.doc)).toEqual({ s: ['x'] });
    expect(readDocument(b.doc)).toEqual({ s: ['x'] });

    const c = region('c', 3);
    const d = region('d', 4);
    const elements = ['b', 10, 'a', true, null, 2, 'A'];
    for (const v of elements) ops(c, [{ op: 'add', path: ['s'], value: v }]);
    for (const v of [...elements].reverse()) ops(d, [{ op: 'add', path: ['s'], value: v }]);
    const order = ['"A"', '"a"', '"b"', '10', '2', 'null', 'true'].map((t) => JSON.parse(t) as Json);
    expect(readDocument(c.doc)).toEqual({ s: order });
    expect(JSON.stringify(readDocument(d.doc))).toBe(JSON.stringify(readDocument(c.doc)));
  });

  it('merges concurrent text edits', () => {
    const a = region('a', 1);
    const b = region('b', 2);
    ops(a, [{ op: 'insertText', path: ['t'], index: 0, text: 'hello world' }]);
    sync(a.doc, b.doc);
    ops(a, [{ op: 'insertText', path: ['t'], index: 5, text: ',' }]);
    ops(b, [{ op: 'deleteText', path: ['t'], index: 6, length: 5 }, { op: 'insertText', path: ['t'], index: 6, text: 'there' }]);
    sync(a.doc, b.doc);
    expect(readDocument(a.doc)).toEqual({ t: 'hello, there' });
    expect(readDocument(b.doc)).toEqual({ t: 'hello, there' });
  });

  it('keeps a document alive with the concurrent update when deleted concurrently', () => {
    const a = region('a', 1);
    const b = region('b', 2);
    putDocument(a.doc, { x: 1, y: 2 }, a.ctx, ORIGIN);
    sync(a.doc, b.doc);
    expect(deleteDocument(a.doc, ORIGIN)).toBe(true);
    mergePatch(b.doc, { z: 3, x: 5 }, b.ctx, ORIGIN);
    sync(a.doc, b.doc);
    expect(readDocument(a.doc)).toEqual({ x: 5, z: 3 });
    expect(readDocument(b.doc)).toEqual({ x: 5, z: 3 });

    expect(deleteDocument(a.doc, ORIGIN)).toBe(true);
    sync(a.doc, b.doc);
    expect(readDocument(b.doc)).toBeNull();
  });
});

describe('existence and growth', () => {
  function structs(doc: Y.Doc): number {
    let n = 0;
    for (const list of doc.store.clients.values()) n += list.length;
    return n;
  }

  it('leaves a document deleted when the concurrent update wrote no top-level field', () => {
    const a = region('a', 1);
    const b = region('b', 2);
    ops(a, [{ op: 'increment', path: ['c'], by: 1 }, { op: 'set', path: ['o', 'x'], value: 1 }]);
    sync(a.doc, b.doc);
    expect(deleteDocument(a.doc, ORIGIN)).toBe(true);
    ops(b, [{ op: 'increment', path: ['c'], by: 5 }, { op: 'set', path: ['o', 'y'], value: 2 }]);
    mergePatch(b.doc, { o: { z: 3 } }, b.ctx, ORIGIN);
    sync(a.doc, b.doc);
    expect(readDocument(a.doc)).toBeNull();
    expect(readDocument(b.doc)).toBeNull();
    // Any later write brings it back, with what that write holds.
    mergePatch(b.doc, {}, b.ctx, ORIGIN);
    sync(a.doc, b.doc);
    expect(readDocument(a.doc)).toEqual({});
    ops(a, [{ op: 'increment', path: ['d'], by: 2 }]);
    expect(readDocument(a.doc)).toEqual({ d: 2 });
  });

  it('keeps an empty document existing after a put of {} that follows a concurrent delete', () => {
    const a = region('a', 1);
    const b = region('b', 2);
    putDocument(a.doc, { x: 1 }, a.ctx, ORIGIN);
    sync(a.doc, b.doc);
    deleteDocument(a.doc, ORIGIN);
    mergePatch(b.doc, { y: 2 }, b.ctx, ORIGIN);
    sync(a.doc, b.doc);
    expect(readDocument(a.doc)).toEqual({ y: 2 });
    // The marker went with the delete; a put of {} sets it again.
    putDocument(a.doc, {}, a.ctx, ORIGIN);
    sync(a.doc, b.doc);
    expect(readDocument(b.doc)).toEqual({});
  });

  it('does not grow a document written over and over at one place, at the writer or at a replica', () => {
    const a = region('a', 2 ** 32 + 1);
    const replica = region('r', 7);
    const counter = (): void => ops(a, [{ op: 'increment', path: ['views'], by: 1 }]);
    const field = (i: number): void => mergePatch(a.doc, { at: i }, a.ctx, ORIGIN);
    const replicate = (write: () => void): void => {
      for (const u of updatesOf(a.doc, write)) Y.applyUpdate(replica.doc, u);
    };
    replicate(() => (counter(), field(0)));
    const held = structs(a.doc);
    const bytes = Y.encodeStateAsUpdate(a.doc).byteLength;
    // Three runs, each writing one place: within a run, each write's value and the one it
    // replaced take consecutive clocks of one client, and Yjs merges the tombstones.
    for (let i = 0; i < 1000; i++) replicate(counter);
    for (let i = 1; i <= 1000; i++) replicate(() => field(i));
    for (let i = 0; i < 1000; i++) replicate(counter);
    expect(readDocument(a.doc)).toEqual({ views: 2001, at: 1000 });
    expect(readDocument(replica.doc)).toEqual(readDocument(a.doc));
    // A struct or two where a run of one place follows one of another, none for the 3,000 writes.
    expect(structs(a.doc)).toBeLessThanOrEqual(held + 6);
    expect(structs(replica.doc)).toBe(structs(a.doc));
    expect(structs(loadDoc([Y.encodeStateAsUpdate(a.doc)], 2 ** 32 + 1))).toBe(structs(a.doc));
    expect(Y.encodeStateAsUpdate(a.doc).byteLength).toBeLessThan(bytes + 64);
  });
});

describe('delete', () => {
  it('returns false and emits nothing when the document does not exist', () => {
    const r = region('a', 1);
    expect(updatesOf(r.doc, () => expect(deleteDocument(r.doc, ORIGIN)).toBe(false))).toHaveLength(0);
  });

  it('removes everything, counters included, in one update', () => {
    const r = region('a', 1);
    ops(r, [{ op: 'increment', path: ['o', 'c'], by: 7 }, { op: 'add', path: ['s'], value: 1 }]);
    expect(updatesOf(r.doc, () => deleteDocument(r.doc, ORIGIN))).toHaveLength(1);
    expect(readDocument(r.doc)).toBeNull();
    ops(r, [{ op: 'increment', path: ['o', 'c'], by: 1 }, { op: 'add', path: ['s'], value: 2 }]);
    expect(readDocument(r.doc)).toEqual({ o: { c: 1 }, s: [2] });
  });
});

describe('digest', () => {
  it('tells apart equal state vectors with different deletions', () => {
    const src = region('a', 1);
    const insert = updatesOf(src.doc, () => putDocument(src.doc, { a: 1, b: 2 }, src.ctx, ORIGIN));
    const remove = updatesOf(src.doc, () => src.doc.getMap('root').delete('a'));
    const one = new Y.Doc();
    const two = new Y.Doc();
    for (const u of insert) {
      Y.applyUpdate(one, u);
      Y.applyUpdate(two, u);
    }
    for (const u of remove) Y.applyUpdate(two, u);
    expect(Y.encodeStateVector(one)).toEqual(Y.encodeStateVector(two));
    expect(docDigest(one)).not.toEqual(docDigest(two));
    expect(docDigest(two)).toEqual(docDigest(src.doc));
    expect(docDigest(one)).toHaveLength(32);
  });

  it('is the same for the same updates in any order', () => {
    const a = region('a', 1);
    const b = region('b', 2);
    const updates = [
      ...updatesOf(a.doc, () => putDocument(a.doc, { x: 1, o: { y: 2 } }, a.ctx, ORIGIN)),
      ...updatesOf(b.doc, () => ops(b, [{ op: 'insertText', path: ['t'], index: 0, text: 'ab' }])),
      ...updatesOf(a.doc, () => mergePatch(a.doc, { x: null }, a.ctx, ORIGIN)),
    ];
    const forward = new Y.Doc();
    const backward = new Y.Doc();
    for (const u of updates) Y.applyUpdate(forward, u);
    for (const u of [...updates].reverse()) Y.applyUpdate(backward, u);
    expect(docDigest(forward)).toEqual(docDigest(backward));
    expect(readDocument(forward)).toEqual({ o: { y: 2 }, t: 'ab' });
  });
});

describe('client ids', () => {
  it('are deterministic, in the region range (2^32 up) and differ by writer and document', () => {
    const w1 = 'us-east~1' as WriterId;
    const w2 = 'us-east~2' as WriterId;
    const d1 = 'c/1' as DocKey;
    const id = stableClientId(w1, d1);
    expect(id).toBe(stableClientId(w1, d1));
    expect(Number.isSafeInteger(id) && id >= 2 ** 32).toBe(true);
    expect(stableClientId(w2, d1)).not.toBe(id);
    expect(stableClientId(w1, 'c/2' as DocKey)).not.toBe(id);
  });

  it('survive reloading a doc from its own updates', () => {
    const writer = 'eu-west~1' as WriterId;
    const clientId = stableClientId(writer, 'c/1' as DocKey);
    const stored: Uint8Array[] = [];
    const first = loadDoc([], clientId);
    first.on('update', (u: Uint8Array) => stored.push(u));
    putDocument(first, { a: 1 }, { writer }, ORIGIN);

    const reloaded = loadDoc(stored, clientId);
    reloaded.on('update', (u: Uint8Array) => stored.push(u));
    ops({ doc: reloaded, ctx: { writer } }, [{ op: 'increment', path: ['c'], by: 2 }]);
    expect(reloaded.clientID).toBe(clientId);
    expect(Array.from(reloaded.store.clients.keys())).toEqual([clientId]);
    const last = Y.decodeUpdate(stored[stored.length - 1] as Uint8Array);
    expect(last.structs.every((s) => s.id.client === clientId)).toBe(true);
    expect(readDocument(loadDoc(stored, clientId))).toEqual({ a: 1, c: 2 });
  });
});

describe('rendering of foreign content', () => {
  it('renders Yjs types written by clients and hides reserved keys', () => {
    const doc = new Y.Doc();
    const root = doc.getMap<unknown>('root');
    const arr = new Y.Array<unknown>();
    arr.push([1, 'x']);
    root.set('arr', arr);
    const text = new Y.Text();
    text.insert(0, 'hey');
    root.set('text', text);
    root.set('bin', new Uint8Array([1]));
    root.set('plain', { b: 1, '\u0000h': 2 });
    root.set('\u0000hidden', 1);
    root.set('badMarker', { '\u0000t': 'nope' });
    root.set('__proto__', 1);
    const read = readDocument(doc);
    expect(JSON.stringify(read)).toBe('{"__proto__":1,"arr":[1,"x"],"badMarker":{},"bin":null,"plain":{"b":1},"text":"hey"}');
    expect(Object.getPrototypeOf(read)).toBe(Object.prototype);
  });
});
