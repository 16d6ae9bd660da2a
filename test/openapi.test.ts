/**
 * The OpenAPI document (`GET /v1/openapi.json`) of a region's app composed as
 * the region composes it: every route the app registers is in it (the peer
 * link routes are left out on purpose), it has the shape of OpenAPI 3.1,
 * every `$ref` resolves, every example validates against its schema, and
 * real answers validate against the schemas documented for them.
 */
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { ValidateFunction } from 'ajv';
import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { isPeerRoute, OPENAPI_ROUTE } from '../src/api/openapi.js';
import { buildRecordedApp, type RecordedApp } from './helpers/openapi-app.js';
import { startApiNode } from './helpers/api-node.js';

type Json = Record<string, unknown>;
interface Operation {
  summary?: string;
  tags?: string[];
  parameters?: { in: string; name: string }[];
  responses: Record<string, { description: string; content?: Record<string, { schema?: Json }> }>;
}
interface OpenApiDocument {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components?: Json;
}

let built: RecordedApp;
let doc: OpenApiDocument;

beforeAll(async () => {
  built = await buildRecordedApp();
  const res = await built.app.inject({ url: OPENAPI_ROUTE });
  expect(res.statusCode).toBe(200);
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  doc = res.json();
});
afterAll(async () => {
  await built.close();
});

/** `/v1/docs/:collection/:id` → `/v1/docs/{collection}/{id}`. */
const openApiPath = (url: string): string => url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');

function operations(): { path: string; method: string; op: Operation }[] {
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item).map(([method, op]) => ({ path, method, op })));
}

describe('coverage', () => {
  test('every route registered on the app is in the document, but the peer link routes', () => {
    const gets = new Set(built.routes.filter((r) => r.method === 'GET').map((r) => r.url));
    // Fastify adds a HEAD route for every GET; the GET documents both.
    const routes = built.routes.filter((r) => !(r.method === 'HEAD' && gets.has(r.url)));
    const peer = routes.filter((r) => isPeerRoute(r.url));
    expect(peer.map((r) => r.url).sort()).toEqual(['/v1/replicate', '/v1/replicate/challenge']);
    const missing = routes
      .filter((r) => !isPeerRoute(r.url))
      .filter((r) => doc.paths[openApiPath(r.url)]?.[r.method.toLowerCase()] === undefined)
      .map((r) => `${r.method} ${r.url}`);
    expect(missing).toEqual([]);
    for (const r of peer) expect(doc.paths[openApiPath(r.url)]).toBeUndefined();
    // The routes this test knows by name, so that an app missing them does not pass by having fewer routes.
    for (const known of ['/v1/sync', '/v1/docs/{collection}/{id}/ops', '/v1/openapi.json', '/v1/live/{collection}/{id}']) {
      expect(doc.paths[known]).toBeDefined();
    }
  });

  test('every operation has a summary, tags, a success response and the errors of its route', () => {
    for (const { path, method, op } of operations()) {
      const where = `${method.toUpperCase()} ${path}`;
      expect(op.summary, where).toMatch(/\S/);
      expect(op.tags?.length, where).toBeGreaterThan(0);
      expect(Object.keys(op.responses).some((s) => /^[12]\d\d$/.test(s)), where).toBe(true);
      expect(op.responses['500'], where).toBeDefined();
    }
    const ops = doc.paths['/v1/docs/{collection}/{id}/ops']?.['post'];
    expect(errorCodes(ops, '400')).toEqual(expect.arrayContaining(['invalid_ops', 'invalid_json', 'invalid_name', 'invalid_token']));
    expect(errorCodes(ops, '409')).toEqual(['type_mismatch']);
    expect(errorCodes(ops, '504')).toEqual(['quorum_timeout']);
    expect(errorCodes(doc.paths['/v1/docs/{collection}']?.['get'], '400')).toContain('invalid_query');
    expect(errorCodes(doc.paths['/v1/docs/{collection}/{id}/yjs']?.['post'], '415')).toEqual(['unsupported_media_type']);
  });

  test('the session headers are documented where the session applies them', () => {
    const names = (op: Operation | undefined) => (op?.parameters ?? []).filter((p) => p.in === 'header').map((p) => p.name);
    expect(names(doc.paths['/v1/docs/{collection}/{id}']?.['put'])).toEqual(['meridian-after', 'meridian-wait-ms', 'meridian-replicas']);
    expect(names(doc.paths['/v1/docs/{collection}/{id}']?.['get'])).toEqual(['meridian-after', 'meridian-wait-ms']);
    expect(names(doc.paths['/healthz']?.['get'])).toEqual([]);
    const read = doc.paths['/v1/docs/{collection}/{id}']?.['get']?.responses['200'] as { headers?: Json } | undefined;
    expect(Object.keys(read?.headers ?? {})).toEqual(['meridian-version']);
  });
});

function errorCodes(op: Operation | undefined, status: string): string[] {
  const schema = op?.responses[status]?.content?.['application/json']?.schema as { properties?: { error?: { enum?: string[] } } } | undefined;
  return schema?.properties?.error?.enum ?? [];
}

describe('shape', () => {
  test('the document has the shape of OpenAPI 3.1', () => {
    const validate = new Ajv2020({ strict: true, allErrors: true }).compile(OPENAPI_SKELETON);
    expect(validate(doc) ? [] : validate.errors).toEqual([]);
  });

  test('every path parameter of a path template is declared, and nothing else in the path', () => {
    for (const { path, method, op } of operations()) {
      const inPath = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]).sort();
      const declared = (op.parameters ?? []).filter((p) => p.in === 'path').map((p) => p.name).sort();
      expect(declared, `${method} ${path}`).toEqual(inPath);
    }
  });

  test('every $ref resolves', () => {
    const refs: string[] = [];
    walk(doc, (node) => {
      if (typeof node['$ref'] === 'string') refs.push(node['$ref']);
    });
    for (const ref of refs) {
      expect(ref.startsWith('#/'), ref).toBe(true);
      expect(resolvePointer(doc, ref), ref).toBeDefined();
    }
  });
});

describe('examples', () => {
  test('every documented example validates against its schema', () => {
    const checked: string[] = [];
    const problems: string[] = [];
    const check = (schema: Json, example: unknown, where: string) => {
      checked.push(where);
      const validate = compile(schema);
      if (!validate(example)) problems.push(`${where}: ${JSON.stringify(validate.errors?.[0])}`);
    };
    walk(doc, (node, where) => {
      if (Array.isArray(node['examples'])) node['examples'].forEach((ex, i) => check(node, ex, `${where}/examples/${i}`));
      const schema = node['schema'];
      if (isObject(schema) && 'example' in node) check(schema, node['example'], `${where}/example`);
      if (isObject(schema) && isObject(node['examples'])) {
        for (const [name, ex] of Object.entries(node['examples'])) check(schema, (ex as { value?: unknown }).value, `${where}/examples/${name}`);
      }
    });
    expect(problems).toEqual([]);
    // The examples the API's own routes carry are among them.
    expect(checked.length).toBeGreaterThan(30);
    expect(checked.some((w) => w.includes('~1v1~1sync/get/responses/200'))).toBe(true);
    expect(checked.some((w) => w.includes('~1ops/post/requestBody'))).toBe(true);
  });

  test('a broken example would be caught', () => {
    const schema = doc.paths['/v1/sync']?.['get']?.responses['200']?.content?.['application/json']?.schema;
    expect(schema).toBeDefined();
    expect(compile(schema as Json)({ region: 'us-east' })).toBe(false);
  });
});

describe('real answers match the document', () => {
  function responseSchema(path: string, method: string, status: number): Json {
    const content = doc.paths[path]?.[method]?.responses[String(status)]?.content;
    const schema = content?.['application/json']?.schema;
    if (schema === undefined) throw new Error(`no JSON schema for ${method} ${path} ${status}`);
    return schema;
  }

  async function expectDocumented(path: string, method: string, request: InjectOptions) {
    const res = await built.app.inject(request);
    const validate = compile(responseSchema(path, method, res.statusCode));
    const body: unknown = res.json();
    expect(validate(body) ? [] : validate.errors, `${method} ${path} ${res.statusCode}`).toEqual([]);
    return res;
  }

  test('status, documents, pages, writes and errors', async () => {
    const doc1 = '/v1/docs/{collection}/{id}';
    expect((await expectDocumented(doc1, 'put', { method: 'PUT', url: '/v1/docs/notes/a', payload: { title: 'x', n: 1 } })).statusCode).toBe(200);
    await expectDocumented(doc1, 'get', { url: '/v1/docs/notes/a' });
    await expectDocumented(`${doc1}/ops`, 'post', {
      method: 'POST', url: '/v1/docs/notes/a/ops', payload: { ops: [{ op: 'increment', path: ['n'], by: 2 }] },
    });
    await expectDocumented('/v1/docs/{collection}', 'get', { url: '/v1/docs/notes?limit=1' });
    await expectDocumented('/v1/sync', 'get', { url: '/v1/sync' });
    await expectDocumented(`${doc1}/sync`, 'get', { url: '/v1/docs/notes/a/sync' });
    await expectDocumented(`${doc1}/conflicts`, 'get', { url: '/v1/docs/notes/a/conflicts' });
    await expectDocumented('/healthz', 'get', { url: '/healthz' });
    await expectDocumented('/readyz', 'get', { url: '/readyz' });
    const errors = [
      { url: '/v1/docs/notes/none' },
      { url: '/v1/docs/notes?limit=0' },
      { method: 'POST', url: '/v1/docs/notes/a/ops', payload: { ops: [{ op: 'explode', path: ['n'] }] } },
      { method: 'POST', url: '/v1/docs/notes/a/ops', payload: { ops: [{ op: 'set', path: ['n', 'x'], value: 1 }] } },
      { method: 'PUT', url: '/v1/docs/notes/a', payload: 'a=1', headers: { 'content-type': 'text/plain' } },
    ] as const;
    for (const request of errors) {
      const res = await built.app.inject(request);
      const path = request.url.startsWith('/v1/docs/notes?') ? '/v1/docs/{collection}' : request.url.endsWith('/ops') ? `${doc1}/ops` : doc1;
      const method = ('method' in request ? request.method : 'GET').toLowerCase();
      expect(res.statusCode).toBeGreaterThanOrEqual(400);
      const validate = compile(responseSchema(path, method, res.statusCode));
      expect(validate(res.json()) ? [] : validate.errors, `${method} ${request.url} ${res.statusCode}`).toEqual([]);
    }
  });

  test('the document needs no token where every other /v1 route does', async () => {
    const node = await startApiNode({ tokens: [{ token: 'reader-token-0123456789', scope: 'read' }] });
    try {
      expect((await node.app.inject({ url: '/v1/sync' })).statusCode).toBe(401);
      const res = await node.app.inject({ url: OPENAPI_ROUTE });
      expect(res.statusCode).toBe(200);
      expect((res.json() as OpenApiDocument).openapi).toBe('3.1.0');
    } finally {
      await node.close();
    }
  });
});

// ---------------------------------------------------------------- helpers

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Calls `visit` on every object of the document with its JSON pointer. */
function walk(node: unknown, visit: (node: Json, where: string) => void, where = '#'): void {
  if (Array.isArray(node)) node.forEach((child, i) => walk(child, visit, `${where}/${i}`));
  if (!isObject(node)) return;
  visit(node, where);
  for (const [key, child] of Object.entries(node)) walk(child, visit, `${where}/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`);
}

function resolvePointer(root: unknown, ref: string): unknown {
  return ref.slice(2).split('/').reduce<unknown>((node, part) => {
    const key = part.replace(/~1/g, '/').replace(/~0/g, '~');
    return isObject(node) || Array.isArray(node) ? (node as Record<string, unknown>)[key] : undefined;
  }, root);
}

/** Replaces the document's local `$ref`s by what they point at, so a schema compiles on its own. */
function inlineRefs(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(inlineRefs);
  if (!isObject(node)) return node;
  if (typeof node['$ref'] === 'string') return inlineRefs(resolvePointer(doc, node['$ref']));
  return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, inlineRefs(v)]));
}

/** OpenAPI 3.1 schemas are JSON Schema 2020-12, with OpenAPI's `discriminator`. */
const schemaAjv = new Ajv2020({
  strict: false, discriminator: true, allErrors: false,
  formats: { 'date-time': (s: string) => !Number.isNaN(Date.parse(s)) },
});
const compiled = new WeakMap<Json, ValidateFunction>();

function compile(schema: Json): ValidateFunction {
  let validate = compiled.get(schema);
  if (validate === undefined) {
    validate = schemaAjv.compile(inlineRefs(schema) as Json);
    compiled.set(schema, validate);
  }
  return validate;
}

/** The parts of the OpenAPI 3.1 schema this document uses, as strictly as the specification states them. */
const OPENAPI_SKELETON = {
  type: 'object',
  required: ['openapi', 'info', 'paths'],
  properties: {
    openapi: { const: '3.1.0' },
    info: { type: 'object', required: ['title', 'version'], properties: { title: { type: 'string' }, version: { type: 'string' } } },
    paths: { type: 'object', propertyNames: { pattern: '^/' }, additionalProperties: { $ref: '#/$defs/pathItem' } },
    components: { type: 'object' },
  },
  $defs: {
    pathItem: {
      type: 'object',
      minProperties: 1,
      propertyNames: { enum: ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] },
      additionalProperties: { $ref: '#/$defs/operation' },
    },
    operation: {
      type: 'object',
      required: ['responses'],
      properties: {
        summary: { type: 'string' },
        tags: { type: 'array', items: { type: 'string' } },
        parameters: { type: 'array', items: { $ref: '#/$defs/parameter' } },
        requestBody: { type: 'object', required: ['content'], properties: { content: { $ref: '#/$defs/content' } } },
        responses: {
          type: 'object',
          minProperties: 1,
          propertyNames: { pattern: '^([1-5][0-9X]{2}|default)$' },
          additionalProperties: { $ref: '#/$defs/response' },
        },
        security: { type: 'array', items: { type: 'object' } },
      },
    },
    parameter: {
      type: 'object',
      required: ['name', 'in', 'schema'],
      properties: { name: { type: 'string' }, in: { enum: ['query', 'header', 'path', 'cookie'] }, schema: { type: 'object' } },
      if: { properties: { in: { const: 'path' } } },
      then: { required: ['required'], properties: { required: { const: true } } },
    },
    response: {
      type: 'object',
      required: ['description'],
      properties: {
        description: { type: 'string', minLength: 1 },
        content: { $ref: '#/$defs/content' },
        headers: { type: 'object', additionalProperties: { type: 'object', properties: { schema: { type: 'object' } } } },
      },
    },
    content: {
      type: 'object',
      propertyNames: { pattern: '^[a-z*]+/[a-z0-9.+*-]+$' },
      additionalProperties: { type: 'object', required: ['schema'], properties: { schema: { type: 'object' } } },
    },
  },
} as const;
