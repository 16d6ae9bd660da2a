/**
 * Version vector arithmetic, shared by the API (session guarantees) and
 * replication (lag, acknowledgements).
 */
import type { VersionVector } from './ids.js';

/** Does `have` hold everything `want` names? */
export function covers(have: VersionVector, want: VersionVector): boolean {
  for (const [origin, seq] of want) if ((have.get(origin) ?? 0) < seq) return false;
  return true;
}

/** How many updates `have` lacks of `want`. */
export function missingCount(want: VersionVector, have: VersionVector): number {
  let n = 0;
  for (const [origin, seq] of want) n += Math.max(0, seq - (have.get(origin) ?? 0));
  return n;
}

/** Per writer, how many updates `have` lacks of `want` (writers lacking nothing are left out). */
export function missingByWriter(want: VersionVector, have: VersionVector): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [origin, seq] of want) {
    const gap = seq - (have.get(origin) ?? 0);
    if (gap > 0) out[origin] = gap;
  }
  return out;
}
