/**
 * Who catches a wiped region up by state: another region earlier by name is
 * left to do it while it says it can, and never for longer than a bound, so
 * a peer that keeps saying so and never sends cannot keep the region from
 * the entries no log holds any more.
 */
import { describe, expect, it } from 'vitest';
import { MAX_LEAVE_MS, leavesCatchUp, type CatchUpPeer } from '../src/replication/catch-up-turn.js';
import type { RegionId, VersionVector, WriterId } from '../src/ids.js';

const held: VersionVector = new Map([['eu-west~01' as WriterId, 40], ['us-east~02' as WriterId, 7]]);
const HEARTBEAT = 1000;

/** A peer that reaches `reaches` and states it holds `has`. */
function peer(region: string, has: VersionVector, reaches: string[]): CatchUpPeer {
  return { region: region as RegionId, session: { peerHas: has, peerReaches: (r) => reaches.includes(r) } };
}

const ask = (peers: CatchUpPeer[], waitedMs: number, self = 'eu-west') =>
  leavesCatchUp({ self: self as RegionId, target: 'us-east' as RegionId, peers, held, since: 1_000_000, now: 1_000_000 + waitedMs, heartbeatMs: HEARTBEAT });

describe('leaving a catch-up by state to another region', () => {
  it('waits three heartbeats for one earlier by name, then as long as it reaches the region and holds everything', () => {
    const claims = [peer('ap-south', held, ['us-east'])];
    expect(ask(claims, 0)).toBe(true);
    expect(ask(claims, 3 * HEARTBEAT)).toBe(true);
    expect(ask(claims, MAX_LEAVE_MS - 1)).toBe(true);
    // Not one that lacks some of it, does not reach the region, or has no link up.
    expect(ask([peer('ap-south', new Map([['eu-west~01' as WriterId, 39]]), ['us-east'])], 3 * HEARTBEAT)).toBe(false);
    expect(ask([peer('ap-south', held, [])], 3 * HEARTBEAT)).toBe(false);
    expect(ask([{ region: 'ap-south' as RegionId, session: null }], 3 * HEARTBEAT)).toBe(false);
    // Nobody earlier by name: this region sends at once.
    expect(ask([peer('us-west', held, ['us-east'])], 0)).toBe(false);
    expect(ask(claims, 0, 'ap-north')).toBe(false);
  });

  it('never for longer than the bound, however long the other keeps saying it could', () => {
    const claims = [peer('ap-south', held, ['us-east'])];
    expect(ask(claims, MAX_LEAVE_MS)).toBe(false);
    expect(ask(claims, 10 * MAX_LEAVE_MS)).toBe(false);
  });
});
