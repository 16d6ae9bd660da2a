/**
 * Document digests, computed after the commit rather than before the reply.
 *
 * A digest walks the whole document, so computing it on the write path
 * would make every write cost as much as the document is large. Instead a
 * commit marks its documents stale, and the digester recomputes them in
 * small slices between requests, moves the region's digest index along, and
 * hands the results to the next commit to store (or stores them itself when
 * no commit comes).
 * Reading the region digest settles what is still stale first, and
 * anti-entropy also stores the results before it reads the store's summaries.
 */
import type { Logger } from 'pino';
import type { DocKey } from '../ids.js';
import { docDigest, documentHoldsContent, structsHeld } from '../crdt/index.js';
import type { DocDigest, DocumentStates } from '../storage/types.js';
import type { LiveDoc } from './cache.js';
import type { DigestIndex } from './digest-index.js';
import type { BackgroundPacer } from '../pacer.js';
import { createLogLimiter, type LogLimiter } from '../log-limiter.js';

/** Longest stretch of digest work before requests get a turn, ms. */
const SLICE_MS = 4;
/**
 * A document digested less than this long ago (one to two of these, ms)
 * waits before it is digested again: one written at every commit (a hot
 * counter, a set many clients add to) was walked once per commit, hundreds
 * of times a second. Readers that need exact digests (heartbeats, the
 * region digest, anti-entropy) settle what is stale themselves.
 */
const REDIGEST_AFTER_MS = 100;
/**
 * A document whose digest took longer than {@link SLOW_DIGEST_MS} rests
 * this many times as long before the digester, or a sync status, computes
 * it again: a large document written without pause (a 6 MB one takes
 * 20-35 ms) was walked four times a second, each time holding every request
 * of the region, and once per write by a client polling `GET /v1/sync`.
 */
const SLOW_DIGEST_WAIT = 40;
const SLOW_DIGEST_MS = 2;
/**
 * Documents remembered as slow at most, beyond those slow twice: a small
 * document's digest is slow once when a collection pause lands in it, and
 * over weeks such documents would add up.
 */
const MAX_SLOW_ONCE = 1024;
/**
 * Structs, or bytes of encoded state, a document holds at least to count as
 * slow twice (which sync statuses and heartbeats leave stale while it
 * rests): a small document's digest is slow twice in a row on a busy host
 * too (two collection pauses), and a region's digest then went without it
 * for no gain. Digests cost by structs and by bytes: a 7 MB document of 7
 * structs took 20 ms.
 */
const SLOW_TWICE_STRUCTS = 5_000;
const SLOW_TWICE_BYTES = 1 << 20;
/** How long computed digests may wait for a commit to carry them before they are stored alone, ms. */
const STORE_ALONE_MS = 1000;

export interface DigesterOptions {
  store: Pick<DocumentStates, 'staleSummaries' | 'setDigests'>;
  index: DigestIndex;
  logger: Logger;
  /** The cached live doc, if any (newer than anything on disk). */
  live(doc: DocKey): LiveDoc | undefined;
  /** Loads a doc (from disk, or a copy of one held encoded) without caching it. */
  load(doc: DocKey): LiveDoc | null;
  /** `doc`'s digest was computed: what the index now holds for it. */
  digested?(doc: DocKey, digest: Uint8Array): void;
  /** Whether a commit that changed `doc` is still on its way to the disk (its digest waits). */
  busy(doc: DocKey): boolean;
  /** Paces the digests of changed documents while clients write (thousands after a catch-up). */
  pacer?: BackgroundPacer;
  /**
   * Whether the write path is applying a backlog from peers: its documents
   * change again and again until it ends, so they are digested after
   * (readers that need exact digests still settle them).
   */
  backlog?(): boolean;
}

export class Digester {
  /** Stale documents, with the digest each now contributes to the index. */
  private readonly stale = new Map<DocKey, Uint8Array | null>();
  /** Computed and in the index, not yet stored. */
  private computed = new Map<DocKey, DocDigest>();
  /**
   * Computed, and on their way to the disk (taken by a commit, or stored
   * alone): until that write is durable the store still holds the older
   * digest, and a document loaded meanwhile must take this one.
   */
  private readonly storing = new Map<DocKey, Uint8Array>();
  /** Documents whose last digest was slow, with when (performance.now()) the digester may compute it again. */
  private readonly slowUntil = new Map<DocKey, number>();
  /** Documents whose last two digests were both slow: large ones, not a collection pause in a small one's. */
  private readonly slowTwice = new Set<DocKey>();
  /** Documents digested in the current window of {@link REDIGEST_AFTER_MS}, and in the one before it. */
  private recent = new Set<DocKey>();
  private previous = new Set<DocKey>();
  private windowStarted = 0;
  private sliceScheduled = false;
  private redigestTimer: NodeJS.Timeout | null = null;
  /** The settle in turns under way, if any. */
  private settling: Promise<void> | null = null;
  private storeTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** A store that refuses every write would otherwise get this warning every second, beside its failing commits' errors. */
  private readonly refusals: LogLimiter;

  constructor(private readonly o: DigesterOptions) {
    this.refusals = createLogLimiter({ logger: o.logger });
  }

  /** Queues the documents whose stored digests were stale at start. */
  resumeStale(): void {
    let after: DocKey | null = null;
    for (;;) {
      const page = this.o.store.staleSummaries(after, 1000);
      for (const s of page) this.markStale(s.doc, s.digest);
      if (page.length < 1000) return;
      after = page[page.length - 1]!.doc;
    }
  }

  /** `doc` changed; `indexed` is the digest it contributes to the index now (null: none). */
  markStale(doc: DocKey, indexed: Uint8Array | null): void {
    if (!this.stale.has(doc)) this.stale.set(doc, indexed);
    this.schedule();
  }

  /**
   * `doc`'s digest was computed for the commit that changed it and stored
   * with it (`before`: what the batch found indexed): the index takes it,
   * and nothing about `doc` is left to compute or store.
   */
  committed(doc: DocKey, before: Uint8Array | null, digest: Uint8Array): void {
    const indexed = this.stale.has(doc) ? (this.stale.get(doc) ?? null) : before;
    this.stale.delete(doc);
    this.computed.delete(doc);
    this.storing.delete(doc);
    this.o.index.update(doc, indexed, digest);
  }

  /**
   * The digest `doc` contributes to the index when the store may not have
   * it yet (stale, or computed and unstored); undefined when the store has it.
   */
  indexedOf(doc: DocKey): Uint8Array | null | undefined {
    return this.stale.has(doc) ? this.stale.get(doc) : (this.computed.get(doc)?.digest ?? this.storing.get(doc));
  }

  /**
   * `doc` was marked corrupt in the store (digest set to zeros, which the
   * index must follow); returns what it contributed before, when known here.
   */
  corrupted(doc: DocKey): Uint8Array | null | undefined {
    const before = this.indexedOf(doc);
    this.computed.delete(doc);
    this.storing.delete(doc);
    if (this.stale.has(doc)) this.stale.set(doc, new Uint8Array(32));
    return before;
  }

  /** Computes every stale digest now, so the index is exact. */
  settle(): void {
    for (const doc of [...this.stale.keys()]) this.compute(doc);
  }

  /**
   * As {@link settle} when at most `limit` documents are stale (a few
   * milliseconds of work); false, doing nothing, when more are: after a
   * catch-up thousands may be, and computing them at once would hold every
   * request and heartbeat behind it.
   */
  settleFew(limit: number): boolean {
    if (this.stale.size > limit) return false;
    this.settle();
    return true;
  }

  /**
   * As {@link settleFew}, leaving out documents resting after a slow
   * digest: false when any is left stale (the region digest is not exact).
   */
  settleFewSparing(limit: number): boolean {
    if (this.stale.size > limit) return false;
    const now = performance.now();
    let exact = true;
    for (const doc of [...this.stale.keys()]) {
      if (this.spared(doc, now)) exact = false;
      else this.compute(doc);
    }
    return exact;
  }

  /** Whether a sync status leaves `doc` stale: resting, and slow the two last times (so surely large). */
  private spared(doc: DocKey, now: number): boolean {
    return this.slowTwice.has(doc) && this.resting(doc, now);
  }

  /** Forgets the documents slow only once whose rest has passed. */
  private forgetRested(now: number): void {
    for (const [doc, until] of this.slowUntil) if (until <= now && !this.slowTwice.has(doc)) this.slowUntil.delete(doc);
  }

  /** Whether `doc`'s last digest was slow and the rest it earned has not passed. */
  private resting(doc: DocKey, now: number): boolean {
    return (this.slowUntil.get(doc) ?? 0) > now;
  }

  /**
   * As {@link settle} for the documents stale now, in slices between which
   * requests and frames are served. Documents that change meanwhile are left
   * to the caller's settle (few), so that steady writes cannot keep it going,
   * and so are documents resting after a slow digest, so that polling it
   * cannot. Callers while one runs share it.
   */
  settleInTurns(): Promise<void> {
    this.settling ??= this.computeInTurns().finally(() => (this.settling = null));
    return this.settling;
  }

  private async computeInTurns(): Promise<void> {
    const docs = [...this.stale.keys()];
    let started = performance.now();
    for (const doc of docs) {
      if (this.stopped) return;
      if (performance.now() - started > SLICE_MS) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        started = performance.now();
      }
      if (!this.spared(doc, performance.now())) this.compute(doc);
    }
  }

  /**
   * As {@link settle}, and stores the digests too, so the store's summaries
   * are exact once the returned promise (if any) resolves.
   */
  settleAndStore(): Promise<void> | undefined {
    this.settle();
    return this.storeAlone();
  }

  /** Digests computed since the last call, for the next commit to store; see {@link durable} and {@link giveBack}. */
  takeComputed(): DocDigest[] {
    const out = [...this.computed.values()];
    for (const d of out) this.storing.set(d.doc, d.digest);
    this.computed.clear();
    return out;
  }

  /** Digests taken by {@link takeComputed} are stored: the store answers for them from now on. */
  durable(digests: DocDigest[]): void {
    for (const d of digests) if (this.storing.get(d.doc) === d.digest) this.storing.delete(d.doc);
  }

  /** Digests a commit did not store (it failed, or had nothing else to store): stored with a later one. */
  giveBack(digests: DocDigest[]): void {
    this.durable(digests);
    for (const d of digests) if (!this.computed.has(d.doc)) this.computed.set(d.doc, d);
    this.armStore();
  }

  stop(): void {
    this.stopped = true;
    if (this.redigestTimer) clearTimeout(this.redigestTimer);
    this.redigestTimer = null;
    if (this.storeTimer) clearTimeout(this.storeTimer);
    this.storeTimer = null;
  }

  private schedule(): void {
    if (this.sliceScheduled || this.stopped) return;
    this.sliceScheduled = true;
    const wait = this.o.pacer?.wait() ?? 0;
    if (wait > 0) setTimeout(() => this.slice(), wait);
    else setImmediate(() => this.slice());
  }

  private slice(): void {
    this.sliceScheduled = false;
    if (this.stopped) return;
    if (this.o.backlog?.()) return this.redigestLater();
    const started = performance.now();
    this.turnWindow(started);
    let waiting = false;
    let outOfTime = false;
    for (const doc of this.stale.keys()) {
      if (this.recent.has(doc) || this.previous.has(doc) || this.resting(doc, started)) {
        waiting = true;
        continue;
      }
      this.compute(doc);
      if (performance.now() - started > SLICE_MS) {
        outOfTime = true;
        break;
      }
    }
    this.o.pacer?.spent(performance.now() - started);
    // Documents still on their way to the disk are left to their commit, which schedules the next slice.
    if (outOfTime) this.schedule();
    else if (waiting) this.redigestLater();
    this.armStore();
  }

  /** A slice once the documents digested just now may be digested again. */
  private redigestLater(): void {
    if (this.redigestTimer || this.stopped) return;
    this.redigestTimer = setTimeout(() => {
      this.redigestTimer = null;
      this.schedule();
    }, REDIGEST_AFTER_MS);
    this.redigestTimer.unref();
  }

  private turnWindow(now: number): void {
    if (now - this.windowStarted < REDIGEST_AFTER_MS) return;
    this.previous = now - this.windowStarted < 2 * REDIGEST_AFTER_MS ? this.recent : new Set();
    this.recent = new Set();
    this.windowStarted = now;
  }

  /** Stores computed digests alone if no commit carries them within {@link STORE_ALONE_MS}. */
  private armStore(): void {
    if (this.computed.size === 0 || this.storeTimer || this.stopped) return;
    this.storeTimer = setTimeout(() => this.storeAlone(), STORE_ALONE_MS);
    this.storeTimer.unref();
  }

  private compute(doc: DocKey): void {
    const indexed = this.stale.get(doc);
    if (indexed === undefined || this.o.busy(doc)) return;
    this.stale.delete(doc);
    const cached = this.o.live(doc);
    let live: LiveDoc | null = cached ?? null;
    try {
      live ??= this.o.load(doc);
      if (!live) return;
      const started = performance.now();
      const digest = docDigest(live.ydoc);
      const took = performance.now() - started;
      if (took > SLOW_DIGEST_MS) {
        if (this.slowUntil.has(doc) && isLarge(live)) this.slowTwice.add(doc);
        else if (this.slowUntil.size >= this.slowTwice.size + MAX_SLOW_ONCE) this.forgetRested(started);
        this.slowUntil.set(doc, started + took * SLOW_DIGEST_WAIT);
      } else {
        this.slowUntil.delete(doc);
        this.slowTwice.delete(doc);
      }
      // Stored with it: a document changed by entries held beside its state had its flag left as it was.
      const deleted = !documentHoldsContent(live.ydoc);
      this.turnWindow(performance.now());
      this.recent.add(doc);
      this.o.index.update(doc, indexed, digest);
      live.digest = digest;
      this.o.digested?.(doc, digest);
      this.computed.set(doc, { doc, digest, deleted });
    } catch (err) {
      // This runs between requests, where nothing would catch it: one
      // document that cannot be read or hashed must not end the process. It
      // keeps its old digest (stale on disk, so the next start tries again).
      this.o.logger.error({ err, doc }, 'could not compute a document digest; it keeps its previous one');
    } finally {
      if (live && !cached) live.ydoc.destroy();
    }
  }

  /**
   * Stores computed digests that no commit has carried; a promise while the
   * store writes them elsewhere (it never rejects).
   */
  private storeAlone(): Promise<void> | undefined {
    if (this.storeTimer) clearTimeout(this.storeTimer);
    this.storeTimer = null;
    const digests = this.takeComputed();
    if (digests.length === 0) return;
    // Not lost when refused: tried again with a later commit (and at the next start, still marked stale on disk).
    const refused = (err: unknown): void => {
      this.refusals.warn('digests-refused', 'store', { err, docs: digests.length }, 'could not store document digests; trying again with a later write');
      this.giveBack(digests);
    };
    try {
      const writing = this.o.store.setDigests(digests);
      if (!writing) return void this.durable(digests);
      return writing.then(() => this.durable(digests), refused);
    } catch (err) {
      refused(err);
    }
  }
}

function isLarge(live: LiveDoc): boolean {
  return structsHeld(live.ydoc) >= SLOW_TWICE_STRUCTS || (live.sizeBound ?? live.builtFrom ?? 0) >= SLOW_TWICE_BYTES;
}
