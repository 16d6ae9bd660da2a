import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as Y from 'yjs';
import { MeridianError } from '../src/errors.js';
import type { WriterId } from '../src/ids.js';
import { applyOps, deleteDocument, mergePatch, putDocument, readDocument } from '../src/crdt/model.js';
import * as encoding from 'lib0/encoding';
import { createHash } from 'node:crypto';
import { digestParts, docDigest } from '../src/crdt/digest.js';
import { applyUpdateSafely, validateUpdate } from '../src/crdt/validate.js';
import { newDoc } from '../src/crdt/clientid.js';
import type { Json, JsonObject, JsonScalar, Op } from '../src/crdt/types.js';

const LOCAL = Symbol('local');
const REMOTE = Symbol('remote');

type Command =
  | { kind: 'ops'; region: number; ops: Op[] }
  | { kind: 'put'; region: number; value: JsonObject }
  | { kind: 'patch'; region: number; value: JsonObject }
  | { kind: 'delete'; region: number }
  | { kind: 'sync'; region: number; to: number };

const keyArb = fc.constantFrom('a', 'b', 'o');
const pathArb: fc.Arbitrary<string[]> = fc.constantFrom<string[]>(['a'], ['b'], ['o'], ['o', 'x'], ['o', 'y'], ['o', 'p', 'q']);
const scalarArb: fc.Arbitrary<JsonScalar> = fc.oneof(fc.constantFrom<JsonScalar>(null, true, 'x', 'y'), fc.integer({ min: -3, max: 3 }));
const jsonArb: fc.Arbitrary<Json> = fc.letrec<{ json: Json }>((tie) => ({
  json: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    scalarArb,
    fc.array(scalarArb, { maxLength: 2 }),
    fc.dictionary(keyArb, tie('json'), { maxKeys: 2 }),
  ),
})).json;
const patchArb: fc.Arbitrary<JsonObject> = fc.dictionary(keyArb, fc.oneof(jsonArb, fc.constant(null)), { maxKeys: 3 });

const opArb = fc.oneof(
  fc.record({ op: fc.constant('set'), path: pathArb, value: jsonArb }),
  fc.record({ op: fc.constant('delete'), path: pathArb }),
  fc.record({ op: fc.constant('increment'), path: pathArb, by: fc.integer({ min: -5, max: 5 }) }),
  fc.record({ op: fc.constant('add'), path: pathArb, value: scalarArb }),
  fc.record({ op: fc.constant('remove'), path: pathArb, value: scalarArb }),
  fc.record({ op: fc.constant('insertText'), path: pathArb, index: fc.nat(4), text: fc.constantFrom('a', 'bc', '') }),
  fc.record({ op: fc.constant('deleteText'), path: pathArb, index: fc.nat(3), length: fc.nat(2) }),
) as fc.Arbitrary<Op>;

const regionArb = fc.nat(2);
const commandArb: fc.Arbitrary<Command> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('ops' as const), region: regionArb, ops: fc.array(opArb, { minLength: 1, maxLength: 3 }) }), weight: 4 },
  { arbitrary: fc.record({ kind: fc.constant('put' as const), region: regionArb, value: fc.dictionary(keyArb, jsonArb, { maxKeys: 3 }) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('patch' as const), region: regionArb, value: patchArb }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('delete' as const), region: regionArb }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('sync' as const), region: regionArb, to: regionArb }), weight: 2 },
);

interface Replica {
  doc: Y.Doc;
  writer: WriterId;
  /** Updates of this replica's own writes, in order. */
  own: Uint8Array[];
}

function replicas(count: number): Replica[] {
  return Array.from({ length: count }, (_, i) => {
    const doc = new Y.Doc();
    doc.clientID = 1000 + i;
    const replica: Replica = { doc, writer: `r${i}~x` as WriterId, own: [] };
    doc.on('update', (update: Uint8Array, origin: unknown) => {
      if (origin === LOCAL) replica.own.push(update);
    });
    return replica;
  });
}

/** Runs one command; a refused write must emit nothing. */
function run(rs: Replica[], command: Command): void {
  const r = rs[command.region % rs.length] as Replica;
  const ctx = { writer: r.writer };
  const before = r.own.length;
  let wrote = true;
  try {
    switch (command.kind) {
      case 'ops':
        applyOps(r.doc, command.ops, ctx, LOCAL);
        break;
      case 'put':
        putDocument(r.doc, command.value, ctx, LOCAL);
        break;
      case 'patch':
        mergePatch(r.doc, command.value, ctx, LOCAL);
        break;
      case 'delete':
        wrote = deleteDocument(r.doc, LOCAL);
        break;
      case 'sync': {
        const to = rs[command.to % rs.length] as Replica;
        for (const u of r.own) applyUpdateSafely(to.doc, u, REMOTE);
        wrote = false;
        break;
      }
    }
  } catch (err) {
    if (!(err instanceof MeridianError) || !['type_mismatch', 'invalid_ops'].includes(err.code)) throw err;
    wrote = false;
  }
  // One update per write, or none for a write that changed nothing (a put of the document as it is).
  expect(r.own.length - before).toBeLessThanOrEqual(wrote ? 1 : 0);
}

function build(updates: Uint8Array[]): Y.Doc {
  const doc = new Y.Doc();
  for (const u of updates) applyUpdateSafely(doc, u, REMOTE);
  expect(doc.store.pendingStructs).toBeNull();
  expect(doc.store.pendingDs).toBeNull();
  return doc;
}

function fingerprint(doc: Y.Doc): { json: string; digest: string } {
  return { json: JSON.stringify(readDocument(doc)), digest: Buffer.from(docDigest(doc)).toString('hex') };
}

describe('convergence', () => {
  it('any order and duplication of the same updates gives the same document and digest', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 3 }), fc.array(commandArb, { minLength: 1, maxLength: 20 }), fc.gen(), (count, commands, g) => {
        const rs = replicas(count);
        for (const command of commands) run(rs, command);
        const all = rs.flatMap((r) => r.own);
        for (const u of all) validateUpdate(u, 1 << 20);

        const reference = fingerprint(build(all));
        const shuffled = g(fc.shuffledSubarray, all, { minLength: all.length, maxLength: all.length });
        const withDuplicates = [...shuffled, ...g(fc.subarray, all)];
        const mixed = g(fc.shuffledSubarray, withDuplicates, { minLength: withDuplicates.length, maxLength: withDuplicates.length });
        expect(fingerprint(build(shuffled))).toEqual(reference);
        expect(fingerprint(build(mixed))).toEqual(reference);

        // The replicas themselves converge on the same state once they have exchanged everything.
        for (const r of rs) for (const u of all) applyUpdateSafely(r.doc, u, REMOTE);
        for (const r of rs) expect(fingerprint(r.doc)).toEqual(reference);
      }),
      { numRuns: 150 },
    );
  });

  it('any order of the same rich-text editors\' updates gives a region the same document and digest, formatting included', () => {
    // Yjs cleans up formatting after applying others' updates, differently by order: a region must not (clientid.ts newDoc).
    const commandArb = fc.record({
      editor: fc.integer({ min: 0, max: 2 }),
      kind: fc.constantFrom('format', 'format', 'format', 'insert', 'delete', 'sync'),
      at: fc.nat(40),
      length: fc.integer({ min: 1, max: 12 }),
      mark: fc.constantFrom('bold', 'italic', 'underline'),
      on: fc.boolean(),
    });
    const textOf = (doc: Y.Doc) => ((doc.getXmlFragment('prosemirror').get(0) as Y.XmlElement).get(0) as Y.XmlText);
    const base = new Y.Doc();
    base.clientID = 1;
    const paragraph = new Y.XmlElement('paragraph');
    base.getXmlFragment('prosemirror').insert(0, [paragraph]);
    paragraph.insert(0, [new Y.XmlText('abcdefghijklmnopqrstuvwxyz')]);
    const initial = Y.encodeStateAsUpdate(base);
    const region = (updates: Uint8Array[]): Y.Doc => {
      const doc = newDoc();
      for (const u of [initial, ...updates]) applyUpdateSafely(doc, u, REMOTE);
      return doc;
    };
    fc.assert(
      fc.property(fc.array(commandArb, { minLength: 1, maxLength: 12 }), fc.gen(), (commands, g) => {
        const editors = [2, 3, 4].map((id) => {
          const doc = new Y.Doc();
          doc.clientID = id;
          Y.applyUpdate(doc, initial);
          return doc;
        });
        const updates: Uint8Array[] = [];
        for (const c of commands) {
          const editor = editors[c.editor]!;
          const before = Y.encodeStateVector(editor);
          const text = textOf(editor);
          const at = Math.min(c.at, text.length - 1);
          const length = Math.min(c.length, text.length - at);
          if (c.kind === 'format') text.format(at, length, { [c.mark]: c.on ? true : null });
          else if (c.kind === 'insert') text.insert(at, 'x');
          else if (c.kind === 'delete' && text.length > 2) text.delete(at, 1);
          else if (c.kind === 'sync') Y.applyUpdate(editor, Y.encodeStateAsUpdate(editors[(c.editor + 1) % 3]!, before));
          const update = Y.encodeStateAsUpdate(editor, before);
          if (c.kind !== 'sync') updates.push(update);
        }
        const shuffled = g(fc.shuffledSubarray, updates, { minLength: updates.length, maxLength: updates.length });
        const inOrder = region(updates);
        const outOfOrder = region(shuffled);
        expect(Buffer.from(Y.encodeStateAsUpdate(outOfOrder)).equals(Buffer.from(Y.encodeStateAsUpdate(inOrder)))).toBe(true);
        expect(docDigest(outOfOrder)).toEqual(docDigest(inOrder));
      }),
      { numRuns: 400 },
    );
  });

  it('digests the structure as the state vector and Yjs\'s own delete set, sorted and merged', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 3 }), fc.array(commandArb, { minLength: 1, maxLength: 20 }), (count, commands) => {
        const rs = replicas(count);
        for (const command of commands) run(rs, command);
        const doc = build(rs.flatMap((r) => r.own));
        expect(Buffer.from(digestParts(doc).structure).toString('hex')).toBe(structureByDeleteSet(doc));
      }),
      { numRuns: 150 },
    );
  });
});

/** The structure digest as first defined, from Y.createDeleteSetFromStructStore: stored digests depend on it. */
function structureByDeleteSet(doc: Y.Doc): string {
  const encoder = encoding.createEncoder();
  const clients = [...doc.store.clients.keys()].sort((a, b) => a - b);
  encoding.writeVarUint(encoder, clients.length);
  for (const client of clients) {
    encoding.writeVarUint(encoder, client);
    encoding.writeVarUint(encoder, Y.getState(doc.store, client));
  }
  const deleted = new Map<number, [number, number][]>();
  for (const [client, items] of Y.createDeleteSetFromStructStore(doc.store).clients) {
    const merged: [number, number][] = [];
    for (const [clock, len] of items.map((d): [number, number] => [d.clock, d.len]).sort((a, b) => a[0] - b[0])) {
      const last = merged[merged.length - 1];
      if (last !== undefined && last[0] + last[1] >= clock) last[1] = Math.max(last[1], clock + len - last[0]);
      else if (len > 0) merged.push([clock, len]);
    }
    if (merged.length > 0) deleted.set(client, merged);
  }
  encoding.writeVarUint(encoder, deleted.size);
  for (const client of [...deleted.keys()].sort((a, b) => a - b)) {
    const ranges = deleted.get(client)!;
    encoding.writeVarUint(encoder, client);
    encoding.writeVarUint(encoder, ranges.length);
    for (const [clock, len] of ranges) {
      encoding.writeVarUint(encoder, clock);
      encoding.writeVarUint(encoder, len);
    }
  }
  return createHash('sha256').update(encoding.toUint8Array(encoder)).digest('hex');
}
