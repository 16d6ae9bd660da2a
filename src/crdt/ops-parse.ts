/**
 * Shape validation of the typed operations of `POST .../ops`. The shapes are
 * one JSON schema per op kind ({@link OP_SHAPES}); the same schema validates
 * requests here and describes them in the OpenAPI document. What a schema
 * cannot say (reserved or unsafe object keys, lone surrogates, JSON depth)
 * is checked after it. `ops.ts` checks the rest against the document before
 * anything is written.
 */
import { Type, type TSchema } from '@sinclair/typebox';
import { Ajv, type ErrorObject } from 'ajv';
import { MeridianError } from '../errors.js';
import { MAX_DEPTH, assertJson, isPlainObject, isWellFormed, keyProblem } from './json.js';
import type { Json, JsonScalar, Op, Path } from './types.js';

/** Most operations accepted in one request. */
export const MAX_OPS = 1000;

const OpPath = Type.Array(Type.String(), {
  minItems: 1, maxItems: MAX_DEPTH, description: `object keys from the document root, 1 to ${MAX_DEPTH}`, examples: [['profile', 'name']],
});
const SafeInteger = Type.Integer({ minimum: -Number.MAX_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER });
const TextPosition = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'in UTF-16 code units' });
const Scalar = Type.Unsafe<JsonScalar>({ type: ['string', 'number', 'boolean', 'null'] });

/** The fields of each op kind besides `op` and `path`: one row per kind. */
const OP_FIELDS = {
  set: { value: Type.Unknown({ description: 'any JSON value' }) },
  delete: {},
  increment: { by: SafeInteger },
  add: { value: Scalar },
  remove: { value: Scalar },
  insertText: { index: TextPosition, text: Type.String() },
  deleteText: { index: TextPosition, length: TextPosition },
} satisfies Record<Op['op'], Record<string, TSchema>>;

type OpName = keyof typeof OP_FIELDS;

/** One closed object schema per op kind. */
export const OP_SHAPES = Object.fromEntries(
  Object.entries(OP_FIELDS).map(([op, fields]) => [
    op,
    Type.Object({ op: Type.Literal(op), path: OpPath, ...fields }, { additionalProperties: false, title: op }),
  ]),
) as unknown as Record<OpName, TSchema>;

/** One operation, told apart by `op`. */
export const OpSchema = Type.Unsafe<Op>({
  type: 'object',
  discriminator: { propertyName: 'op' },
  oneOf: Object.values(OP_SHAPES),
});

/** The list of operations of one request. */
export const OpList = Type.Array(OpSchema, { minItems: 1, maxItems: MAX_OPS });

/** The body of `POST .../ops`: the list, bare or as `{"ops": [...]}`. */
export const OpsBody = Type.Union([OpList, Type.Object({ ops: OpList }, { additionalProperties: false })], {
  examples: [{ ops: [{ op: 'set', path: ['title'], value: 'Q3 plan' }, { op: 'increment', path: ['views'], by: 1 }] }],
});

const checkShape = new Ajv({ discriminator: true, allowUnionTypes: true, ownProperties: true, allErrors: false, strict: true }).compile(OpList);

function fail(message: string, index?: number): never {
  throw new MeridianError('invalid_ops', index === undefined ? message : `ops[${index}]: ${message}`, index === undefined ? undefined : { index });
}

/**
 * Validates the raw JSON body of an ops request: either an array of ops or
 * an object `{ "ops": [...] }`, with 1 to {@link MAX_OPS} entries, each of
 * the shape {@link OP_SHAPES} gives its kind; path keys are refused like
 * object keys in documents (U+0000 prefix, `__proto__`, lone surrogates),
 * and so are lone surrogates in text. Text positions count UTF-16 code
 * units (`ops.ts` refuses one inside a surrogate pair). Throws
 * `MeridianError('invalid_ops')` naming the first bad op by index and what
 * is wrong with it. Returns fresh op objects.
 */
export function parseOps(body: unknown): Op[] {
  const list = isPlainObject(body) && Object.keys(body).length === 1 && Object.hasOwn(body, 'ops') ? body.ops : body;
  if (!checkShape(list)) describeFailure(checkShape.errors?.[0], list);
  return (list as Op[]).map((op, i) => checked(op, i));
}

/** The checks a schema cannot express, and a fresh copy of the op. */
function checked(op: Op, i: number): Op {
  if (!isPlainObject(op)) fail('each op must be an object', i);
  const path: Path = op.path.map((key, k) => {
    const problem = keyProblem(key);
    if (problem !== null) fail(`path[${k}]: ${problem}`, i);
    return key;
  });
  switch (op.op) {
    case 'set':
      return { ...op, path, value: jsonValue(op.value, i) };
    case 'add':
    case 'remove':
      return { ...op, path, value: jsonValue(op.value, i) as JsonScalar };
    case 'insertText':
      if (!isWellFormed(op.text)) fail('"text" contains a lone surrogate', i);
      return { ...op, path };
    default:
      return { ...op, path };
  }
}

function jsonValue(raw: unknown, i: number): Json {
  try {
    assertJson(raw, 'invalid_ops', `ops[${i}]: "value"`);
  } catch (err) {
    if (err instanceof MeridianError) throw new MeridianError('invalid_ops', err.message, { index: i });
    throw err;
  }
  return structuredClone(raw);
}

/** Turns the first schema error into a message that names the op and the field. */
function describeFailure(error: ErrorObject | undefined, list: unknown): never {
  const [at, field, key] = (error?.instancePath ?? '').split('/').slice(1);
  if (error === undefined || at === undefined) {
    if (error?.keyword === 'minItems') fail('at least one op is required');
    if (error?.keyword === 'maxItems') fail(`at most ${MAX_OPS} ops are accepted in one request`);
    fail('the body must be an array of ops or an object {"ops": [...]}');
  }
  const i = Number(at);
  const raw = (list as unknown[])[i];
  const name = isPlainObject(raw) ? raw['op'] : undefined;
  if (field === undefined) fail(opProblem(error, name), i);
  if (field === 'path') fail(pathProblem(error, key), i);
  if (field === 'value') fail(`"value" of "${String(name)}" must be a string, finite number, boolean or null`, i);
  if (field === 'text') fail('"text" must be a string', i);
  if (error.keyword === 'minimum' && error.params['limit'] === 0) fail(`"${field}" must not be negative`, i);
  fail(`"${field}" must be a safe integer`, i);
}

function opProblem(error: ErrorObject, name: unknown): string {
  switch (error.keyword) {
    case 'discriminator':
      return `unknown op ${JSON.stringify(name ?? null)}; expected one of ${Object.keys(OP_FIELDS).join(', ')}`;
    case 'required':
      return `op "${String(name)}" requires "${String(error.params['missingProperty'])}"`;
    case 'additionalProperties':
      return `unexpected field "${String(error.params['additionalProperty'])}" for op "${String(name)}"`;
    default:
      return 'each op must be an object';
  }
}

function pathProblem(error: ErrorObject, key: string | undefined): string {
  if (key !== undefined) return `path[${key}] must be a string`;
  if (error.keyword === 'minItems') return '"path" must not be empty';
  if (error.keyword === 'maxItems') return `"path" is longer than ${MAX_DEPTH} keys`;
  return '"path" must be an array of object keys';
}
