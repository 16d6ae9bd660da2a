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

/** Contributions remembered for taking out again; beyond this many the memory starts over. */
const REMEMBERED = 16_384;

export class DigestIndex {
  private readonly region = new Uint8Array(32);
  private readonly buckets: Uint8Array[] = Array.from({ length: BUCKETS }, () => new Uint8Array(32));
  /**
   * The contribution each recently changed document added, with the digest
   * it came from: the next change of that document takes it out again, and
   * need not hash it a second time (a hash of a few µs per changed document,
   * a tenth of a region's work while it applies a peer's backlog).
   */
  private remembered = new Map<DocKey, { digest: Uint8Array; contribution: Uint8Array }>();

  /** Replaces a document's contribution (`before` null when it was unknown). */
  update(doc: DocKey, before: Uint8Array | null, after: Uint8Array): void {
    const bucket = this.buckets[bucketOf(doc)]!;
    if (before) {
      const old = this.contributionOf(doc, before);
      xorInto(this.region, old);
      xorInto(bucket, old);
    }
    const now = contribution(doc, after);
    xorInto(this.region, now);
    xorInto(bucket, now);
    if (this.remembered.size >= REMEMBERED) this.remembered = new Map();
    this.remembered.set(doc, { digest: after.slice(), contribution: now });
  }

  private contributionOf(doc: DocKey, digest: Uint8Array): Uint8Array {
    const known = this.remembered.get(doc);
    if (known !== undefined && equalBytes(known.digest, digest)) return known.contribution;
    return contribution(doc, digest);
  }

  regionDigest(): string {
    return Buffer.from(this.region).toString('hex');
  }

  /**
   * The region digest with stale documents still counted as they were,
   * marked with `marker` (the region's writer id): two regions that are
   * behind by different entries of the same documents would otherwise
   * report equal digests, as if they held the same.
   */
  partialDigest(marker: string): string {
    const marked = this.region.slice();
    xorInto(marked, sha256('partial\0', marker));
    return Buffer.from(marked).toString('hex');
  }

  /** 8-byte prefixes of every bucket digest, in bucket order. */
  bucketDigests(): Uint8Array[] {
    return this.buckets.map((b) => b.slice(0, 8));
  }
}

function contribution(doc: DocKey, digest: Uint8Array): Uint8Array {
  return sha256(doc, '\0', digest);
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a === b) return true;
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

function xorInto(target: Uint8Array, value: Uint8Array): void {
  for (let i = 0; i < target.length; i++) target[i]! ^= value[i] ?? 0;
}
