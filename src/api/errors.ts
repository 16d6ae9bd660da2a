/**
 * The one error handler of the HTTP API. Every failure leaves as
 * `{"error": "<stable code>", "message": "..."}` with the status of the code
 * in the catalogue (src/errors.ts); 5xx errors that are not the node's
 * deliberate answers are logged and reported without internals.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ErrorBody } from '../contract.js';
import { MeridianError, type ErrorCode } from '../errors.js';

/** The JSON body of an error response (part of the wire contract). */
export type { ErrorBody } from '../contract.js';

/** Fastify's own errors, by code, and what callers see for them. */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_BODY_TOO_LARGE: 'body_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_NOT_FOUND: 'not_found',
};

/**
 * Maps any thrown value to a {@link MeridianError}. Returns `internal` (with
 * the original as cause) for anything that is not a known client error.
 */
export function toMeridianError(err: unknown): MeridianError {
  if (err instanceof MeridianError) return err;
  if (!isFastifyError(err)) return internal(err);
  if (err.validation !== undefined) return validationError(err);
  const code = err.code === undefined ? undefined : FASTIFY_CODES[err.code];
  if (code !== undefined) return new MeridianError(code, messageFor(code, err.message), undefined, { cause: err });
  const status = err.statusCode ?? 500;
  // Other 4xx errors of fastify (a bad Content-Length, a malformed URL) are the caller's.
  if (status >= 400 && status < 500) return new MeridianError('bad_request', err.message, undefined, { cause: err });
  return internal(err);
}

/** Renders the response body of an error; details (e.g. `missing`, `version`) sit beside the code. */
export function errorBody(err: MeridianError): ErrorBody {
  // Internal errors may carry paths or SQL in their message; callers get none of it.
  if (err.code === 'internal') return { error: 'internal', message: 'internal error' };
  return { ...err.details, error: err.code, message: err.message };
}

/** Installs the error and not-found handlers on the root instance. */
export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const mapped = toMeridianError(err);
    if (mapped.code === 'internal') {
      request.log.error({ err }, 'request failed');
    } else if (mapped.status >= 500) {
      request.log.info({ code: mapped.code, reason: mapped.message }, 'request not served');
    }
    if (mapped.code === 'unsupported_media_type') return replyWith(reply, unsupportedMediaType(request));
    if (mapped.code === 'unauthorized') void reply.header('www-authenticate', 'Bearer');
    // Both are refused before anything is done: worth trying again in a moment (`unavailable`: here or elsewhere).
    if (mapped.code === 'too_many_requests' || mapped.code === 'unavailable') {
      void reply.header('retry-after', String(Math.max(1, Math.ceil(mapped.retryAfterSeconds ?? 1))));
    }
    return replyWith(reply, mapped);
  });
  app.setNotFoundHandler((request, reply) => {
    const err = new MeridianError('not_found', `no route ${request.method} ${request.url.split('?')[0] ?? ''}`);
    return reply.code(err.status).send(errorBody(err));
  });
}

function replyWith(reply: FastifyReply, err: MeridianError): FastifyReply {
  return reply.code(err.status).type('application/json; charset=utf-8').send(errorBody(err));
}

/** Body types a route parses when it declares none (fastify's JSON parser). */
const DEFAULT_ACCEPTED: readonly string[] = ['application/json'];

/**
 * `unsupported_media_type` naming what was sent and what the route accepts:
 * the `consumes` of its schema, which the OpenAPI document shows too.
 */
export function unsupportedMediaType(request: FastifyRequest): MeridianError {
  const accepted = [...(request.routeOptions.schema?.consumes ?? DEFAULT_ACCEPTED)];
  const sent = request.headers['content-type'];
  const what = sent === undefined ? 'a body without a content type' : `content type '${sent.split(';')[0]?.trim() ?? ''}'`;
  return new MeridianError('unsupported_media_type', `${what} is not accepted here; send ${accepted.join(' or ')}`, { accepted });
}

function validationError(err: FastifyError): MeridianError {
  const first = err.validation?.[0];
  const context = err.validationContext ?? 'body';
  const missing = first?.params['missingProperty'];
  const extra = first?.params['additionalProperty'];
  const named = typeof missing === 'string' ? missing : typeof extra === 'string' ? extra : null;
  const field = `${context}${first?.instancePath ?? ''}${named === null ? '' : `/${named}`}`;
  let problem = first?.message ?? 'is invalid';
  if (typeof missing === 'string') problem = 'is required';
  else if (typeof extra === 'string') problem = 'is not allowed';
  // Everything in a URL's query is the query's mistake; the rest (body, headers) is the body's.
  const code = context === 'querystring' ? 'invalid_query' : 'invalid_body';
  return new MeridianError(code, `${field} ${problem}`, { field }, { cause: err });
}

function messageFor(code: ErrorCode, fallback: string): string {
  switch (code) {
    case 'invalid_json':
      return 'the request body is not valid JSON';
    case 'body_too_large':
      return 'the request body is too large';
    default:
      return fallback;
  }
}

function internal(cause: unknown): MeridianError {
  return new MeridianError('internal', 'internal error', undefined, { cause });
}

function isFastifyError(err: unknown): err is FastifyError {
  return err instanceof Error && ('code' in err || 'statusCode' in err || 'validation' in err);
}
