import fc from 'fast-check';
import { expect, it } from 'vitest';
import { addNewest, setNewest } from '../src/newest.js';

it('keeps the newest entries, in the order last set, whatever is set', () => {
  fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 20 }), { maxLength: 200 }), fc.integer({ min: 1, max: 10 }), (keys, max) => {
    const map = new Map<number, number>();
    const set = new Set<number>();
    keys.forEach((key, i) => {
      setNewest(map, key, i, max);
      addNewest(set, key, max);
    });
    // The last `max` distinct keys set, oldest first.
    const expected = [...new Set([...keys].reverse())].slice(0, max).reverse();
    expect([...map.keys()]).toEqual(expected);
    expect([...set]).toEqual(expected);
    for (const key of expected) expect(map.get(key)).toBe(keys.lastIndexOf(key));
  }));
});
