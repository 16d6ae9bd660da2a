/** Why a data directory could not be opened; each one needs an operator. */
export type StoreOpenFailure = 'corrupt' | 'schema_too_new' | 'not_meridian' | 'region_mismatch';

/**
 * Raised by `openStore` when the data directory must not be used as it is.
 * The message says what is wrong and what to do about it; `reason` lets the
 * command line choose an exit code without parsing the message.
 */
export class StoreOpenError extends Error {
  constructor(
    readonly reason: StoreOpenFailure,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'StoreOpenError';
  }
}
