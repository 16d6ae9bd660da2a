/**
 * Document digests after a burst of changes (a catch-up marks thousands of
 * documents changed at once): computed in turns between other work, never
 * all in one turn, and exactly what computing them at once gives.
 */
import { pino } from 'pino';
import * as Y from 'yjs';
import { describe, expect, it } from 'vitest';
import type { LiveDoc } from '../src/docs/cache.js';
import { DigestIndex } from '../src/docs/digest-index.js';
import { Digester } from '../src/docs/digester.js';
import { docKey, type DocKey } from '../src/ids.js';

function digester(docs: Map<DocKey, LiveDoc>) {
  const index = new DigestIndex();
  const stored: number[] = [];
  const d = new Digester({
    index, logger: pino({ level: 'silent' }),
    store: { staleSummaries: () => [], setDigests: (digests) => void stored.push(digests.length) },
    live: (doc) => docs.get(doc), load: () => null, busy: () => false,
  });
  for (const doc of docs.keys()) d.markStale(doc, null);
  return { d, index };
}

/** A digester over `docs` that records each document it digests. */
function counting(docs: Map<DocKey, LiveDoc>) {
  const computed: DocKey[] = [];
  const index = new DigestIndex();
  const d = new Digester({
    index, logger: pino({ level: 'silent' }),
    store: { staleSummaries: () => [], setDigests: () => undefined },
    live: (key) => docs.get(key), load: () => null, busy: () => false,
    digested: (key) => void computed.push(key),
  });
  return { d, index, computed };
}

function documents(n: number): Map<DocKey, LiveDoc> {
  const docs = new Map<DocKey, LiveDoc>();
  for (let i = 0; i < n; i++) {
    const ydoc = new Y.Doc();
    ydoc.getMap('root').set('text', `document ${i} `.repeat(1 + (i % 40)));
    docs.set(docKey('c', `d${i}`), { ydoc, lastLsn: 0, digest: null, sizeBound: null });
  }
  return docs;
}

describe('document digests after a burst of changes', () => {
  it('are computed in turns (other work runs between them) and come out as computing them at once', async () => {
    const docs = documents(3000);
    const inTurns = digester(docs);
    const atOnce = digester(docs);
    // A heartbeat's digest is not worth computing 3000 documents in one turn.
    expect(inTurns.d.settleFew(256)).toBe(false);
    let servedMeanwhile = 0;
    const tick = (): void => {
      servedMeanwhile++;
      if (servedMeanwhile < 1000) setImmediate(tick);
    };
    setImmediate(tick);
    await inTurns.d.settleInTurns();
    expect(servedMeanwhile).toBeGreaterThan(1);
    expect(inTurns.d.settleFew(256)).toBe(true);
    atOnce.d.settle();
    expect(inTurns.index.regionDigest()).toBe(atOnce.index.regionDigest());
    inTurns.d.stop();
    atOnce.d.stop();
  });

  it('are computed at once when few changed', () => {
    const docs = documents(10);
    const few = digester(docs);
    const before = few.index.regionDigest();
    expect(few.d.settleFew(256)).toBe(true);
    expect(few.index.regionDigest()).not.toBe(before);
    few.d.stop();
  });

  it('of a document changed at every commit are computed a few times a second, and end exact', async () => {
    const docs = documents(2);
    const [[hot, live], [once]] = [...docs] as [[DocKey, LiveDoc], [DocKey, LiveDoc]];
    const { d, index, computed } = counting(docs);
    // A commit every 5 ms changes the hot document; the other changes once, midway.
    const began = performance.now();
    for (let i = 0; i < 60; i++) {
      live.ydoc.getMap('root').set('n', i);
      d.markStale(hot, live.digest);
      if (i === 30) d.markStale(once, null);
      await new Promise((r) => setTimeout(r, 5));
      if (i === 30) expect(computed).toContain(once);
    }
    const writingMs = performance.now() - began;
    const hotDigests = computed.filter((k) => k === hot).length;
    expect(hotDigests).toBeGreaterThanOrEqual(1);
    // At most one per 100 ms of writing, and in any case far fewer than the 60 commits.
    expect(hotDigests).toBeLessThanOrEqual(Math.min(20, Math.ceil(writingMs / 100) + 1));
    // Once the writes stop, the last change is in the index without anyone settling.
    await new Promise((r) => setTimeout(r, 300));
    const exact = digester(docs);
    exact.d.settle();
    expect(index.regionDigest()).toBe(exact.index.regionDigest());
    d.stop();
    exact.d.stop();
  });

  it('of a large document written often are computed for a sync status at most once per rest, which it reports inexact', async () => {
    const docs = new Map<DocKey, LiveDoc>();
    const big = docKey('c', 'big');
    const ydoc = new Y.Doc();
    // About 6 MB: its digest takes milliseconds, well over the slow mark.
    ydoc.transact(() => {
      for (let i = 0; i < 6000; i++) ydoc.getMap('root').set(`k${i}`, 'x'.repeat(1000));
    });
    const live: LiveDoc = { ydoc, lastLsn: 0, digest: null, sizeBound: null };
    docs.set(big, live);
    const { d, index, computed } = counting(docs);
    // Slow twice (a heartbeat's settle, say): surely large, not paused once.
    d.markStale(big, null);
    expect(d.settleFew(256)).toBe(true);
    ydoc.getMap('root').set('n', -1);
    d.markStale(big, live.digest);
    expect(d.settleFew(256)).toBe(true);
    expect(computed).toHaveLength(2);
    const first = index.regionDigest();

    // A client polls the status after every write: the document rests after its slow digest.
    for (let i = 0; i < 20; i++) {
      ydoc.getMap('root').set('n', i);
      d.markStale(big, live.digest);
      await d.settleInTurns();
      expect(d.settleFewSparing(256)).toBe(false);
    }
    expect(computed).toHaveLength(2);
    expect(index.regionDigest()).toBe(first);
    // Readers that need it exact still get it: heartbeats and anti-entropy settle regardless.
    expect(d.settleFew(256)).toBe(true);
    expect(computed).toHaveLength(3);
    const exact = digester(docs);
    exact.d.settle();
    expect(index.regionDigest()).toBe(exact.index.regionDigest());
    d.stop();
    exact.d.stop();
  });
});
