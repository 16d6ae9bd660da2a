/**
 * Request shapes of the HTTP API, as JSON schemas (TypeBox), and the
 * validator compiler that checks them: bodies strictly (no type coercion,
 * unknown fields refused where the shape is closed), query strings with
 * string-to-number coercion since everything in a URL is a string.
 */
import { Type, type Static } from '@sinclair/typebox';
import { Ajv, type AnySchema } from 'ajv';
import type { FastifySchemaCompiler } from 'fastify';
import { MeridianError } from '../errors.js';
import { parseOps } from '../crdt/index.js';
import type { Op } from '../crdt/types.js';
import { docKey, isValidName, type DocKey } from '../ids.js';

/** Most documents one page of `GET /v1/docs/:collection` returns. */
export const MAX_LIST_LIMIT = 1000;
export const DEFAULT_LIST_LIMIT = 100;

export const CollectionParams = Type.Object({ collection: Type.String() });
export type CollectionParams = Static<typeof CollectionParams>;

export const DocParams = Type.Object({ collection: Type.String(), id: Type.String() });
export type DocParams = Static<typeof DocParams>;

export const ListQuery = Type.Object({
  after: Type.Optional(Type.String({ description: 'the last id of the previous page' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_LIST_LIMIT, default: DEFAULT_LIST_LIMIT })),
});
export type ListQuery = Static<typeof ListQuery>;

export const YjsQuery = Type.Object({
  sv: Type.Optional(Type.String({ maxLength: 1_000_000, description: 'a Yjs state vector (base64 or base64url): answer only what it lacks' })),
});
export type YjsQuery = Static<typeof YjsQuery>;

/** A whole document: any JSON object (arrays and scalars are refused). */
export const JsonObjectBody = Type.Object({}, {
  additionalProperties: true, description: 'the whole document', examples: [{ title: 'Q3 plan', views: 0, tags: ['draft'] }],
});

/** A JSON merge patch (RFC 7396): `null` removes a field, objects merge recursively. */
export const MergePatchBody = Type.Object({}, {
  additionalProperties: true, description: 'a JSON merge patch (RFC 7396)', examples: [{ title: 'Q3 plan (final)', draft: null }],
});

/** The body types of a JSON route, for its schema's `consumes` (and the 415 that lists them). */
export const JSON_BODY = ['application/json'] as const;

/**
 * A validator compiler that parses `POST .../ops` bodies with the CRDT
 * model's own parser: it checks the same TypeBox schema the route shows
 * (`OpsBody`), names the first bad op by index (`invalid_ops`) and hands the
 * route fresh, checked ops. Other parts go to `base`.
 */
export function withOpsBody(base: FastifySchemaCompiler<AnySchema>): FastifySchemaCompiler<AnySchema> {
  return (route) => (route.httpPart === 'body' ? parseOpsBody : base(route));
}

function parseOpsBody(data: unknown): { value: Op[] } | { error: MeridianError } {
  try {
    return { value: parseOps(data) };
  } catch (err) {
    if (err instanceof MeridianError) return { error: err };
    throw err;
  }
}

/** The document key of a request, once both names are checked. */
export function docOf(params: DocParams): DocKey {
  return docKey(checkName(params.collection, 'collection'), checkName(params.id, 'id'));
}

/** Returns the name if it is 1-128 characters of `[A-Za-z0-9._~-]`; throws `invalid_name` otherwise. */
export function checkName(name: string, what: string): string {
  if (!isValidName(name)) {
    throw new MeridianError('invalid_name', `${what} must be 1-128 characters of A-Z, a-z, 0-9, '.', '_', '~' and '-'`);
  }
  return name;
}

/**
 * Validator compiler with two Ajv instances: strict for bodies, coercing for
 * the URL and headers. Fastify's single default instance coerces bodies too,
 * which would accept `"3"` where a number is required.
 */
export function validatorCompiler(): FastifySchemaCompiler<AnySchema> {
  const common = { allErrors: false, removeAdditional: false, useDefaults: true, strict: true } as const;
  const bodies = new Ajv({ ...common, coerceTypes: false });
  const urls = new Ajv({ ...common, coerceTypes: true });
  return ({ schema, httpPart }) => (httpPart === 'body' ? bodies : urls).compile(schema);
}
