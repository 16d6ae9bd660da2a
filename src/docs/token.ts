/**
 * Version tokens: the opaque form in which clients see a version vector
 * (`meridian-version` on responses, `meridian-after` on requests).
 *
 * A token is `v1.` followed by the base64url of a JSON array of
 * `[writer, seq]` pairs, sorted by writer, with zero entries left out, so equal
 * vectors always give equal tokens. Clients must not rely on the inside.
 */
import { MeridianError } from '../errors.js';
import type { VersionVector, WriterId } from '../ids.js';

const PREFIX = 'v1.';
/** Longest token accepted; a vector of a few hundred writers still fits. */
export const MAX_TOKEN_CHARS = 16_384;
const MAX_WRITER_CHARS = 256;
const BASE64URL = /^[A-Za-z0-9_-]*$/;

/** Encodes a version vector as a deterministic token. */
export function encodeVersion(vv: VersionVector): string {
  const pairs = [...vv.entries()]
    .filter(([, seq]) => seq > 0)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return PREFIX + Buffer.from(JSON.stringify(pairs), 'utf8').toString('base64url');
}

/**
 * Decodes a token made by {@link encodeVersion}.
 * @throws MeridianError `invalid_token` when the token is malformed or too long.
 */
export function decodeVersion(token: string): VersionVector {
  if (token.length > MAX_TOKEN_CHARS) throw invalid('the version token is too long');
  if (!token.startsWith(PREFIX)) throw invalid('unknown version token format');
  const body = token.slice(PREFIX.length);
  if (!BASE64URL.test(body)) throw invalid('the version token is not base64url');
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
  } catch (err) {
    throw invalid('the version token does not decode', err);
  }
  const vv = toVector(parsed);
  // One token per vector: other spellings (whitespace, stray base64 bits) are refused.
  if (encodeVersion(vv) !== token) throw invalid('the version token is not in canonical form');
  return vv;
}

/**
 * Writers a version this region is asked to reach (`meridian-after`, a
 * change feed's position) may name that it holds nothing of, for it to wait.
 * A real one names a writer or two a region has not heard of yet (a region
 * just wiped or restored elsewhere), or every writer of a cluster when this
 * region is the one just wiped; one naming a thousand made-up writers would
 * be carried, copied and encoded again with every event of a feed, and
 * compared at every commit by each request waiting for it.
 */
export const MAX_UNHELD_WRITERS = 16;

/**
 * @throws MeridianError `lagging` (503, at once, without waiting) when `vv`
 * names more than {@link MAX_UNHELD_WRITERS} writers `held` lacks: another
 * region, or this one later, can serve it.
 */
export function refuseUnheldWriters(vv: VersionVector, held: VersionVector): void {
  const missing: Record<string, number> = {};
  let unheld = 0;
  for (const [writer, seq] of vv) {
    if (held.has(writer)) continue;
    if (++unheld > MAX_UNHELD_WRITERS) {
      throw new MeridianError('lagging', `the version names more than ${MAX_UNHELD_WRITERS} writers this region holds nothing of: ask another region, or this one once it has caught up`, { missing });
    }
    missing[writer] = seq;
  }
}

function toVector(parsed: unknown): VersionVector {
  if (!Array.isArray(parsed)) throw invalid('the version token does not hold a list');
  const vv: VersionVector = new Map();
  let previous: string | null = null;
  for (const pair of parsed as unknown[]) {
    if (!Array.isArray(pair) || pair.length !== 2) throw invalid('the version token holds a malformed entry');
    const [writer, seq] = pair as unknown[];
    if (typeof writer !== 'string' || writer.length === 0 || writer.length > MAX_WRITER_CHARS) {
      throw invalid('the version token holds a malformed writer');
    }
    if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) {
      throw invalid('the version token holds a malformed sequence number');
    }
    // Strict order keeps one token per vector and rules out duplicate writers.
    if (previous !== null && writer <= previous) throw invalid('the version token is not in canonical order');
    previous = writer;
    vv.set(writer as WriterId, seq);
  }
  return vv;
}

function invalid(message: string, cause?: unknown): MeridianError {
  return new MeridianError('invalid_token', message, undefined, cause === undefined ? undefined : { cause });
}
