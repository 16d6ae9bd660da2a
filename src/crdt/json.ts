/**
 * Plain-JSON utilities of the document model: shape checks for untrusted
 * values, canonical JSON (sorted object keys) and RFC 7396 null stripping.
 */
import { MeridianError, type ErrorCode } from '../errors.js';
import type { Json, JsonObject, JsonScalar } from './types.js';

/** Object keys starting with this character are the model's own. */
export const RESERVED_PREFIX = '\u0000';

/**
 * Deepest nesting of objects and arrays accepted from callers. Rendering,
 * diffing and marker clearing recurse, so an unbounded depth would let one
 * request overflow the stack.
 */
export const MAX_DEPTH = 64;

/** Whether an object key belongs to the model rather than the user. */
export function isReservedKey(key: string): boolean {
  return key.startsWith(RESERVED_PREFIX);
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * Whether a string survives UTF-8 encoding unchanged. Yjs encodes strings as
 * UTF-8, which turns a lone surrogate into U+FFFD, so the writing replica
 * would keep a string that every other replica sees differently.
 */
export function isWellFormed(s: string): boolean {
  return !LONE_SURROGATE.test(s);
}

/**
 * Why a user-chosen object key is refused, or null. `__proto__` is refused
 * because Yjs decodes embedded objects by assignment, which turns that key
 * into a prototype on every replica but the writer.
 */
export function keyProblem(key: string): string | null {
  if (isReservedKey(key)) return `object key ${JSON.stringify(key)} starts with the reserved character U+0000`;
  if (key === '__proto__') return 'object key "__proto__" is not accepted';
  if (!isWellFormed(key)) return `object key ${JSON.stringify(key)} contains a lone surrogate`;
  return null;
}

/** An object literal (or null-prototype object), not an array, class instance or Yjs type. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/** Narrows a JSON value to an object. */
export function isJsonObject(value: Json | undefined): value is JsonObject {
  return isPlainObject(value);
}

/** null, a boolean, a string or a finite number. */
export function isJsonScalar(value: unknown): value is JsonScalar {
  return (
    value === null ||
    typeof value === 'boolean' ||
    typeof value === 'string' ||
    (typeof value === 'number' && Number.isFinite(value))
  );
}

/**
 * Throws `MeridianError(code)` unless `value` is JSON (finite numbers, plain
 * objects, arrays, well-formed strings) of depth at most {@link MAX_DEPTH}
 * whose object keys pass {@link keyProblem}. `where` names the value in the
 * message.
 */
export function assertJson(value: unknown, code: ErrorCode, where: string): asserts value is Json {
  const problem = jsonProblem(value, 0);
  if (problem !== null) throw new MeridianError(code, `${where}: ${problem}`);
}

function jsonProblem(value: unknown, depth: number): string | null {
  if (typeof value === 'string') return isWellFormed(value) ? null : `string ${JSON.stringify(value)} contains a lone surrogate`;
  if (isJsonScalar(value)) return null;
  if (depth >= MAX_DEPTH) return `nesting deeper than ${MAX_DEPTH} levels`;
  if (Array.isArray(value)) {
    for (const item of value) {
      const p = jsonProblem(item, depth + 1);
      if (p !== null) return p;
    }
    return null;
  }
  if (isPlainObject(value)) {
    for (const [key, item] of Object.entries(value)) {
      const p = keyProblem(key) ?? jsonProblem(item, depth + 1);
      if (p !== null) return p;
    }
    return null;
  }
  if (typeof value === 'number') return 'numbers must be finite';
  return `${typeof value} is not a JSON value`;
}

/** Like {@link assertJson}, and the value must be an object. */
export function assertJsonObject(value: unknown, code: ErrorCode, where: string): asserts value is JsonObject {
  if (!isPlainObject(value)) throw new MeridianError(code, `${where}: must be a JSON object`);
  assertJson(value, code, where);
}

/** JSON text with object keys sorted (by UTF-16 code units) at every level. */
export function canonicalJson(value: Json): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (isJsonObject(value)) {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k] as Json)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * A text that identifies any value a Yjs update can carry (JSON, but also
 * BigInt, Uint8Array and undefined, which JSON.stringify refuses or drops),
 * for hashing and comparing content. Never throws on decoded values.
 */
export function valueKey(value: unknown): string {
  if (value === undefined) return 'undefined';
  try {
    // Without a replacer V8 serializes several times faster (digests call
    // this for every value of a document); only a BigInt makes it throw,
    // and where none is found the replacer below changes nothing.
    return JSON.stringify(value) ?? 'undefined';
  } catch {
    return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? `bigint:${v.toString()}` : v)) ?? 'undefined';
  }
}

/** Deep equality of JSON values, ignoring object key order. */
export function jsonEqual(a: Json, b: Json): boolean {
  return canonicalJson(a) === canonicalJson(b);
}

/**
 * Adds an own enumerable property. Plain assignment would treat a key named
 * `__proto__` (legal in JSON) as the prototype setter and lose the field.
 */
export function setOwn(target: JsonObject, key: string, value: Json): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

/** A merge-patch applied to nothing: the patch with its null members removed (RFC 7396). */
export function stripNulls(patch: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) continue;
    setOwn(out, key, isJsonObject(value) ? stripNulls(value) : value);
  }
  return out;
}
