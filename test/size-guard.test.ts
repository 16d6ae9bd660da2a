import { describe, expect, it } from 'vitest';
import { SizeGuard } from '../src/docs/size-guard.js';
import { docKey } from '../src/ids.js';

describe('a document measured over its bound', () => {
  const doc = docKey('c', 'd');

  it('counts as full for a second, or 20 times as long as measuring it took, then is measured again', () => {
    let now = 0;
    const guard = new SizeGuard(1000, () => now);
    guard.over(doc, 1200, 10);
    expect(guard.fullSize(doc)).toBe(1200);
    now = 999;
    expect(guard.fullSize(doc)).toBe(1200);
    now = 1000;
    expect(guard.fullSize(doc)).toBeNull();
    guard.over(doc, 1300, 200);
    now = 1000 + 3999;
    expect(guard.fullSize(doc)).toBe(1300);
    now = 1000 + 4000;
    expect(guard.fullSize(doc)).toBeNull();
  });

  it('is no longer full once cleared, and grows unmeasured by at most a 64th of the bound', () => {
    const guard = new SizeGuard(6400, () => 0);
    guard.over(doc, 7000, 1);
    guard.clear(doc);
    expect(guard.fullSize(doc)).toBeNull();
    expect(guard.withinUnmeasured(6400, undefined)).toBe(true);
    expect(guard.withinUnmeasured(6401, undefined)).toBe(false);
    expect(guard.withinUnmeasured(6350 + 100, 6350)).toBe(true);
    expect(guard.withinUnmeasured(6350 + 101, 6350)).toBe(false);
    expect(guard.withinUnmeasured(6450, 6401)).toBe(false);
  });
});
