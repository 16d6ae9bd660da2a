/**
 * SHA-256 without a native object per hash where it can. `createHash`
 * makes a native Hash object per call, held by a weak handle that V8
 * processes in the scavenge after the object dies; a region hashing a few
 * times per changed document (digests, bucket contributions, client ids)
 * spent up to 95 ms of one scavenge on them during a rebuild, and 1-5 ms
 * of most scavenges under steady writes. `crypto.hash` hashes in one call,
 * without one. Its digest is taken as a one-byte string and copied into 32
 * bytes on the heap: asked for a Buffer, it makes a backing store of its
 * own for each (1.3 µs a hash against 0.3 µs, 5 % of a catch-up).
 */
import { createHash, hash, type Hash } from 'node:crypto';

type Part = string | Uint8Array;

/** Input gathered beyond which {@link Sha256} streams into a Hash object instead, so a large document is not copied whole. */
const GATHER_BYTES = 64 * 1024;

/** SHA-256 of the parts one after another (strings as UTF-8): what `createHash('sha256').update(a).update(b)…digest()` gives. */
export function sha256(...parts: Part[]): Uint8Array {
  return sha256Of(parts);
}

function sha256Of(parts: readonly Part[]): Uint8Array {
  if (parts.length === 1) return hashed(parts[0]!);
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
  return hashed(joined);
}

function hashed(data: Part): Uint8Array {
  const latin1 = hash('sha256', data, 'binary');
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = latin1.charCodeAt(i);
  return out;
}

/** An incremental SHA-256 (`update`, then `digest` once) that gathers small input and hashes it in one call. */
export class Sha256 {
  private parts: Part[] = [];
  /**
   * Strings given since the last binary part, joined: a document digest
   * hashes hundreds of short strings, and encoding each into the buffer on
   * its own cost more than the hash.
   */
  private text = '';
  /** The last UTF-16 unit of {@link text} (reading it from the joined string would flatten it at every part). */
  private lastUnit = 0;
  private gathered = 0;
  private streaming: Hash | null = null;

  update(part: Part): this {
    if (typeof part === 'string') {
      // Two parts that split a surrogate pair encode as two U+FFFD, joined as
      // one character: they stay apart.
      if (isHighSurrogate(this.lastUnit) && isLowSurrogate(part.charCodeAt(0))) this.endText();
      this.text += part;
      if (part !== '') this.lastUnit = part.charCodeAt(part.length - 1);
      // UTF-16 code units: at most a third of a string's UTF-8 bytes too few, enough for a bound.
      this.gathered += part.length;
    } else {
      this.endText();
      this.parts.push(part);
      this.gathered += part.byteLength;
    }
    if (this.gathered > GATHER_BYTES) this.spill();
    return this;
  }

  digest(): Uint8Array {
    this.endText();
    if (this.streaming === null) return sha256Of(this.parts);
    this.spill();
    return this.streaming.digest();
  }

  private endText(): void {
    if (this.text === '') return;
    this.parts.push(this.text);
    this.text = '';
    this.lastUnit = 0;
  }

  private spill(): void {
    this.endText();
    this.streaming ??= createHash('sha256');
    for (const part of this.parts) this.streaming.update(part);
    this.parts = [];
    this.gathered = 0;
  }
}

function isHighSurrogate(unit: number): boolean {
  return unit >= 0xd800 && unit <= 0xdbff;
}

function isLowSurrogate(unit: number): boolean {
  return unit >= 0xdc00 && unit <= 0xdfff;
}
