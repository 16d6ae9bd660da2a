/**
 * When the client stops waiting for the session's own writes. A session is
 * stuck when its latest writes were made at a region that died before they
 * replicated: every other region answers `lagging` until that region comes
 * back. With `staleAfterMs` set, once the session has been stuck that long,
 * its tokens are set aside and calls go on without them, each result saying
 * what it may lack; as soon as a region shows it has applied the tokens set
 * aside, they rejoin the session and results are whole again.
 */

/** What results served without the session's earlier writes may lack. */
export interface Staleness {
  /** When the client stopped waiting for them (ms since the epoch). */
  readonly since: number;
  /** The session tokens set aside, whose writes the serving region may lack. */
  readonly behind: readonly string[];
  /**
   * Updates the serving region lacks, per writer id, as it reported them
   * (`missing` of its `lagging` answer); empty when it did not say.
   */
  readonly missing: Readonly<Record<string, number>>;
}

/** Tracks whether the session is stuck, and the tokens set aside when it gave up waiting. */
export class StalePolicy {
  private stuckSince: number | null = null;
  private current: Staleness | null = null;

  /**
   * @param afterMs how long the session may stay stuck before calls go on
   *   without its writes; undefined waits for ever (calls keep failing)
   * @param onChange told when calls start being served stale, and (null) when they are whole again
   */
  constructor(
    private readonly afterMs: number | undefined,
    private readonly onChange: (staleness: Staleness | null) => void,
  ) {}

  /** The tokens set aside, or null while calls carry the whole session. */
  get state(): Staleness | null {
    return this.current;
  }

  /** A call was served with the whole session: it is not stuck. */
  served(): void {
    this.stuckSince = null;
  }

  /**
   * Every region failed a call and some lacked the session's writes. True
   * once that has been so for `afterMs`: the caller sets the session aside.
   */
  stuck(now: number): boolean {
    if (this.afterMs === undefined) return false;
    this.stuckSince ??= now;
    return now - this.stuckSince >= this.afterMs;
  }

  /** Calls go on without `tokens` (added to any set aside before). */
  setAside(tokens: readonly string[], now: number): void {
    this.current = { since: this.current?.since ?? now, behind: [...(this.current?.behind ?? []), ...tokens], missing: {} };
    this.stuckSince = null;
    this.onChange(this.current);
  }

  /** A region has applied every token set aside: returns them for the session to take back. */
  caughtUp(): readonly string[] {
    return this.clear();
  }

  /** Forgets the tokens set aside (and returns them); calls are whole again. */
  clear(): readonly string[] {
    const behind = this.current?.behind ?? [];
    this.stuckSince = null;
    if (this.current !== null) {
      this.current = null;
      this.onChange(null);
    }
    return behind;
  }
}
