/**
 * Reads of a large document, shared and spaced. Rendering a 6 MB document
 * (as JSON, or as one Yjs update) takes tens of milliseconds on the thread
 * that serves every request, and sending each reader its own copy allocated
 * and converted as much again: four clients reading one without pause held
 * the region's writes, to any document, for half a second each.
 *
 * A read whose document rendered slowly last time joins the next render of
 * it: every request that arrives before a render starts gets that render's
 * bytes (one buffer, sent to each), so each still sees what was durable when
 * it asked. The document's renders run one at a time, each at the earliest
 * {@link SPACING} times the last one's time after it ended, whatever they
 * render (JSON, or the Yjs update for one state vector). A document that
 * renders fast is rendered for each read, as before.
 */

import { MeridianError } from '../errors.js';

/** Renders shorter than this, ms, are not shared. */
const SLOW_MS = 2;
/** A slow render waits this many times the last one's time after it... */
const SPACING = 10;
/** ... but never longer than this, ms. */
const MAX_WAIT_MS = 500;
/**
 * Renders of one slow document queued at once (different variants) at most:
 * beyond, a read is refused (503, retry) rather than wait many turns, and
 * hold its request, behind a client asking for one state vector after another.
 */
const MAX_QUEUED = 8;
/**
 * Of those, queued by one caller at most: one asking for a state vector
 * after another would otherwise take them all, and every other reader of
 * the document (editors' first sync among them) would be refused.
 */
const MAX_QUEUED_PER_CALLER = 2;
/** Documents whose last render was slow, kept; beyond, the idle ones are dropped. */
const MAX_SLOTS = 4096;

/** A document whose last render was slow: its renders, one at a time. */
interface Slot {
  ended: number;
  took: number;
  /** Settles once the last render queued has run. */
  tail: Promise<void>;
  /** Renders queued and not yet started, by variant, and the caller who queued each; reads of one join it. */
  queued: Map<string, { turn: Promise<unknown>; caller: string }>;
}

export class SharedReads {
  private readonly slots = new Map<string, Slot>();

  /**
   * `render` (timed: synchronous, or a render off the event loop, whose
   * wait counts) after `ready` (untimed: waiting for a commit in flight). Reads of `doc` asking for the same `variant` (what
   * they are sent: JSON, or the Yjs update for one state vector) join a
   * render that has not started; any render of a slow document, whatever
   * its variant, waits its turn, so varying the variant does not escape it.
   * `caller` (who asks; see limits.ts) queues a few of those renders at most.
   */
  read<T>(doc: string, variant: string, ready: () => Promise<void> | null, render: () => T | Promise<T>, caller = ''): Promise<T> {
    const slot = this.slots.get(doc);
    if (!slot) return this.run(doc, ready, render);
    const joined = slot.queued.get(variant);
    if (joined) return joined.turn as Promise<T>;
    if (slot.queued.size >= MAX_QUEUED) {
      return Promise.reject(new MeridianError('unavailable', `${MAX_QUEUED} renders of this large document wait for their turn: retry shortly`));
    }
    let mine = 0;
    for (const q of slot.queued.values()) if (q.caller === caller) mine++;
    if (mine >= MAX_QUEUED_PER_CALLER) {
      // 503 like a full queue, not 429: a live client refused its first sync reconnects on 4503 and stops on 4429.
      return Promise.reject(new MeridianError('unavailable', `this caller already waits for ${mine} renders of this large document, each for another state vector: retry once they are answered`));
    }
    const turn = slot.tail
      .then(() => delay(slot.ended + Math.min(slot.took * SPACING, MAX_WAIT_MS) - performance.now()))
      .then(() => {
        slot.queued.delete(variant);
        return this.run(doc, ready, render);
      });
    slot.queued.set(variant, { turn, caller });
    slot.tail = turn.then(() => undefined, () => undefined);
    return turn;
  }

  private async run<T>(doc: string, ready: () => Promise<void> | null, render: () => T | Promise<T>): Promise<T> {
    await ready();
    const started = performance.now();
    const rendered = render();
    if (rendered instanceof Promise && !this.slots.has(doc)) {
      // Rendered off the event loop (docs/cold-render.ts): reads arriving meanwhile wait for it, and share the next render.
      this.keep(doc, { ended: started, took: 0, tail: rendered.then(noop, noop), queued: new Map() });
    }
    try {
      return await rendered;
    } finally {
      const ended = performance.now();
      const took = ended - started;
      const slot = this.slots.get(doc);
      if (slot) {
        slot.ended = ended;
        slot.took = took;
        if (took < SLOW_MS && slot.queued.size === 0) this.slots.delete(doc);
      } else if (took >= SLOW_MS) {
        this.keep(doc, { ended, took, tail: Promise.resolve(), queued: new Map() });
      }
    }
  }

  private keep(doc: string, slot: Slot): void {
    if (this.slots.size >= MAX_SLOTS) {
      const now = performance.now();
      for (const [d, s] of this.slots) {
        if (s.queued.size === 0 && s.ended + Math.min(s.took * SPACING, MAX_WAIT_MS) < now) this.slots.delete(d);
      }
    }
    if (this.slots.size < MAX_SLOTS) this.slots.set(doc, slot);
  }
}

function noop(): void {}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => {
    if (ms > 0) setTimeout(resolve, ms);
    else resolve();
  });
}
