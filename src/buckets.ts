/**
 * The buckets documents fall in for anti-entropy: a region digest per
 * bucket is compared first, and only the documents of differing buckets
 * are listed. Stable across regions and versions: every region must put a
 * document in the same bucket, and the store keeps it beside the document.
 */
import type { DocKey } from './ids.js';
import { sha256 } from './sha256.js';

export const BUCKETS = 1024;

/** Which bucket a document falls in. */
export function bucketOf(doc: DocKey | string): number {
  const digest = sha256(doc);
  return ((digest[0]! << 8) | digest[1]!) % BUCKETS;
}
