/**
 * SHA-256 without a native object per hash where it can. `createHash`
 * makes a native Hash object per call, held by a weak handle that V8
 * processes in the scavenge after the object dies; a region hashing a few
 * times per changed document (digests, bucket contributions, client ids)
 * spent up to 95 ms of one scavenge on them during a rebuild, and 1-5 ms
 * of most scavenges under steady writes. `crypto.hash` hashes in one call,
 * without one.
 */
import { createHash, hash, type Hash } from 'node:crypto';

type Part = string | Uint8Array;

/** Input gathered beyond which {@link Sha256} streams into a Hash object instead, so a large document is not copied whole. */
const GATHER_BYTES = 64 * 1024;

/** SHA-256 of the parts one after another (strings as UTF-8): what `createHash('sha256').update(a).update(b)…digest()` gives. */
export function sha256(...parts: Part[]): Buffer {
  return sha256Of(parts);
}

function sha256Of(parts: readonly Part[]): Buffer {
  if (parts.length === 1) return hash('sha256', parts[0]!, 'buffer');
  // One buffer written part by part (from Buffer's pool when small), not a
  // buffer per string and their concatenation: digests run for every
  // changed document, thousands at once after a heal.
  let bytes = 0;
  for (const p of parts) bytes += typeof p === 'string' ? Buffer.byteLength(p, 'utf8') : p.byteLength;
  const joined = Buffer.allocUnsafe(bytes);
  let at = 0;
  for (const p of parts) {
    if (typeof p === 'string') {
      at += joined.write(p, at, 'utf8');
    } else {
      joined.set(p, at);
      at += p.byteLength;
    }
  }
  return hash('sha256', joined, 'buffer');
}

/** An incremental SHA-256 (`update`, then `digest` once) that gathers small input and hashes it in one call. */
export class Sha256 {
  private parts: Part[] = [];
  private gathered = 0;
  private streaming: Hash | null = null;

  update(part: Part): this {
    this.parts.push(part);
    // UTF-16 code units: at most a third of a string's UTF-8 bytes too few, enough for a bound.
    this.gathered += typeof part === 'string' ? part.length : part.byteLength;
    if (this.gathered > GATHER_BYTES) this.spill();
    return this;
  }

  digest(): Buffer {
    if (this.streaming === null) return sha256Of(this.parts);
    this.spill();
    return this.streaming.digest();
  }

  private spill(): void {
    this.streaming ??= createHash('sha256');
    for (const part of this.parts) this.streaming.update(part);
    this.parts = [];
    this.gathered = 0;
  }
}
