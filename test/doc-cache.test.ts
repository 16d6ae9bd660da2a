import * as Y from 'yjs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DocCache, type LiveDoc } from '../src/docs/cache.js';

/** A live document holding `value` under the client id `clientId`. */
function liveOf(value: number, clientId = 1000 + value): LiveDoc {
  const ydoc = new Y.Doc({ gc: true });
  ydoc.clientID = clientId;
  ydoc.getMap('root').set('v', value);
  return { ydoc, lastLsn: value * 10, digest: new Uint8Array(32).fill(value), sizeBound: value + 100 };
}

const state = (live: LiveDoc): Uint8Array => Y.encodeStateAsUpdate(live.ydoc);

describe('the document cache', () => {
  it('keeps the most recently used decoded and the rest encoded, and revives them whole', () => {
    const cache = new DocCache(4, 2);
    const lives = [0, 1, 2, 3].map((i) => liveOf(i));
    const states = lives.map(state);
    lives.forEach((live, i) => cache.set(`d${i}`, live));
    expect(cache.size).toBe(4);
    expect(cache.decodedSize).toBe(2);
    // The two least recently used are encoded: not decoded, their Yjs documents destroyed.
    expect(cache.peek('d0')).toBeUndefined();
    expect(cache.get('d1')).toBeUndefined();
    expect(lives[0]!.ydoc.isDestroyed).toBe(true);
    const revived = cache.revive('d0')!;
    expect(state(revived)).toEqual(states[0]);
    expect(revived.ydoc.clientID).toBe(1000);
    expect(revived.lastLsn).toBe(0);
    // Its size bound is the size it was encoded at, exact.
    expect(revived.sizeBound).toBe(states[0]!.byteLength);
    // What the region's digest index holds for it comes back too.
    expect(revived.digest).toEqual(new Uint8Array(32).fill(0));
    expect(cache.peek('d0')).toBe(revived);
    expect(cache.decodedSize).toBe(2);
    // Reviving pushed d2 out of the decoded set; nothing was dropped.
    expect(cache.size).toBe(4);
    expect(state(cache.revive('d2')!)).toEqual(states[2]);
    expect(state(cache.revive('d1')!)).toEqual(states[1]);
    expect(cache.revive('d1')).toBeUndefined();
  });

  it('keeps the digest computed for a document it holds encoded', () => {
    const cache = new DocCache(2, 1);
    cache.set('d0', liveOf(0));
    cache.set('d1', liveOf(1));
    const computed = new Uint8Array(32).fill(9);
    cache.noteDigest('d0', computed);
    expect(cache.copy('d0')!.digest).toBe(computed);
    expect(cache.revive('d0')!.digest).toBe(computed);
  });

  it('drops the least recently used beyond its capacity', () => {
    const cache = new DocCache(3, 1);
    for (let i = 0; i < 5; i++) cache.set(`d${i}`, liveOf(i));
    expect(cache.size).toBe(3);
    expect(cache.revive('d0')).toBeUndefined();
    expect(cache.revive('d1')).toBeUndefined();
    expect(cache.revive('d2')!.ydoc.getMap('root').get('v')).toBe(2);
  });

  it('keeps what waits for missing dependencies', () => {
    const source = new Y.Doc();
    source.getMap('root').set('a', 1);
    const first = Y.encodeStateAsUpdate(source);
    const sv = Y.encodeStateVector(source);
    source.getMap('root').set('b', 2);
    const second = Y.encodeStateAsUpdate(source, sv);
    const live = liveOf(0);
    // The second change alone: it waits for the first.
    Y.applyUpdate(live.ydoc, second);
    expect(live.ydoc.store.pendingStructs).not.toBeNull();
    const cache = new DocCache(2, 1);
    cache.set('waiting', live);
    cache.set('other', liveOf(1));
    const revived = cache.revive('waiting')!;
    expect(revived.ydoc.store.pendingStructs).not.toBeNull();
    Y.applyUpdate(revived.ydoc, first);
    expect(revived.ydoc.getMap('root').toJSON()).toEqual({ v: 0, a: 1, b: 2 });
  });

  it('encodes nothing while held, and trims once released', () => {
    const cache = new DocCache(2, 1);
    const release = cache.hold();
    const lives = [0, 1, 2].map((i) => liveOf(i));
    lives.forEach((live, i) => cache.set(`d${i}`, live));
    expect(cache.decodedSize).toBe(3);
    expect(lives.some((l) => l.ydoc.isDestroyed)).toBe(false);
    release();
    expect(cache.decodedSize).toBe(1);
    expect(cache.size).toBe(2);
    expect(cache.peek('d2')).toBe(lives[2]);
  });

  it('drops a document from either set when it is evicted, and everything when cleared', () => {
    const cache = new DocCache(3, 1);
    for (let i = 0; i < 3; i++) cache.set(`d${i}`, liveOf(i));
    cache.evict('d0');
    expect(cache.revive('d0')).toBeUndefined();
    expect(cache.size).toBe(2);
    // A document set again replaces its encoded copy.
    const fresh = liveOf(7);
    cache.set('d1', fresh);
    expect(cache.peek('d1')).toBe(fresh);
    expect(cache.revive('d1')).toBeUndefined();
    cache.clear();
    expect(cache.size).toBe(0);
    expect(fresh.ydoc.isDestroyed).toBe(true);
  });

  it('holds a committed document encoded at once when asked, unless it holds decoded documents only', () => {
    const cache = new DocCache(4, 2);
    const live = liveOf(3);
    const before = state(live);
    cache.set('d', live);
    cache.keepEncoded('d', live);
    expect(live.ydoc.isDestroyed).toBe(true);
    expect(cache.peek('d')).toBeUndefined();
    expect(cache.size).toBe(1);
    expect(state(cache.revive('d')!)).toEqual(before);

    const decodedOnly = new DocCache(4, 4);
    const kept = liveOf(5);
    decodedOnly.keepEncoded('d', kept);
    expect(decodedOnly.peek('d')).toBe(kept);
    expect(kept.ydoc.isDestroyed).toBe(false);
  });

  it('evicts in least-recently-used order through any sequence of uses, evictions and clears', () => {
    type Op = { kind: 'set' | 'get' | 'revive' | 'keepEncoded' | 'evict'; key: number } | { kind: 'clear' };
    const op: fc.Arbitrary<Op> = fc.oneof(
      { arbitrary: fc.record({ kind: fc.constantFrom('set', 'get', 'revive', 'keepEncoded', 'evict'), key: fc.integer({ min: 0, max: 6 }) }), weight: 20 },
      { arbitrary: fc.constant({ kind: 'clear' } as const), weight: 1 },
    );
    fc.assert(fc.property(fc.array(op, { minLength: 100, maxLength: 300 }), (ops) => {
      const cache = new DocCache(5, 2);
      // The model: keys oldest first, in each tier.
      let decoded: number[] = [];
      let encoded: number[] = [];
      const trim = (): void => {
        while (decoded.length > 2) encoded.push(decoded.shift()!);
        while (encoded.length > 5 - decoded.length) encoded.shift();
      };
      const without = (list: number[], key: number): number[] => list.filter((k) => k !== key);
      for (const o of ops) {
        if (o.kind === 'clear') {
          cache.clear();
          decoded = [];
          encoded = [];
          continue;
        }
        const key = `d${o.key}`;
        if (o.kind === 'set') {
          cache.set(key, liveOf(o.key));
          decoded = [...without(decoded, o.key), o.key];
          encoded = without(encoded, o.key);
        } else if (o.kind === 'get') {
          if (cache.get(key) !== undefined) decoded = [...without(decoded, o.key), o.key];
        } else if (o.kind === 'revive') {
          if (cache.revive(key) !== undefined) {
            encoded = without(encoded, o.key);
            decoded = [...decoded, o.key];
          }
        } else if (o.kind === 'keepEncoded') {
          const live = cache.peek(key);
          if (live === undefined) continue;
          cache.keepEncoded(key, live);
          decoded = without(decoded, o.key);
          encoded = [...without(encoded, o.key), o.key];
        } else {
          cache.evict(key);
          decoded = without(decoded, o.key);
          encoded = without(encoded, o.key);
        }
        trim();
        for (let k = 0; k < 7; k++) {
          expect(cache.peek(`d${k}`) !== undefined).toBe(decoded.includes(k));
          const copy = cache.copy(`d${k}`);
          expect(copy !== undefined).toBe(encoded.includes(k));
          copy?.ydoc.destroy();
        }
        expect(cache.size).toBe(decoded.length + encoded.length);
      }
    }), { numRuns: 100 });
  });
});
