/**
 * A bound on the reload checks clients' updates cost one document.
 *
 * A client's update naming neighbours no editor wrote side by side is taken
 * only once the document is found still what its own state reloads to (see
 * crdt/admit.ts): a build and two digests, 0.1-0.4 s for 30,000-50,000 map
 * keys, which a client could ask for with every 13-byte request. Editors ask
 * for one rarely (undoing in XML through a deleted parent). So after a
 * check of a document that took {@link SLOW_CHECK_MS} or more, the next
 * waits 20 times as long: refused meanwhile with 503 `unavailable` and
 * `retry-after`, before anything is applied where the update shows it
 * first.
 */
import { MeridianError } from '../errors.js';
import type { DocKey } from '../ids.js';
import { setNewest } from '../newest.js';

/** A check shorter than this leaves the next one free: a small document's costs little. */
const SLOW_CHECK_MS = 10;
/** How many times a slow check's duration the next one of the same document waits. */
const REST_FACTOR = 20;
/** Documents remembered as resting at most; beyond, the oldest are forgotten. */
const MAX_RESTING = 1024;

export class ReloadChecks {
  /** Documents whose last check was slow, with when (performance.now()) the next may run. */
  private readonly resting = new Map<DocKey, number>();

  /** Throws `unavailable` while `doc` rests after a slow check. */
  ready(doc: DocKey): void {
    const until = this.resting.get(doc);
    if (until === undefined) return;
    const now = performance.now();
    if (now >= until) {
      this.resting.delete(doc);
      return;
    }
    throw new MeridianError(
      'unavailable',
      `the update names neighbours no editor wrote side by side, and such updates of this document are checked against its reload at most once per ${REST_FACTOR} times the last check's duration; retry in ${Math.ceil((until - now) / 1000)} s`,
    );
  }

  /** A check of `doc` took `ms`. */
  took(doc: DocKey, ms: number): void {
    if (ms >= SLOW_CHECK_MS) setNewest(this.resting, doc, performance.now() + REST_FACTOR * ms, MAX_RESTING);
  }
}
