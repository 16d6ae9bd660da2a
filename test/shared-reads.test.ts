/**
 * Reads of a large document, shared and spaced (src/api/shared-reads.ts):
 * reads at once share one render begun after each asked; renders of a slow
 * document are spaced; a fast one is rendered for every read.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { sharedYjsRead } from '../src/api/routes-yjs.js';
import { SharedReads } from '../src/api/shared-reads.js';
import { createDocuments } from '../src/docs/documents.js';
import { docKey, type RegionId } from '../src/ids.js';
import { openStore } from '../src/storage/sqlite.js';

/** A render that takes `ms` of the thread, as rendering a large document does. */
function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) { /* rendering */ }
}

describe('shared reads', () => {
  it('render a fast document for every read', async () => {
    const reads = new SharedReads();
    let renders = 0;
    const results = await Promise.all(Array.from({ length: 8 }, () => reads.read('small', 'json', () => null, () => ++renders)));
    expect(renders).toBe(8);
    expect(new Set(results).size).toBe(8);
  });

  it('share one render of a slow document among reads at once, begun after each asked', async () => {
    const reads = new SharedReads();
    let value = 1;
    let renders = 0;
    const render = () => {
      renders++;
      busy(3);
      return { value };
    };
    expect(await reads.read('big', 'json', () => null, render)).toEqual({ value: 1 });
    value = 2;
    const together = await Promise.all(Array.from({ length: 16 }, () => reads.read('big', 'json', () => null, render)));
    expect(renders).toBe(2);
    expect(new Set(together).size).toBe(1);
    // What changed before a read asked is in its answer.
    expect(together[0]).toEqual({ value: 2 });
    value = 3;
    expect(await reads.read('big', 'json', () => null, render)).toEqual({ value: 3 });
    // Another document is not held by this one.
    expect(await reads.read('other', 'json', () => null, () => 'other')).toBe('other');
  });

  it('space the renders of a slow document read without pause', async () => {
    const reads = new SharedReads();
    let renders = 0;
    const began = performance.now();
    let served = 0;
    while (performance.now() - began < 300) {
      await reads.read('big', 'json', () => null, () => {
        renders++;
        busy(3);
      });
      served++;
    }
    // Each render of 3 ms waits some 30 ms after the one before: ten or so in 300 ms, not a hundred.
    expect(renders).toBe(served);
    expect(renders).toBeLessThanOrEqual(14);
  });

  it('do not count waiting for a commit as rendering', async () => {
    const reads = new SharedReads();
    let renders = 0;
    const commit = () => new Promise<void>((resolve) => setTimeout(resolve, 20));
    await reads.read('doc', 'json', commit, () => ++renders);
    await Promise.all(Array.from({ length: 4 }, () => reads.read('doc', 'json', commit, () => ++renders)));
    expect(renders).toBe(5);
  });

  it('run the renders of a slow document one at a time, whatever they render', async () => {
    const reads = new SharedReads();
    await reads.read('big', 'json', () => null, () => busy(3));
    // Reads asking for different state vectors cannot share a render, nor escape the spacing.
    const starts: number[] = [];
    await Promise.all(Array.from({ length: 4 }, (_, i) => reads.read('big', `sv${i}`, () => null, () => {
      starts.push(performance.now());
      busy(3);
    }, `caller ${i}`)));
    expect(starts).toHaveLength(4);
    for (let i = 1; i < starts.length; i++) expect(starts[i]! - starts[i - 1]!).toBeGreaterThanOrEqual(30);
  });

  it('refuse a read that would queue behind too many renders of one document', async () => {
    const reads = new SharedReads();
    await reads.read('big', 'json', () => null, () => busy(3));
    const queued = Array.from({ length: 8 }, (_, i) => reads.read('big', `sv${i}`, () => null, () => busy(3), `caller ${i}`));
    await expect(reads.read('big', 'sv-one-more', () => null, () => 'late')).rejects.toMatchObject({ code: 'unavailable' });
    // A read of a variant already queued joins it; another document is not held.
    const joined = reads.read('big', 'sv0', () => null, () => busy(3));
    expect(await reads.read('small', 'json', () => null, () => 'small')).toBe('small');
    await Promise.all([...queued, joined]);
    expect(await reads.read('big', 'sv-one-more', () => null, () => 'later')).toBe('later');
  });

  it('give one caller a few of the renders of a slow document queued at once', async () => {
    const reads = new SharedReads();
    await reads.read('big', 'json', () => null, () => busy(3));
    const mine = [reads.read('big', 'sv0', () => null, () => busy(3), 'a'), reads.read('big', 'sv1', () => null, () => busy(3), 'a')];
    await expect(reads.read('big', 'sv2', () => null, () => 'late', 'a')).rejects.toMatchObject({ code: 'unavailable', message: expect.stringMatching(/this caller already waits for 2 renders/) });
    // Others still queue theirs, and the caller may join a render queued by another.
    const theirs = reads.read('big', 'sv3', () => null, () => 'theirs', 'b');
    const joined = reads.read('big', 'sv3', () => null, () => 'not rendered', 'a');
    expect(await joined).toBe('theirs');
    await Promise.all([...mine, theirs]);
    expect(await reads.read('big', 'sv2', () => null, () => 'now', 'a')).toBe('now');
  });

  it('give every read that joined a render its error', async () => {
    const reads = new SharedReads();
    await reads.read('big', 'json', () => null, () => busy(3));
    const failed = await Promise.allSettled(Array.from({ length: 4 }, () => reads.read('big', 'json', () => null, () => {
      busy(3);
      throw new Error('cannot render');
    })));
    expect(failed.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected', 'rejected']);
    expect(await reads.read('big', 'json', () => null, () => 'again')).toBe('again');
  });
});

describe('shared Yjs reads', () => {
  it('share one render per state vector, however its bytes came, and answer each with the update and its version', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meridian-shared-'));
    const store = openStore({ dataDir: dir, region: 'r1' as RegionId, synchronous: 'off', logger: pino({ level: 'silent' }) });
    const documents = createDocuments({ store, logger: pino({ level: 'silent' }), cacheDocs: 10, yjsUpdateBytes: 8 << 20, compactIntervalMs: 0 });
    try {
      const doc = docKey('c', 'large');
      await documents.put(doc, Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, `${i}`.repeat(50_000)])));
      for (let i = 0; i < 20; i++) await documents.patch(doc, { [`k${i}`]: `${i}`.repeat(50_001) });
      const reads = new SharedReads();
      // The first read finds it slow to render; the reads after it share renders.
      await sharedYjsRead(reads, documents, doc, undefined, 'a');
      const sv = documents.stateVector(doc)!;
      // A live frame carries its state vector inside a larger buffer.
      const framed = new Uint8Array(sv.byteLength + 7);
      framed.set(sv, 3);
      const [a, b, whole] = await Promise.all([
        sharedYjsRead(reads, documents, doc, Uint8Array.from(sv), 'a'),
        sharedYjsRead(reads, documents, doc, framed.subarray(3, 3 + sv.byteLength), 'b'),
        sharedYjsRead(reads, documents, doc, undefined, 'c'),
      ]);
      expect(a).toBe(b);
      expect(a!.update).toEqual(documents.readYjs(doc, sv));
      // Compared as buffers: toEqual walks 3.5 MB element by element, for seconds.
      expect(Buffer.from(whole!.update).equals(documents.readYjs(doc)!)).toBe(true);
      expect(typeof a!.version).toBe('string');
      // Bytes that are no state vector are refused at once, taking no turn of the document's renders.
      const full = Array.from({ length: 8 }, (_, i) => sharedYjsRead(reads, documents, doc, Uint8Array.from([1, i + 1, 1]), `caller ${i}`));
      await expect(sharedYjsRead(reads, documents, doc, Uint8Array.from([200]), 'd')).rejects.toMatchObject({ code: 'invalid_query' });
      await Promise.all(full);
    } finally {
      await documents.close();
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
