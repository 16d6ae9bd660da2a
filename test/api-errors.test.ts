/**
 * Errors name what was wrong: query-string mistakes are `invalid_query`,
 * body mistakes `invalid_body` (both with `field`), a missing or refused
 * content type lists the accepted ones, and malformed `/ops` bodies are
 * refused before the request waits for anything.
 */
import { readFileSync } from 'node:fs';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ERRORS } from '../src/contract.js';
import { encodeVersion } from '../src/docs/token.js';
import type { WriterId } from '../src/ids.js';
import { startApiNode, type ApiNode } from './helpers/api-node.js';

let node: ApiNode;

beforeAll(async () => {
  node = await startApiNode();
  await node.app.inject({ method: 'PUT', url: '/v1/docs/e/a', payload: { n: 1 } });
});
afterAll(async () => {
  await node.close();
});

function expectError(res: LightMyRequestResponse, status: number, code: string): Record<string, unknown> {
  expect(res.statusCode).toBe(status);
  const body = res.json() as Record<string, unknown>;
  expect(body).toMatchObject({ error: code });
  expect(typeof body['message']).toBe('string');
  return body;
}

function send(method: 'PUT' | 'PATCH' | 'POST', url: string, body: string | Buffer, contentType?: string) {
  return node.app.inject({ method, url, payload: body, headers: contentType === undefined ? {} : { 'content-type': contentType } });
}

describe('query strings', () => {
  test.each([
    ['/v1/docs/e?limit=0', 'querystring/limit'],
    ['/v1/docs/e?limit=abc', 'querystring/limit'],
    ['/v1/docs/e/a/conflicts?after=-1', 'querystring/after'],
    ['/v1/docs/e/a/conflicts?limit=101', 'querystring/limit'],
    ['/v1/docs/e/a/yjs?sv=%25%25', 'querystring/sv'],
    ['/v1/docs/e/a/yjs?sv=CQ', 'querystring/sv'],
  ])('%s is 400 invalid_query naming %s', async (url, field) => {
    const body = expectError(await node.app.inject({ url }), 400, 'invalid_query');
    expect(body['field']).toBe(field);
    expect(body['message']).toContain(field.split('/')[1]);
  });

  test('a valid query still answers', async () => {
    expect((await node.app.inject({ url: '/v1/docs/e?limit=1' })).statusCode).toBe(200);
    expect((await node.app.inject({ url: '/v1/docs/e/a/conflicts?limit=5' })).statusCode).toBe(200);
  });
});

describe('bodies', () => {
  test('a body of the wrong shape stays invalid_body', async () => {
    const body = expectError(await send('PUT', '/v1/docs/e/b', '[1]', 'application/json'), 400, 'invalid_body');
    expect(body['field']).toBe('body');
  });

  test('malformed ops are invalid_ops naming the op, before the request waits for a version', async () => {
    const unreachable = encodeVersion(new Map([['elsewhere~zz' as WriterId, 7]]));
    const res = await node.app.inject({
      method: 'POST', url: '/v1/docs/e/a/ops',
      headers: { 'meridian-after': unreachable, 'meridian-wait-ms': '60000' },
      payload: { ops: [{ op: 'set', path: ['n'], value: 2 }, { op: 'increment', path: ['n'], by: 1.5 }] },
    });
    const body = expectError(res, 400, 'invalid_ops');
    expect(body).toMatchObject({ index: 1, message: 'ops[1]: "by" must be a safe integer' });
    expect((await node.app.inject({ url: '/v1/docs/e/a' })).json()).toEqual({ n: 1 });
  });
});

describe('content types', () => {
  test.each([
    ['PUT', '/v1/docs/e/c', '{"a":1}', 'text/plain', ['application/json']],
    ['PUT', '/v1/docs/e/c', 'a=1', 'application/x-www-form-urlencoded', ['application/json']],
    ['PATCH', '/v1/docs/e/c', 'x', 'text/plain', ['application/json', 'application/merge-patch+json']],
    ['POST', '/v1/docs/e/c/ops', '[]', 'text/csv', ['application/json']],
    ['POST', '/v1/docs/e/c/yjs', '{"a":1}', 'application/json', ['application/octet-stream']],
  ] as const)('%s %s with %s: 415 listing the accepted types', async (method, url, payload, type, accepted) => {
    const body = expectError(await send(method, url, payload, type), 415, 'unsupported_media_type');
    expect(body['accepted']).toEqual(accepted);
    expect(body['message']).toContain(`'${type}'`);
    for (const t of accepted) expect(body['message']).toContain(t);
  });

  test('a body without a content type: 415 saying so, listing the accepted types', async () => {
    const res = await node.app.inject({ method: 'POST', url: '/v1/docs/e/c/yjs', payload: Buffer.from([1, 0]) });
    const body = expectError(res, 415, 'unsupported_media_type');
    expect(body['message']).toMatch(/without a content type/);
    expect(body['accepted']).toEqual(['application/octet-stream']);
  });
});

describe('the catalogue', () => {
  test('the README error table lists every code with its status, and nothing else', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const rows = [...readme.matchAll(/^\| `([a-z_]+)` \| (\d{3}) \| /gm)].map((m) => [m[1], Number(m[2])]);
    expect(Object.fromEntries(rows)).toEqual(ERRORS);
  });
});
