import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { backoffDelay } from '../src/replication/backoff.js';
import { createDetector } from '../src/replication/detector.js';
import { callsForRound } from '../src/replication/replicator.js';

const opts = { heartbeatMs: 1_000, suspectAfterMisses: 3, deadAfterMs: 10_000 };

describe('failure detector', () => {
  it('is down until connected, suspect until heard, then up', () => {
    const d = createDetector(opts);
    expect(d.state(0)).toBe('down');
    expect(d.lastSeenMs(0)).toBeNull();
    d.connected(true);
    expect(d.state(0)).toBe('suspect');
    d.heard(5);
    expect(d.state(5)).toBe('up');
  });

  it('turns suspect after the allowed misses and down after deadAfterMs of silence', () => {
    const d = createDetector(opts);
    d.connected(true, 1_000);
    expect(d.state(4_000)).toBe('up');
    expect(d.state(4_001)).toBe('suspect');
    expect(d.state(11_000)).toBe('suspect');
    expect(d.state(11_001)).toBe('down');
    expect(d.lastSeenMs(11_001)).toBe(10_001);
    d.heard(11_500);
    expect(d.state(11_600)).toBe('up');
    expect(d.lastSeenMs(11_600)).toBe(100);
  });

  it('is down whenever the link is not connected, however recently heard', () => {
    const d = createDetector(opts);
    d.connected(true, 0);
    d.connected(false);
    expect(d.state(1)).toBe('down');
    expect(d.lastSeenMs(1)).toBe(1);
  });

  it('never moves the last sign of life backwards', () => {
    const d = createDetector(opts);
    d.connected(true, 5_000);
    d.heard(1_000);
    expect(d.lastSeenMs(6_000)).toBe(1_000);
  });

  it('keeps a smoothed RTT that follows a shift without jumping to outliers', () => {
    const d = createDetector(opts);
    expect(d.rttMs()).toBeNull();
    d.rtt(100);
    expect(d.rttMs()).toBe(100);
    d.rtt(900);
    const afterOutlier = d.rttMs()!;
    expect(afterOutlier).toBeGreaterThan(100);
    expect(afterOutlier).toBeLessThan(300);
    for (let i = 0; i < 60; i++) d.rtt(50);
    expect(d.rttMs()).toBeCloseTo(50, 0);
    d.rtt(Number.NaN);
    d.rtt(-5);
    expect(d.rttMs()).toBeCloseTo(50, 0);
  });

  it('goes straight from up to down when deadAfterMs is below the suspect threshold', () => {
    const d = createDetector({ heartbeatMs: 1_000, suspectAfterMisses: 5, deadAfterMs: 2_000 });
    d.connected(true, 0);
    expect(d.state(2_000)).toBe('up');
    expect(d.state(2_001)).toBe('down');
  });

  it('rejects nonsensical options', () => {
    expect(() => createDetector({ ...opts, heartbeatMs: 0 })).toThrow(RangeError);
    expect(() => createDetector({ ...opts, deadAfterMs: Number.NaN })).toThrow(RangeError);
  });
});

describe('backoff', () => {
  const range = { minMs: 100, maxMs: 10_000 };

  it('stays within [minMs, min(maxMs, minMs * 2^attempt)]', () => {
    fc.assert(
      fc.property(fc.nat({ max: 2_000 }), fc.double({ min: 0, max: 1, noNaN: true }), (attempt, r) => {
        const delay = backoffDelay(attempt, range, () => r);
        expect(delay).toBeGreaterThanOrEqual(range.minMs);
        expect(delay).toBeLessThanOrEqual(Math.min(range.maxMs, range.minMs * 2 ** attempt));
      }),
    );
  });

  it('doubles its ceiling per attempt, and jitters across the whole range', () => {
    expect(backoffDelay(0, range, () => 1)).toBe(100);
    expect(backoffDelay(1, range, () => 1)).toBe(200);
    expect(backoffDelay(4, range, () => 1)).toBe(1_600);
    expect(backoffDelay(4, range, () => 0)).toBe(100);
    expect(backoffDelay(4, range, () => 0.5)).toBe(850);
  });

  it('is capped at maxMs, also for huge attempt numbers', () => {
    expect(backoffDelay(7, range, () => 1)).toBe(10_000);
    expect(backoffDelay(1e9, range, () => 1)).toBe(10_000);
    expect(backoffDelay(Number.MAX_SAFE_INTEGER, { minMs: 0, maxMs: 50 }, () => 1)).toBe(0);
    expect(backoffDelay(3, range, () => 7)).toBe(800);
  });

  it('uses Math.random by default and rejects bad ranges', () => {
    const delays = Array.from({ length: 50 }, () => backoffDelay(6, range));
    expect(new Set(delays).size).toBeGreaterThan(1);
    expect(() => backoffDelay(0, { minMs: 10, maxMs: 5 })).toThrow(RangeError);
    expect(() => backoffDelay(0, { minMs: -1, maxMs: 5 })).toThrow(RangeError);
  });
});

describe('region digests calling for an anti-entropy round', () => {
  const intervalMs = 30_000;
  const at = (o: Partial<Parameters<typeof callsForRound>[0]>) =>
    callsForRound({ mine: 'a', theirs: 'b', inFlight: 0, comparedAt: 0, linkOpenedAt: 0, now: 1000, intervalMs, ...o });

  it('compare at once when they differ with nothing in flight; not while they agree or this region computes many', () => {
    expect(at({})).toBe('differ');
    expect(at({ theirs: 'a', now: intervalMs * 10 })).toBe('agree');
    expect(at({ mine: null, now: intervalMs * 10 })).toBe('wait');
  });

  it('compare once two intervals pass without equal digests, entries in flight at every tick (steady writes)', () => {
    // Ticks an interval apart, give or take the timer's drift: not at the first after, at the second.
    expect(at({ inFlight: 3, now: intervalMs + 50 })).toBe('none');
    expect(at({ inFlight: 3, now: 2 * intervalMs - 50 })).toBe('overdue');
    // A backlog is left to the log stream, and so is a link just up (a heal catches up by its stream or by state).
    expect(at({ inFlight: 100_000, now: 10 * intervalMs })).toBe('none');
    expect(at({ inFlight: 3, now: 10 * intervalMs, linkOpenedAt: 10 * intervalMs - 1000 })).toBe('none');
  });

  it('compare once two intervals pass while the peer sends no digest (a large document written often rests there)', () => {
    expect(at({ theirs: null, now: intervalMs + 50 })).toBe('none');
    expect(at({ theirs: null, now: 2 * intervalMs - 50 })).toBe('overdue');
  });
});
