import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DigestIndex } from '../src/docs/digest-index.js';
import type { DocKey } from '../src/ids.js';

const digestOf = (n: number): Uint8Array => new Uint8Array(32).fill(n);

describe('the region digest index', () => {
  it('after any sequence of changes equals an index built from the final digests alone', () => {
    const change = fc.record({ doc: fc.integer({ min: 0, max: 20 }), digest: fc.integer({ min: 0, max: 5 }) });
    fc.assert(fc.property(fc.array(change, { minLength: 1, maxLength: 400 }), (changes) => {
      const index = new DigestIndex();
      const current = new Map<DocKey, Uint8Array>();
      for (const c of changes) {
        const doc = `d${c.doc}` as DocKey;
        // A fresh array with the same bytes, as a document's digest is after a reload.
        const before = current.has(doc) ? current.get(doc)!.slice() : null;
        const after = digestOf(c.digest);
        index.update(doc, before, after);
        current.set(doc, after);
      }
      const rebuilt = new DigestIndex();
      for (const [doc, digest] of current) rebuilt.update(doc, null, digest);
      expect(index.regionDigest()).toBe(rebuilt.regionDigest());
      expect(index.bucketDigests()).toEqual(rebuilt.bucketDigests());
    }), { numRuns: 100 });
  });

  it('takes out what a document added even when its digest array was changed in place since', () => {
    const index = new DigestIndex();
    const empty = index.regionDigest();
    const digest = digestOf(1);
    index.update('d' as DocKey, null, digest);
    const added = digestOf(1);
    digest.fill(7);
    index.update('d' as DocKey, added, digestOf(2));
    index.update('d' as DocKey, digestOf(2), digestOf(3));
    const only3 = new DigestIndex();
    only3.update('d' as DocKey, null, digestOf(3));
    expect(index.regionDigest()).toBe(only3.regionDigest());
    expect(index.regionDigest()).not.toBe(empty);
  });
});
