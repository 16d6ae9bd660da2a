/**
 * The OpenAPI 3.1 document of the HTTP API, generated from the route schemas
 * by @fastify/swagger and served at `GET /v1/openapi.json`.
 *
 * Routes declare their own shapes, summary, tags and the error codes only
 * they answer ({@link errorResponses}). What hooks add to every route is
 * added here by the same rules the hooks apply ({@link documentRoute}):
 * access control (bearer tokens on `/v1/...`), the session headers, and the
 * errors of names, query strings, bodies, load shedding and waits.
 *
 * The document is public, like `/healthz`: it describes shapes only, and
 * every region serves the same one. The peer replication routes are not in
 * it ({@link isPeerRoute}): only other regions, holding the cluster secret,
 * may use them; README "Replication" describes that protocol.
 */
import swagger from '@fastify/swagger';
import type { FastifyInstance, FastifySchema } from 'fastify';
import { AFTER_HEADER, ERRORS, REPLICAS_HEADER, WAIT_HEADER, type ErrorCode } from '../contract.js';

/** Where the document is served. */
export const OPENAPI_ROUTE = '/v1/openapi.json';

/** What each error code means, for the document; every code needs one. */
const MEANING: Record<ErrorCode, string> = {
  bad_request: 'a malformed URL or header',
  invalid_json: 'the body is not valid JSON',
  invalid_name: 'a collection or id is not 1-128 characters of [A-Za-z0-9._~-]',
  invalid_body: 'the body does not have the required shape (`field` names the part)',
  invalid_query: 'a query-string parameter is invalid (`field` names it)',
  invalid_ops: 'an operation is malformed (`index` names it)',
  invalid_update: 'not a valid Yjs update, or it depends on changes this region does not hold',
  invalid_token: 'the `meridian-after` version token is malformed',
  invalid_command: 'the simulator command is not valid',
  unauthorized: 'a valid bearer token is required',
  forbidden: "the token's scope or collections do not allow this",
  not_found: 'no such document or route',
  request_timeout: 'the body did not arrive in time',
  type_mismatch: 'an operation does not fit the document (e.g. increment on a string)',
  client_id_conflict: "the update writes under a region's Yjs client id or rewrites held content",
  quota_exceeded: "the token's document quota is reached",
  body_too_large: 'the body, or the Yjs update the write would make, is too large',
  too_complex: 'the write holds more JSON nodes than `limits.maxWriteNodes`, or would leave the document with more Yjs structs than `limits.maxDocumentStructs`',
  unsupported_media_type: 'the content type is missing or not accepted here (`accepted` lists the types)',
  too_many_requests: 'too many requests in flight or per second; retry after `retry-after`',
  too_many_connections: 'this region is at its bound of live connections; try another region or later',
  document_replaced: "a peer region's state replaced the document (content conflict); live clients open it again with a new Y.Doc",
  internal: 'a fault of the node (logged; the message is generic)',
  lagging: 'this region has not yet applied `meridian-after` within the wait (`missing` counts per writer)',
  unavailable: 'the region is starting, shutting down or at a limit, or its storage refused the write (not stored); retry after `retry-after`, here or at another region',
  quorum_timeout: 'fewer than `meridian-replicas` regions confirmed in time; the write stands locally (`version`)',
};

/** The error codes of a JSON error response schema built by {@link errorResponses}. */
type ErrorResponse = { properties: { error: { enum: ErrorCode[] }; message: { type: 'string' } } } & Record<string, unknown>;

/**
 * Response schemas for the given error codes, one per HTTP status: the body
 * is the error shape with `error` limited to those codes.
 */
export function errorResponses(...codes: ErrorCode[]): Record<number, ErrorResponse> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of new Set(codes)) byStatus.set(ERRORS[code], [...(byStatus.get(ERRORS[code]) ?? []), code]);
  return Object.fromEntries([...byStatus].map(([status, list]) => [status, errorResponse(list)]));
}

function errorResponse(codes: ErrorCode[]): ErrorResponse {
  const sorted = [...codes].sort();
  const first = sorted[0] ?? 'internal';
  return {
    description: sorted.map((c) => `\`${c}\`: ${MEANING[c]}`).join('; '),
    type: 'object',
    required: ['error', 'message'],
    properties: { error: { enum: sorted }, message: { type: 'string' } },
    additionalProperties: true,
    examples: [{ error: first, message: MEANING[first] }],
  };
}

/** The routes of the peer link (challenge and WebSocket upgrade), left out of the document. */
export function isPeerRoute(url: string): boolean {
  return url === '/v1/replicate' || url.startsWith('/v1/replicate/');
}

const SESSION_HEADERS = {
  [AFTER_HEADER]: { type: 'string', description: 'serve only once this region has applied this version token' },
  [WAIT_HEADER]: { type: 'string', pattern: '^[0-9]{1,10}$', description: 'how long (ms) to wait for `meridian-after` or `meridian-replicas`' },
};
const REPLICAS = {
  [REPLICAS_HEADER]: { type: 'string', pattern: '^[0-9]{1,4}$', description: 'acknowledge once this many regions (this one included) hold the write' },
};

/** The codes the API's hooks may answer on a route, by the rules they apply. */
function hookErrors(url: string, method: string, schema: FastifySchema): ErrorCode[] {
  const codes: ErrorCode[] = ['bad_request', 'internal'];
  const api = url.startsWith('/v1/') && url !== OPENAPI_ROUTE;
  if (api) codes.push('unauthorized', 'forbidden', 'too_many_requests', 'invalid_token', 'lagging', 'unavailable');
  if (/:(collection|id)\b/.test(url)) codes.push('invalid_name');
  if (schema.querystring !== undefined) codes.push('invalid_query');
  if (schema.body !== undefined || (method !== 'GET' && method !== 'DELETE')) {
    codes.push('invalid_json', 'invalid_body', 'body_too_large', 'unsupported_media_type', 'request_timeout', 'too_many_requests');
  }
  if (isDocWrite(url, method)) codes.push('quota_exceeded', 'quorum_timeout');
  return codes;
}

function isDocWrite(url: string, method: string): boolean {
  return url.startsWith('/v1/docs/') && ['PUT', 'PATCH', 'POST', 'DELETE'].includes(method);
}

/** Adds to a route's schema, for the document only, what the hooks add to the route. */
export function documentRoute(url: string, method: string, schema: FastifySchema | undefined, websocket = false): FastifySchema {
  const own = schema ?? {};
  const response: Record<string, unknown> = { ...(own.response as Record<string, unknown> | undefined) };
  if (websocket) response['101'] ??= { description: 'Switching Protocols: the connection is now a WebSocket', type: 'null' };
  for (const [status, added] of Object.entries(errorResponses(...hookErrors(url, method, own)))) {
    const declared = response[status] as ErrorResponse | undefined;
    const codes = declared?.properties?.error?.enum ?? [];
    response[status] = errorResponse([...new Set([...codes, ...added.properties.error.enum])]);
  }
  const api = url.startsWith('/v1/') && url !== OPENAPI_ROUTE;
  const headers = api ? { ...SESSION_HEADERS, ...(isDocWrite(url, method) ? REPLICAS : {}) } : undefined;
  return {
    ...own,
    response,
    ...(headers ? { headers: { type: 'object', properties: headers } } : {}),
    security: api ? [{ bearer: [] }] : [],
    // @fastify/websocket hides every WebSocket route; of those, only the peers' stay out.
    hide: isPeerRoute(url) || (own.hide === true && !websocket),
  };
}

/**
 * Registers the generator on the root instance (before any route, so that it
 * sees them all) and `GET /v1/openapi.json`, which serves the document.
 */
export function installOpenApi(app: FastifyInstance): void {
  void app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Meridian',
        // The version of the HTTP API (the `/v1` of its routes), not of the package.
        version: '1',
        description: 'Multi-region active-active document store. Every region serves this API; errors are `{"error": code, "message"}`.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'needed on /v1 routes when tokens are configured' } } },
    },
    transform: ({ schema, url, route }) => {
      const methods = Array.isArray(route.method) ? route.method : [route.method];
      return { url, schema: documentRoute(url, methods[0] ?? 'GET', schema, route.websocket === true) };
    },
  });
  void app.register(async (scope) => {
    let document: string | null = null;
    scope.get(OPENAPI_ROUTE, {
      schema: {
        summary: 'This OpenAPI 3.1 document',
        tags: ['meta'],
        response: { 200: { description: 'the OpenAPI document of this API', type: 'object', additionalProperties: true } },
      },
    }, async (_request, reply) => {
      // Routes do not change once the app is ready: generate once.
      document ??= JSON.stringify(app.swagger());
      return reply.type('application/json; charset=utf-8').send(document);
    });
  });
}
