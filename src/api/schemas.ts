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
import { docKey, isValidName, type DocKey } from '../ids.js';

/** Most documents one page of `GET /v1/docs/:collection` returns. */
export const MAX_LIST_LIMIT = 1000;
export const DEFAULT_LIST_LIMIT = 100;

export const CollectionParams = Type.Object({ collection: Type.String() });
export type CollectionParams = Static<typeof CollectionParams>;

export const DocParams = Type.Object({ collection: Type.String(), id: Type.String() });
export type DocParams = Static<typeof DocParams>;

export const ListQuery = Type.Object({
  after: Type.Optional(Type.String()),
  limit: Type.Integer({ minimum: 1, maximum: MAX_LIST_LIMIT, default: DEFAULT_LIST_LIMIT }),
});
export type ListQuery = Static<typeof ListQuery>;

export const YjsQuery = Type.Object({ sv: Type.Optional(Type.String({ maxLength: 1_000_000 })) });
export type YjsQuery = Static<typeof YjsQuery>;

/** A whole document or a merge patch: any JSON object (arrays and scalars are refused). */
export const JsonObjectBody = Type.Object({}, { additionalProperties: true });

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
