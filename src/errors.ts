/**
 * One catalogue of the errors a caller can see: a stable code and an HTTP
 * status each, kept in the wire contract (src/contract.ts) so that clients
 * read the same table. 4xx codes are the caller's mistakes; 5xx are the node's own.
 */
import { ERRORS, type ErrorCode } from './contract.js';

export { ERRORS, type ErrorCode };

export class MeridianError extends Error {
  readonly status: number;
  /** For 429 and 503: when trying again makes sense, in whole seconds (the `retry-after` header); 1 when unset. */
  readonly retryAfterSeconds: number | undefined;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
    options?: { cause?: unknown; retryAfterSeconds?: number },
  ) {
    super(message, options);
    this.name = 'MeridianError';
    this.status = ERRORS[code];
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }
}
