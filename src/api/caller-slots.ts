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

  /** Whether `caller` holds its share already: `weight` more would take it past. */
  full(caller: string, weight = 1): boolean {
    return (this.held.get(caller) ?? 0) + weight > this.max;
  }

  /** What `caller` holds now. */
  heldBy(caller: string): number {
    return this.held.get(caller) ?? 0;
  }

  /**
   * Counts a connection of `caller` (or `weight` of what is shared, bytes
   * say); the returned function gives it back (once, however often it is called).
   */
  hold(caller: string, weight = 1): () => void {
    this.held.set(caller, (this.held.get(caller) ?? 0) + weight);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.held.get(caller) ?? weight) - weight;
      if (left > 0) this.held.set(caller, left);
      else this.held.delete(caller);
    };
  }
}
