/**
 * Shares a region's event loop between its clients and background work
 * while clients write: catch-up (the log streamed to a peer that is behind,
 * frames decoded, peer entries applied) and the digests of changed
 * documents (thousands after a catch-up). Background work reports the time
 * it took; once it has used more than its share of the wall-clock time, its
 * next turn waits. With no client writing, it runs flat out.
 *
 * One pacer per region, shared by the write path, the digests and every
 * link: a region that catches up with two peers while sending a third its
 * backlog must not take three shares.
 */

/** A client wrote within this long: its region is serving clients, ms. */
const CLIENTS_ACTIVE_MS = 1000;
/** Share of the event loop background work may take while clients write. */
const DEFAULT_SHARE = 0.2;
/** Background time that may be used at once before pacing starts, ms. */
const BURST_MS = 5;
/** Longest single wait: background work never stops, ms. */
const MAX_WAIT_MS = 50;

export class BackgroundPacer {
  private clientAt = -Infinity;
  /** Background time left to use now, ms; negative when overdrawn. */
  private budget = BURST_MS;
  private refilledAt = performance.now();

  constructor(private readonly share = DEFAULT_SHARE) {}

  /** A client's write arrived. */
  clientWrote(): void {
    this.clientAt = performance.now();
  }

  /** Did a client write lately? */
  clientsActive(): boolean {
    return performance.now() - this.clientAt < CLIENTS_ACTIVE_MS;
  }

  /**
   * Background work took `ms` of this thread. A debt beyond one longest wait
   * is forgiven: work that waited that long goes on anyway, and work that
   * only asks whether it may (a backlog of peer entries beside client
   * writes) would otherwise wait for as long as other work keeps spending:
   * seconds, while its link stops being read and is taken for dead.
   */
  spent(ms: number): void {
    this.refill();
    if (this.clientsActive()) this.budget = Math.max(this.budget - ms, -MAX_WAIT_MS * this.share);
  }

  /** How long background work waits before its next turn, ms (0: go on now). */
  wait(): number {
    this.refill();
    if (this.budget >= 0 || !this.clientsActive()) return 0;
    return Math.min(MAX_WAIT_MS, -this.budget / this.share);
  }

  private refill(): void {
    const now = performance.now();
    this.budget = Math.min(BURST_MS, this.budget + (now - this.refilledAt) * this.share);
    this.refilledAt = now;
  }
}
