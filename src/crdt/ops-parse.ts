/**
 * Shape validation of the typed operations of `POST .../ops`. Checks only
 * what can be checked without the document; `ops.ts` checks the rest against
 * the document before anything is written.
 */
import { MeridianError } from '../errors.js';
import { MAX_DEPTH, assertJson, isJsonScalar, isPlainObject, isWellFormed, keyProblem } from './json.js';
import type { Json, JsonScalar, Op, Path } from './types.js';

/** Most operations accepted in one request. */
export const MAX_OPS = 1000;

const FIELDS: Record<Op['op'], readonly string[]> = {
  set: ['value'],
  delete: [],
  increment: ['by'],
  add: ['value'],
  remove: ['value'],
  insertText: ['index', 'text'],
  deleteText: ['index', 'length'],
};

function isOpName(name: unknown): name is Op['op'] {
  return typeof name === 'string' && Object.hasOwn(FIELDS, name);
}

function fail(message: string, index?: number): never {
  throw new MeridianError('invalid_ops', index === undefined ? message : `ops[${index}]: ${message}`, index === undefined ? undefined : { index });
}

/**
 * Validates the raw JSON body of an ops request: either an array of ops or
 * an object `{ "ops": [...] }`, with 1 to {@link MAX_OPS} entries. Each op is
 * an object with `op`, a non-empty `path` of at most `MAX_DEPTH` keys
 * (refused like object keys in documents: U+0000 prefix, `__proto__`, lone
 * surrogates) and exactly the fields of its kind:
 * `set {value}`, `delete`, `increment {by: safe integer}`,
 * `add|remove {value: scalar}`, `insertText {index, text}`,
 * `deleteText {index, length}` (index and length non-negative safe
 * integers, counted in UTF-16 code units; `ops.ts` refuses an index or
 * range end inside a surrogate pair). Throws
 * `MeridianError('invalid_ops')` naming the first bad op by
 * index and what is wrong with it. Returns fresh op objects.
 */
export function parseOps(body: unknown): Op[] {
  const list = isPlainObject(body) && Object.keys(body).length === 1 && Object.hasOwn(body, 'ops') ? body.ops : body;
  if (!Array.isArray(list)) fail('the body must be an array of ops or an object {"ops": [...]}');
  if (list.length === 0) fail('at least one op is required');
  if (list.length > MAX_OPS) fail(`at most ${MAX_OPS} ops are accepted in one request`);
  return list.map((raw: unknown, i) => parseOp(raw, i));
}

function parseOp(raw: unknown, i: number): Op {
  if (!isPlainObject(raw)) fail('each op must be an object', i);
  const name = raw.op;
  if (!isOpName(name)) fail(`unknown op ${JSON.stringify(name ?? null)}; expected one of ${Object.keys(FIELDS).join(', ')}`, i);
  const allowed = new Set(['op', 'path', ...FIELDS[name]]);
  for (const key of Object.keys(raw)) {
    if (!allowed.has(key)) fail(`unexpected field "${key}" for op "${name}"`, i);
  }
  for (const key of FIELDS[name]) {
    if (!Object.hasOwn(raw, key)) fail(`op "${name}" requires "${key}"`, i);
  }
  const path = parsePath(raw.path, i);
  switch (name) {
    case 'set':
      return { op: name, path, value: parseValue(raw.value, i) };
    case 'delete':
      return { op: name, path };
    case 'increment':
      return { op: name, path, by: integer(raw.by, 'by', i, true) };
    case 'add':
    case 'remove':
      if (!isJsonScalar(raw.value)) fail(`"value" of "${name}" must be a string, finite number, boolean or null`, i);
      return { op: name, path, value: parseValue(raw.value, i) as JsonScalar };
    case 'insertText':
      if (typeof raw.text !== 'string') fail('"text" must be a string', i);
      if (!isWellFormed(raw.text)) fail('"text" contains a lone surrogate', i);
      return { op: name, path, index: integer(raw.index, 'index', i, false), text: raw.text };
    case 'deleteText':
      return { op: name, path, index: integer(raw.index, 'index', i, false), length: integer(raw.length, 'length', i, false) };
  }
}

function parsePath(raw: unknown, i: number): Path {
  if (!Array.isArray(raw)) fail('"path" must be an array of object keys', i);
  if (raw.length === 0) fail('"path" must not be empty', i);
  if (raw.length > MAX_DEPTH) fail(`"path" is longer than ${MAX_DEPTH} keys`, i);
  return raw.map((key: unknown, k) => {
    if (typeof key !== 'string') fail(`path[${k}] must be a string`, i);
    const problem = keyProblem(key);
    if (problem !== null) fail(`path[${k}]: ${problem}`, i);
    return key;
  });
}

function parseValue(raw: unknown, i: number): Json {
  try {
    assertJson(raw, 'invalid_ops', `ops[${i}]: "value"`);
  } catch (err) {
    if (err instanceof MeridianError) throw new MeridianError('invalid_ops', err.message, { index: i });
    throw err;
  }
  return structuredClone(raw);
}

function integer(raw: unknown, field: string, i: number, signed: boolean): number {
  if (typeof raw !== 'number' || !Number.isSafeInteger(raw)) fail(`"${field}" must be a safe integer`, i);
  if (!signed && raw < 0) fail(`"${field}" must not be negative`, i);
  return raw;
}
