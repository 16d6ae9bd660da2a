import { randomBytes } from 'node:crypto';
import type { RegionId, WriterId } from '../ids.js';

/** A new writer id for `region`: the region name and 48 random bits. */
export function newWriterId(region: RegionId): WriterId {
  // 48 random bits: a region would need millions of fresh data directories
  // before two incarnations were likely to share a writer id.
  return `${region}~${randomBytes(6).toString('hex')}` as WriterId;
}
