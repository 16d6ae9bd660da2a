/**
 * The region digest and its buckets. Each document contributes
 * sha256(doc key, doc digest) XORed into its bucket and into the region
 * digest, so one write updates them in O(1), and two regions have equal
 * digests exactly when they hold the same documents in the same states
 * (deletions included, because document digests cover delete sets).
 */
import { BUCKETS, bucketOf } from '../buckets.js';
import { sha256 } from '../sha256.js';
import type { DocKey } from '../ids.js';

export class DigestIndex {
  private readonly region = new Uint8Array(32);
  private readonly buckets: Uint8Array[] = Array.from({ length: BUCKETS }, () => new Uint8Array(32));

  /** Replaces a document's contribution (`before` null when it was unknown). */
  update(doc: DocKey, before: Uint8Array | null, after: Uint8Array): void {
    const bucket = this.buckets[bucketOf(doc)]!;
    if (before) {
      const old = contribution(doc, before);
      xorInto(this.region, old);
      xorInto(bucket, old);
    }
    const now = contribution(doc, after);
    xorInto(this.region, now);
    xorInto(bucket, now);
  }

  regionDigest(): string {
    return Buffer.from(this.region).toString('hex');
  }

  /** 8-byte prefixes of every bucket digest, in bucket order. */
  bucketDigests(): Uint8Array[] {
    return this.buckets.map((b) => b.slice(0, 8));
  }
}

function contribution(doc: DocKey, digest: Uint8Array): Uint8Array {
  return sha256(doc, '\0', digest);
}

function xorInto(target: Uint8Array, value: Uint8Array): void {
  for (let i = 0; i < target.length; i++) target[i]! ^= value[i] ?? 0;
}
