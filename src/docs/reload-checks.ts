/**
 * Bounds on the reload checks one document costs (a build and two digests
 * of it: 0.1-0.4 s for 30,000-50,000 map keys).
 *
 * Clients: a client's update naming neighbours no editor wrote side by side
 * is taken only once the document is found still what its own state reloads
 * to (see crdt/admit.ts), which a client could ask for with every 13-byte
 * request. Editors ask for one rarely (undoing in XML through a deleted
 * parent). So after a check of a document that took {@link SLOW_CHECK_MS}
 * or more, the next waits 20 times as long: refused meanwhile with 503
 * `unavailable` and `retry-after`, before anything is applied where the
 * update shows it first.
 *
 * Peers: an entry that lets structs that waited for missing dependencies be
 * placed is checked (see crdt/load.ts `mayHaveDiverged`), and honest
 * writers' entries arriving out of order at a region behind on some of them
 * do that at nearly every entry. Checked at each, a document written at
 * three regions at once, grown to 1.5 MB, held the region behind ever
 * longer: it fell further behind, and its links closed. So after such a
 * check of a document of 5,000 structs or more, the next waits 20 times as
 * long as it took. One asked for meanwhile is owed, and made at the
 * document's first entry after that; none is skipped. Until then the
 * document may differ from what its state reloads to (an entry of two
 * writers under one Yjs id taken unchecked), and what the owed check finds
 * may be an earlier entry's doing: it refuses no entry, and a document
 * that would not settle on reload is kept as it is (as before such checks
 * existed) until a check finds it settled.
 */
import { MeridianError } from '../errors.js';
import type { DocKey } from '../ids.js';
import { setNewest } from '../newest.js';

/** A client's check shorter than this leaves the next one free: a small document's costs little. */
const SLOW_CHECK_MS = 10;
/**
 * For peers' entries: a check of a document of fewer structs than this
 * leaves the next one free (it costs a few ms at most), so that a small
 * document stays what its state reloads to after every entry, whatever the
 * host's speed.
 */
const RESTING_STRUCTS = 5_000;
/** How many times a check's duration the next one of the same document waits. */
const REST_FACTOR = 20;
/** Documents remembered as resting (or owing a check) at most; beyond, the oldest are forgotten. */
const MAX_RESTING = 1024;

export class ReloadChecks {
  /** Documents whose last check was slow, with when (performance.now()) the next may run. */
  private readonly resting = new Map<DocKey, number>();

  /** Throws `unavailable` while `doc` rests after a slow check. */
  ready(doc: DocKey): void {
    const until = this.restsUntil(doc);
    if (until === null) return;
    const seconds = Math.ceil((until - performance.now()) / 1000);
    throw new MeridianError(
      'unavailable',
      `the update names neighbours no editor wrote side by side, and such updates of this document are checked against its reload at most once per ${REST_FACTOR} times the last check's duration; retry in ${seconds} s`,
      undefined,
      { retryAfterSeconds: seconds },
    );
  }

  /** A check of `doc` took `ms`. */
  took(doc: DocKey, ms: number): void {
    if (ms >= SLOW_CHECK_MS) this.rest(doc, ms);
  }

  protected rest(doc: DocKey, ms: number): void {
    setNewest(this.resting, doc, performance.now() + REST_FACTOR * ms, MAX_RESTING);
  }

  protected restsUntil(doc: DocKey): number | null {
    const until = this.resting.get(doc);
    if (until === undefined) return null;
    if (performance.now() < until) return until;
    this.resting.delete(doc);
    return null;
  }
}

/** The peers' side (see above): checks that honest entries ask for too wait their turn; none is skipped. */
export class PeerReloadChecks extends ReloadChecks {
  /**
   * Documents that took entries unchecked (asked for a check while they
   * rested) since a check last found them what their state reloads to.
   */
  private readonly unchecked = new Map<DocKey, true>();
  /** Checks made, asked for while their document rested (each made later), and made finding a document taken unchecked unsettled. */
  readonly counts = { made: 0, putOff: 0, keptUnsettled: 0 };

  /** Whether `doc` took entries unchecked since a check last found it settled: a check may not refuse the entry at hand. */
  owes(doc: DocKey): boolean {
    return this.unchecked.has(doc);
  }

  /**
   * Whether to check `doc` now: asked for (`wanted`) or owed, and not
   * resting. Asked for while it rests, the check is owed (see {@link owes}).
   */
  due(doc: DocKey, wanted: boolean): boolean {
    if (!wanted && !this.unchecked.has(doc)) return false;
    if (this.restsUntil(doc) !== null) {
      if (wanted) this.counts.putOff++;
      setNewest(this.unchecked, doc, true, MAX_RESTING);
      return false;
    }
    return true;
  }

  /**
   * A check of `doc`, holding `structs` structs, took `ms`; `settled`: it
   * found the document what its state reloads to, or replaced it by that.
   */
  override took(doc: DocKey, ms: number, structs = 0, settled = true): void {
    this.counts.made++;
    if (settled) this.unchecked.delete(doc);
    else this.counts.keptUnsettled++;
    if (structs >= RESTING_STRUCTS) this.rest(doc, ms);
  }
}
