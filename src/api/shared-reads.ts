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
 * it asked. The next render starts at the earliest {@link SPACING} times the
 * last one's time after it ended. A document that renders fast is rendered
 * for each read, as before.
 */

/** Renders shorter than this, ms, are not shared. */
const SLOW_MS = 2;
/** A slow render waits this many times the last one's time after it... */
const SPACING = 10;
/** ... but never longer than this, ms. */
const MAX_WAIT_MS = 500;
/** Slots kept for documents whose last render was slow; beyond, the idle ones are dropped. */
const MAX_SLOTS = 256;

interface Slot {
  /** The render readers arriving now join; null once it has started. */
  next: Promise<unknown> | null;
  ended: number;
  took: number;
}

export class SharedReads {
  private readonly slots = new Map<string, Slot>();

  /**
   * `render` (timed, synchronous) after `ready` (untimed: waiting for a
   * commit in flight), shared with the other reads of `key` that join it.
   */
  read<T>(key: string, ready: () => Promise<void> | null, render: () => T): Promise<T> {
    const slot = this.slots.get(key);
    if (!slot) return this.run(key, ready, render);
    slot.next ??= delay(slot.ended + Math.min(slot.took * SPACING, MAX_WAIT_MS) - performance.now()).then(() => {
      slot.next = null;
      return this.run(key, ready, render);
    });
    return slot.next as Promise<T>;
  }

  private async run<T>(key: string, ready: () => Promise<void> | null, render: () => T): Promise<T> {
    await ready();
    const started = performance.now();
    try {
      return render();
    } finally {
      const ended = performance.now();
      const took = ended - started;
      const slot = this.slots.get(key);
      if (took < SLOW_MS) {
        if (slot && !slot.next) this.slots.delete(key);
      } else if (slot) {
        slot.ended = ended;
        slot.took = took;
      } else {
        this.keep(key, { next: null, ended, took });
      }
    }
  }

  private keep(key: string, slot: Slot): void {
    if (this.slots.size >= MAX_SLOTS) {
      const now = performance.now();
      for (const [k, s] of this.slots) {
        if (!s.next && s.ended + Math.min(s.took * SPACING, MAX_WAIT_MS) < now) this.slots.delete(k);
      }
    }
    if (this.slots.size < MAX_SLOTS) this.slots.set(key, slot);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => {
    if (ms > 0) setTimeout(resolve, ms);
    else resolve();
  });
}
