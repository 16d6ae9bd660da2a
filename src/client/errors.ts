/**
 * The errors the client SDK throws. Each says what is known about the
 * request's effect: refused (nothing happened), stands locally (quorum not
 * reached), or unknown (it may or may not have been applied).
 */

/** One region the client tried for a request, and why it moved on. */
export interface FailedAttempt {
  region: string;
  /** `unreachable`, `timeout`, `connection lost`, `lagging`, `overloaded`, or `http <status> <code>`. */
  reason: string;
}

/** Base class of every error the client throws. */
export class MeridianClientError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MeridianClientError';
  }
}

/**
 * A region answered the request with an error that another region would give
 * too (a 4xx such as `invalid_body`, `forbidden` or `type_mismatch`), so the
 * client did not try elsewhere.
 */
export class RequestError extends MeridianClientError {
  constructor(
    readonly region: string,
    readonly status: number,
    /** The stable error code of the body (`{"error": code}`), or `http_<status>` when absent. */
    readonly code: string,
    message: string,
    /** Other fields of the error body, e.g. `field` of `invalid_body`. */
    readonly details: Record<string, unknown> = {},
  ) {
    super(`${region}: ${code}: ${message}`);
    this.name = 'RequestError';
  }
}

/**
 * A write that is not idempotent (an `increment`, a text edit) was sent, and
 * the connection was lost or timed out before an answer came. The region may
 * have applied it; retrying could apply it twice, so the client does not.
 * Read the document to find out, or accept the uncertainty.
 */
export class OutcomeUnknownError extends MeridianClientError {
  constructor(
    readonly region: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`${region}: ${reason} after the request was sent; it may or may not have been applied`, options);
    this.name = 'OutcomeUnknownError';
  }
}

/**
 * A write asked for `replicas` regions and fewer confirmed it in time. The
 * write stands at `region` and will replicate; `version` covers it and is
 * already part of the client's session.
 */
export class QuorumTimeoutError extends MeridianClientError {
  constructor(
    readonly region: string,
    readonly version: string,
    readonly replicas: number,
  ) {
    super(`${region}: the write stands locally but ${replicas} regions did not confirm it in time`);
    this.name = 'QuorumTimeoutError';
  }
}

/**
 * No region served the request: each was unreachable, failed, overloaded,
 * or had not yet applied the session's earlier writes (`lagging`). Nothing
 * is known to have been applied; a non-idempotent write that may have been
 * throws {@link OutcomeUnknownError} instead.
 */
export class UnavailableError extends MeridianClientError {
  constructor(readonly attempts: readonly FailedAttempt[]) {
    const tried = attempts.map((a) => `${a.region} (${a.reason})`).join(', ');
    super(`no region served the request; tried ${tried || 'none'}`);
    this.name = 'UnavailableError';
  }

  /** True when every region tried was reachable but behind the session. */
  get lagging(): boolean {
    return this.attempts.length > 0 && this.attempts.every((a) => a.reason === 'lagging');
  }
}
