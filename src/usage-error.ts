/**
 * A mistake on the command line (a bad option value, a missing folder): the
 * CLI prints its message on one line, without a stack, and exits 2. Checked
 * before anything starts, so a refused command leaves nothing behind.
 */
export class UsageError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UsageError';
  }
}

/** A TCP port number, `0` (any free port) only when `allowAny`. */
export function parsePort(text: string, option: string, allowAny = false): number {
  const port = /^\d{1,5}$/.test(text.trim()) ? Number(text) : NaN;
  const low = allowAny ? 0 : 1;
  if (!(port >= low && port <= 65535)) {
    throw new UsageError(`${option} must be a port number from ${low} to 65535, not '${text}'`);
  }
  return port;
}

/** A first port for `count` consecutive ports after it (`base + 1` .. `base + count`). */
export function parsePortBase(text: string, option: string, count: number): number {
  const base = parsePort(text, option);
  if (base + count > 65535) throw new UsageError(`${option} ${base} leaves no room for ${count} ports after it (up to 65535)`);
  return base;
}

/** Runs `fn`, turning any error it throws into a {@link UsageError} with `what` in front. */
export function asUsage<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}
