/**
 * How local writes are held to `limits.maxDocumentBytes` without walking a
 * large document at every write. Measuring a document's size means
 * encoding all of it (60-100 ms for 8 MB, on the event loop), and refusing
 * a write means reloading the document (as long again). Measured at every
 * write near the bound, a client writing small values in place into an 8 MB
 * document held the region 60 ms per write, and 32 such clients held every
 * other write of the region for seconds (up to 41 s in one test). So:
 *
 * - between two measurements a document may grow past its last measured
 *   size by a 64th of the bound before it is measured again, which may
 *   leave it that much over the bound;
 * - a document measured over the bound (the write refused, or taken as it
 *   does not grow the document) is full for a while (at least a second, and
 *   20 times as long as the measurement took): writes to it are refused
 *   before they are applied, without measuring or reloading.
 */
import type { DocKey } from '../ids.js';
import { setNewest } from '../newest.js';

/**
 * The part of the bound a document may pass it by between two measurements
 * (1/64: 128 KiB at the default 8 MiB; the default frame bound's 1 MiB of
 * headroom holds that for up to eight regions).
 */
const SLACK_SHARE = 64;

/** Shortest time a document stays full after it was measured over the bound, ms. */
const FULL_MIN_MS = 1000;
/** ... and how many times the measurement that refused it, at least. */
const FULL_PER_MEASURE = 20;
/** Documents counted full at once, at most; beyond, the one marked longest ago is forgotten. */
const MAX_FULL = 16_384;

export class SizeGuard {
  /** Documents measured over the bound: their size, and until when (performance.now()) they count as full. */
  private readonly full = new Map<DocKey, { size: number; until: number }>();
  readonly slack: number;

  constructor(
    readonly limit: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.slack = Math.floor(limit / SLACK_SHARE);
  }

  /**
   * Whether a document of at most `bound` bytes, last measured at
   * `measured` (undefined: not since it was loaded or replaced), is within
   * the bound without measuring it again: under it outright, or grown by no
   * more than the slack since a measurement under it.
   */
  withinUnmeasured(bound: number, measured: number | undefined): boolean {
    return bound <= this.limit || (measured !== undefined && measured <= this.limit && bound - measured <= this.slack);
  }

  /** The size `doc` was measured at over the bound, while it still counts as full; else null. */
  fullSize(doc: DocKey): number | null {
    const f = this.full.get(doc);
    if (f === undefined) return null;
    if (f.until > this.now()) return f.size;
    this.full.delete(doc);
    return null;
  }

  /** `doc` is no longer full, whatever it was marked. */
  clear(doc: DocKey): void {
    this.full.delete(doc);
  }

  /** `doc` measured `size` bytes, over the bound; measuring it took `measureMs`; full for at least `minMs`. */
  over(doc: DocKey, size: number, measureMs: number, minMs = FULL_MIN_MS): void {
    const now = this.now();
    for (const [d, f] of this.full) if (f.until <= now) this.full.delete(d);
    // Each document costs its writers a bound's worth of writes to get here; kept bounded all the same.
    setNewest(this.full, doc, { size, until: now + Math.max(minMs, FULL_PER_MEASURE * measureMs) }, MAX_FULL);
  }
}
