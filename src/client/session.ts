/**
 * The client's session version: the token every request carries as
 * `meridian-after`, so that whichever region serves it has applied the
 * session's own earlier writes (read-your-writes across failover).
 *
 * Tokens are opaque, so the client cannot merge or compare two of them. It
 * relies instead on what the server promises: a region serves a request only
 * once it has applied the request's `meridian-after`, and the token it
 * answers with covers everything it had applied. So the answer to a request
 * sent with the current token covers the current token and may replace it.
 *
 * Concurrent requests break that chain: an answer to a request sent with an
 * older token need not cover the current one. Such an answer is dropped if
 * it came from a read; if it came from a write, it is the only token known to
 * cover that write and is kept as pending. The next request lists the
 * pending tokens beside the current one in its `meridian-after` (a region
 * waits for all of them), so the region's answer covers them all.
 */

/** What one request to one region was sent with. */
export interface SessionTicket {
  /** The `meridian-after` token, or null before the session has seen any. */
  readonly after: string | null;
  /** Tokens the region must be shown to have applied before the request is sent. */
  readonly pending: readonly string[];
  readonly generation: number;
}

export class SessionVersion {
  private token: string | null;
  /** Bumped each time {@link token} is replaced. */
  private generation = 0;
  private pending: string[] = [];

  /** @param initial a token from an earlier session to continue, e.g. from another process. */
  constructor(initial: string | null = null) {
    this.token = initial;
  }

  /** The token the next request carries; null before any. */
  get current(): string | null {
    return this.token;
  }

  /** Tokens of own writes that the current token is not known to cover. */
  get unmerged(): readonly string[] {
    return this.pending;
  }

  /** Starts one attempt at one region. */
  begin(): SessionTicket {
    return { after: this.token, pending: [...this.pending], generation: this.generation };
  }

  /**
   * Records the token a region answered an attempt with (the write's
   * `version`, or a read's `meridian-version`). `ownWrite` is true for the
   * answer to one of this session's writes, which must not be lost.
   */
  observe(ticket: SessionTicket, version: string, ownWrite: boolean): void {
    if (ticket.generation === this.generation) {
      // Sent with the current token and after the ticket's pending ones were applied there: covers all of them.
      this.token = version;
      this.generation += 1;
      this.pending = this.pending.filter((p) => !ticket.pending.includes(p));
      return;
    }
    if (ownWrite && version !== this.token && !this.pending.includes(version)) this.pending.push(version);
  }

  /**
   * Drops the token and the pending tokens, and returns them (the token
   * first): later requests carry none of them, so no region waits for them.
   */
  setAside(): string[] {
    const dropped = [...(this.token === null ? [] : [this.token]), ...this.pending];
    this.token = null;
    this.pending = [];
    this.generation += 1;
    return dropped;
  }

  /**
   * Forgets `token`, which a region refused as malformed (400
   * `invalid_token`: a region or something between sent it, or it is of a
   * format this region does not read): kept, it would have every later
   * request refused, at every region, for good.
   */
  drop(token: string): void {
    if (token === this.token) {
      this.token = null;
      this.generation += 1;
    }
    this.pending = this.pending.filter((p) => p !== token);
  }

  /**
   * Takes back tokens set aside once a region is known to have applied them:
   * they become pending, so the next request covers them again.
   */
  restore(tokens: readonly string[]): void {
    for (const t of tokens) if (t !== this.token && !this.pending.includes(t)) this.pending.push(t);
  }
}
