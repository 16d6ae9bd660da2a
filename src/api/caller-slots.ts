/**
 * Places for long-lived connections (live clients, change feeds), counted
 * per caller: the region's own bound (`limits.liveConnections`,
 * `limits.maxFeedSubscribers`) is shared by everyone, so without a share
 * per caller one token could hold every place and lock the others out, as
 * `maxConcurrentPerCaller` prevents for requests.
 */
export class CallerSlots {
  private readonly held = new Map<string, number>();

  constructor(readonly max: number) {}

  /** Whether `caller` holds its share already. */
  full(caller: string): boolean {
    return (this.held.get(caller) ?? 0) >= this.max;
  }

  /** Counts a connection of `caller`; the returned function gives its place back (once, however often it is called). */
  hold(caller: string): () => void {
    this.held.set(caller, (this.held.get(caller) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.held.get(caller) ?? 1) - 1;
      if (left > 0) this.held.set(caller, left);
      else this.held.delete(caller);
    };
  }
}
