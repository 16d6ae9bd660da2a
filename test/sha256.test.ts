/**
 * Document digests are compared between regions and kept on disk, so the
 * bytes hashed and the hash must not change between versions: the one-shot
 * hashing gives what `createHash` gave, for any mix of parts, and a fixed
 * document keeps the digest earlier versions computed for it.
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { stableClientId } from '../src/crdt/clientid.js';
import { docDigest } from '../src/crdt/digest.js';
import { bucketOf } from '../src/buckets.js';
import type { DocKey, WriterId } from '../src/ids.js';
import { Sha256, sha256 } from '../src/sha256.js';
import { valueKey } from '../src/crdt/json.js';

const partArb: fc.Arbitrary<string | Uint8Array> = fc.oneof(
  // Lone surrogates included: both sides must encode them as U+FFFD.
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.uint8Array({ maxLength: 40 }),
  // Large parts cross the size beyond which Sha256 streams.
  fc.integer({ min: 30_000, max: 90_000 }).map((n) => 'x'.repeat(n)),
);

function reference(parts: (string | Uint8Array)[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

/** What `valueKey` gave before it tried the replacer-free serialization first. */
function referenceKey(value: unknown): string {
  if (value === undefined) return 'undefined';
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? `bigint:${v.toString()}` : v)) ?? 'undefined';
}

describe('one-shot SHA-256', () => {
  it('gives what createHash gives, for any parts', () => {
    fc.assert(
      fc.property(fc.array(partArb, { maxLength: 8 }), (parts) => {
        const incremental = new Sha256();
        for (const p of parts) incremental.update(p);
        expect(Buffer.from(incremental.digest()).toString('hex')).toBe(reference(parts));
        if (parts.length > 0) expect(Buffer.from(sha256(...parts)).toString('hex')).toBe(reference(parts));
      }),
      { numRuns: 300 },
    );
  });

  it('joins string parts without joining a surrogate pair split between them', () => {
    const parts = ['a\ud83d', '\ude00b', 'c\ud800', 'x', '\udc00', '', '\ud83d', '\ude00'];
    const incremental = new Sha256();
    for (const p of parts) incremental.update(p);
    expect(Buffer.from(incremental.digest()).toString('hex')).toBe(reference(parts));
  });

  it('keys every value a Yjs update can carry as before', () => {
    const valueArb = fc.oneof(
      fc.jsonValue(),
      fc.bigInt(),
      fc.constant(undefined),
      fc.uint8Array({ maxLength: 8 }),
      fc.array(fc.oneof(fc.bigInt(), fc.jsonValue(), fc.constant(undefined)), { maxLength: 4 }),
      fc.dictionary(fc.string(), fc.oneof(fc.bigInt(), fc.jsonValue(), fc.uint8Array({ maxLength: 4 }))),
    );
    fc.assert(
      fc.property(valueArb, (value) => {
        expect(valueKey(value)).toBe(referenceKey(value));
      }),
      { numRuns: 500 },
    );
  });

  it('keeps the digests, buckets and client ids of earlier versions', () => {
    const doc = new Y.Doc();
    doc.clientID = 7;
    const m = doc.getMap('root');
    m.set('a', 1);
    m.set('s', 'héllo \ud83d\ude00 \ud800');
    m.set('b', new Uint8Array([1, 2, 3]));
    const t = new Y.Text();
    m.set('t', t);
    t.insert(0, 'x'.repeat(70_000));
    t.insert(5, 'abc');
    t.delete(10, 3);
    const arr = new Y.Array();
    m.set('arr', arr);
    arr.push([{ k: [1, 'two', null] }, 3.5]);
    m.delete('a');
    const small = new Y.Doc();
    small.clientID = 9;
    small.getMap('m').set('x', 'y');
    // Computed with createHash before the change.
    expect(Buffer.from(docDigest(doc)).toString('hex')).toBe('1c621aa47cd74ae029f85ec874463ccfd4605289c35559e4f25b2debec1d660f');
    expect(Buffer.from(docDigest(small)).toString('hex')).toBe('072f5766077964a2f81a25a65f25dcff962c91acc59fac629105b4957d0278d6');
    expect(bucketOf('c/d' as DocKey)).toBe(507);
    expect(stableClientId('eu-west~abc' as WriterId, 'c/d' as DocKey)).toBe(153963321475217);
  });
});
