import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { LightMyRequestResponse } from 'fastify';
import { decodeVersion } from '../src/docs/token.js';
import { docKey } from '../src/ids.js';
import { startApiNode, type ApiNode } from './helpers/api-node.js';

let node: ApiNode;

beforeAll(async () => {
  node = await startApiNode({ limits: { bodyBytes: 64 * 1024 } });
});
afterAll(async () => {
  await node.close();
});

const json = (res: LightMyRequestResponse) => res.json() as Record<string, unknown>;

function put(url: string, payload: unknown) {
  return node.app.inject({ method: 'PUT', url, payload: payload as Record<string, unknown> });
}

function raw(method: 'PUT' | 'PATCH' | 'POST', url: string, body: string, contentType = 'application/json') {
  return node.app.inject({ method, url, payload: body, headers: { 'content-type': contentType } });
}

function expectError(res: LightMyRequestResponse, status: number, code: string): Record<string, unknown> {
  expect(res.statusCode).toBe(status);
  const body = json(res);
  expect(body.error).toBe(code);
  expect(typeof body.message).toBe('string');
  return body;
}

describe('PUT and GET', () => {
  test('a written document reads back, with its version in body and header', async () => {
    const res = await put('/v1/docs/notes/a', { title: 'hello', n: 1, tags: ['x'], nested: { deep: true } });
    expect(res.statusCode).toBe(200);
    const version = json(res).version as string;
    expect(res.headers['meridian-version']).toBe(version);
    expect(decodeVersion(version).get(node.documents.writer)).toBeGreaterThan(0);

    const read = await node.app.inject({ url: '/v1/docs/notes/a' });
    expect(read.statusCode).toBe(200);
    expect(read.json()).toEqual({ title: 'hello', n: 1, tags: ['x'], nested: { deep: true } });
    expect(decodeVersion(read.headers['meridian-version'] as string)).toEqual(decodeVersion(version));
  });

  test('reads of a large document at once each see the writes acknowledged before they asked', async () => {
    // About 2 MB: rendering it takes milliseconds, so reads at once share one rendering.
    for (let part = 0; part < 4; part++) {
      await node.documents.patch(docKey('notes', 'large'), Object.fromEntries(Array.from({ length: 500 }, (_, i) => [`k${part}_${i}`, 'x'.repeat(1000)])));
    }
    for (let n = 1; n <= 4; n++) {
      const write = await raw('PATCH', '/v1/docs/notes/large', JSON.stringify({ n }));
      expect(write.statusCode).toBe(200);
      const written = decodeVersion(json(write).version as string).get(node.documents.writer) ?? 0;
      const reads = await Promise.all(Array.from({ length: 8 }, () => node.app.inject({ url: '/v1/docs/notes/large' })));
      for (const read of reads) {
        expect(read.statusCode).toBe(200);
        expect(read.headers['content-type']).toBe('application/json; charset=utf-8');
        const body = read.json() as Record<string, unknown>;
        expect(body.n).toBe(n);
        expect(Object.keys(body)).toHaveLength(2001);
        expect(decodeVersion(read.headers['meridian-version'] as string).get(node.documents.writer)).toBeGreaterThanOrEqual(written);
      }
    }
  });

  test('PUT replaces the whole document', async () => {
    await put('/v1/docs/notes/b', { a: 1, b: 2 });
    await put('/v1/docs/notes/b', { c: 3 });
    expect((await node.app.inject({ url: '/v1/docs/notes/b' })).json()).toEqual({ c: 3 });
  });

  test('each write advances the version', async () => {
    const v1 = decodeVersion(json(await put('/v1/docs/notes/v', { i: 1 })).version as string);
    const v2 = decodeVersion(json(await put('/v1/docs/notes/v', { i: 2 })).version as string);
    const w = node.documents.writer;
    expect(v2.get(w)).toBeGreaterThan(v1.get(w) ?? 0);
  });

  test('an unknown document is 404 not_found', async () => {
    expectError(await node.app.inject({ url: '/v1/docs/notes/nope' }), 404, 'not_found');
  });

  test('non-object bodies are 400 invalid_body and write nothing', async () => {
    for (const body of ['[1,2]', '"text"', '42', 'null', 'true']) {
      const res = await raw('PUT', '/v1/docs/notes/scalar', body);
      expectError(res, 400, 'invalid_body');
    }
    expect((await node.app.inject({ url: '/v1/docs/notes/scalar' })).statusCode).toBe(404);
  });

  test('a missing body is 400 invalid_body', async () => {
    expectError(await node.app.inject({ method: 'PUT', url: '/v1/docs/notes/empty' }), 400, 'invalid_body');
  });

  test('malformed JSON is 400 invalid_json', async () => {
    expectError(await raw('PUT', '/v1/docs/notes/bad', '{"a": '), 400, 'invalid_json');
    expectError(await raw('PUT', '/v1/docs/notes/bad', ''), 400, 'invalid_json');
    expectError(await raw('PUT', '/v1/docs/notes/bad', '{"__proto__": {"x": 1}}'), 400, 'invalid_json');
  });

  test('other content types are 415', async () => {
    expectError(await raw('PUT', '/v1/docs/notes/ct', 'a=1', 'text/plain'), 415, 'unsupported_media_type');
    expectError(await raw('PUT', '/v1/docs/notes/ct', '{}', 'application/merge-patch+json'), 415, 'unsupported_media_type');
    expectError(await raw('PUT', '/v1/docs/notes/ct', 'a=1', 'application/x-www-form-urlencoded'), 415, 'unsupported_media_type');
  });

  test('a body over the limit is 413 body_too_large', async () => {
    const res = await put('/v1/docs/notes/big', { s: 'x'.repeat(70 * 1024) });
    expectError(res, 413, 'body_too_large');
    expect((await node.app.inject({ url: '/v1/docs/notes/big' })).statusCode).toBe(404);
  });

  test('bad collection and id names are 400 invalid_name', async () => {
    const ok = 'x'.repeat(128);
    expect((await put(`/v1/docs/notes/${ok}`, { a: 1 })).statusCode).toBe(200);
    expect((await put(`/v1/docs/${ok}/a`, { a: 1 })).statusCode).toBe(200);
    const bad = [
      `/v1/docs/notes/${'x'.repeat(129)}`,
      `/v1/docs/${'x'.repeat(129)}/a`,
      '/v1/docs/notes/a%2Fb',
      '/v1/docs/notes/sp%20ace',
      '/v1/docs/no%24tes/a',
      '/v1/docs/notes/%C3%A9',
    ];
    for (const url of bad) {
      expectError(await put(url, { a: 1 }), 400, 'invalid_name');
      expectError(await node.app.inject({ url }), 400, 'invalid_name');
    }
    expectError(await node.app.inject({ url: `/v1/docs/${'y'.repeat(129)}` }), 400, 'invalid_name');
  });

  test('all name characters are accepted', async () => {
    const res = await put('/v1/docs/A.b_c~d-9/Z.y_x~w-0', { ok: true });
    expect(res.statusCode).toBe(200);
    expect((await node.app.inject({ url: '/v1/docs/A.b_c~d-9/Z.y_x~w-0' })).json()).toEqual({ ok: true });
  });
});

describe('PATCH', () => {
  test('merges with either JSON content type; null removes a field', async () => {
    await put('/v1/docs/notes/p', { a: 1, b: { c: 2, d: 3 } });
    const r1 = await raw('PATCH', '/v1/docs/notes/p', '{"b": {"c": null, "e": 5}}', 'application/merge-patch+json');
    expect(r1.statusCode).toBe(200);
    expect(r1.headers['meridian-version']).toBe(json(r1).version);
    const r2 = await raw('PATCH', '/v1/docs/notes/p', '{"f": [1]}');
    expect(r2.statusCode).toBe(200);
    expect((await node.app.inject({ url: '/v1/docs/notes/p' })).json()).toEqual({ a: 1, b: { d: 3, e: 5 }, f: [1] });
  });

  test('non-object patches and malformed JSON are refused', async () => {
    expectError(await raw('PATCH', '/v1/docs/notes/p', '[1]', 'application/merge-patch+json'), 400, 'invalid_body');
    expectError(await raw('PATCH', '/v1/docs/notes/p', '{', 'application/merge-patch+json'), 400, 'invalid_json');
    expectError(await raw('PATCH', '/v1/docs/notes/p', 'x', 'text/plain'), 415, 'unsupported_media_type');
  });
});

describe('POST ops', () => {
  test('applies typed operations', async () => {
    await put('/v1/docs/notes/o', { title: 'x' });
    const ops = [
      { op: 'increment', path: ['views'], by: 2 },
      { op: 'increment', path: ['views'], by: 3 },
      { op: 'add', path: ['tags'], value: 'a' },
      { op: 'set', path: ['title'], value: 'y' },
    ];
    const res = await node.app.inject({ method: 'POST', url: '/v1/docs/notes/o/ops', payload: { ops } });
    expect(res.statusCode).toBe(200);
    expect(res.headers['meridian-version']).toBe(json(res).version);
    const doc = (await node.app.inject({ url: '/v1/docs/notes/o' })).json() as Record<string, unknown>;
    expect(doc.views).toBe(5);
    expect(doc.title).toBe('y');
    expect(doc.tags).toEqual(['a']);
  });

  test('malformed operations are 400 invalid_ops and change nothing', async () => {
    await put('/v1/docs/notes/o2', { n: 1 });
    const bad = [
      {},
      { ops: [] },
      { ops: 'set' },
      { ops: [{ op: 'explode', path: ['n'] }] },
      { ops: [{ op: 'increment', path: ['n'], by: '1' }] },
      { ops: [{ op: 'set', path: ['n'], value: 2, extra: 1 }] },
      { ops: [{ op: 'set', path: ['n'], value: 2 }, { op: 'insertText', path: ['t'], index: -1, text: 'a' }] },
    ];
    for (const payload of bad) {
      const res = await node.app.inject({ method: 'POST', url: '/v1/docs/notes/o2/ops', payload });
      expectError(res, 400, 'invalid_ops');
    }
    expectError(await raw('POST', '/v1/docs/notes/o2/ops', '{"ops": ['), 400, 'invalid_json');
    expect((await node.app.inject({ url: '/v1/docs/notes/o2' })).json()).toEqual({ n: 1 });
  });
});

describe('DELETE', () => {
  test('removes a document; a second delete is 404', async () => {
    await put('/v1/docs/notes/d', { a: 1 });
    const res = await node.app.inject({ method: 'DELETE', url: '/v1/docs/notes/d' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['meridian-version']).toBe(json(res).version);
    expectError(await node.app.inject({ url: '/v1/docs/notes/d' }), 404, 'not_found');
    expectError(await node.app.inject({ method: 'DELETE', url: '/v1/docs/notes/d' }), 404, 'not_found');
    expectError(await node.app.inject({ method: 'DELETE', url: '/v1/docs/notes/never' }), 404, 'not_found');
  });

  test('a deleted document can be written again', async () => {
    await put('/v1/docs/notes/d2', { a: 1 });
    await node.app.inject({ method: 'DELETE', url: '/v1/docs/notes/d2' });
    await put('/v1/docs/notes/d2', { b: 2 });
    expect((await node.app.inject({ url: '/v1/docs/notes/d2' })).json()).toEqual({ b: 2 });
  });
});

describe('listing', () => {
  const ids = Array.from({ length: 25 }, (_, i) => `doc-${String(i).padStart(3, '0')}`);

  beforeAll(async () => {
    for (const id of ids) await put(`/v1/docs/paged/${id}`, { id });
  });

  test('pages through a collection in id order', async () => {
    const seen: string[] = [];
    let after: string | null = null;
    for (let page = 0; page < 10; page++) {
      const url: string = `/v1/docs/paged?limit=10${after === null ? '' : `&after=${after}`}`;
      const body = (await node.app.inject({ url })).json() as { ids: string[]; next: string | null };
      expect(body.ids.length).toBeLessThanOrEqual(10);
      seen.push(...body.ids);
      after = body.next;
      if (after === null) break;
    }
    expect(seen).toEqual(ids);
  });

  test('defaults to 100 and stops at the end', async () => {
    const body = (await node.app.inject({ url: '/v1/docs/paged' })).json() as { ids: string[]; next: string | null };
    expect(body).toEqual({ ids, next: null });
    expect((await node.app.inject({ url: '/v1/docs/empty-coll' })).json()).toEqual({ ids: [], next: null });
  });

  test('limit must be 1..1000 and after a valid name', async () => {
    for (const limit of ['0', '1001', 'abc', '2.5', '-1']) {
      const body = expectError(await node.app.inject({ url: `/v1/docs/paged?limit=${limit}` }), 400, 'invalid_query');
      expect(body.field).toBe('querystring/limit');
    }
    expect((await node.app.inject({ url: '/v1/docs/paged?limit=1000' })).statusCode).toBe(200);
    expectError(await node.app.inject({ url: '/v1/docs/paged?after=a%2Fb' }), 400, 'invalid_name');
  });
});

describe('other routes', () => {
  test('unknown routes are 404 not_found in the error format', async () => {
    expectError(await node.app.inject({ url: '/v2/docs/a/b' }), 404, 'not_found');
    expectError(await node.app.inject({ url: '/v1/docs/a/b/c/d' }), 404, 'not_found');
    expectError(await node.app.inject({ method: 'POST', url: '/healthz' }), 404, 'not_found');
  });

  test('healthz and readyz answer', async () => {
    const health = await node.app.inject({ url: '/healthz' });
    expect(health.statusCode).toBe(200);
    expect(health.json()).toEqual({ status: 'ok', region: node.region });
    const ready = await node.app.inject({ url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toMatchObject({ ready: true, isolated: false });
  });

  test('sync status routes return the replication view', async () => {
    const sync = await node.app.inject({ url: '/v1/sync' });
    expect(sync.statusCode).toBe(200);
    expect(sync.json()).toMatchObject({ region: node.region, writer: node.documents.writer, peers: [] });
    const doc = await node.app.inject({ url: '/v1/docs/notes/a/sync' });
    expect(doc.statusCode).toBe(200);
    expect(doc.json()).toMatchObject({ doc: 'notes/a' });
    expectError(await node.app.inject({ url: '/v1/docs/notes/a%2F/sync' }), 400, 'invalid_name');
  });

  test('metrics render in the Prometheus format with request and route labels', async () => {
    await node.app.inject({ url: '/v1/docs/notes/a' });
    const res = await node.app.inject({ url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('text/plain');
    const line = res.body
      .split('\n')
      .find(
        (l) =>
          l.startsWith('meridian_http_request_duration_seconds_count{') &&
          l.includes('method="GET"') &&
          l.includes('route="/v1/docs/:collection/:id"') &&
          l.includes('status="200"'),
      );
    expect(Number(line?.split(' ').at(-1))).toBeGreaterThan(0);
    const sample = (name: string, label: string) =>
      Number(
        res.body
          .split('\n')
          .find((l) => l.startsWith(`${name}{`) && l.includes(label))
          ?.split(' ')
          .at(-1) ?? NaN,
      );
    // Earlier tests made successful puts, deletes and ops; refused writes are not counted.
    expect(sample('meridian_writes_total', 'kind="put"')).toBeGreaterThan(10);
    expect(sample('meridian_writes_total', 'kind="delete"')).toBeGreaterThanOrEqual(2);
    expect(sample('meridian_write_commit_seconds_count', 'kind="ops"')).toBe(1);
    // Unknown paths share one label value, so scanning URLs cannot grow the series without bound.
    await node.app.inject({ url: '/no/such/path/1' });
    await node.app.inject({ url: '/no/such/path/2' });
    const after = (await node.app.inject({ url: '/metrics' })).body;
    expect(after).toContain('route="unmatched"');
    expect(after).not.toContain('/no/such/path');
  });
});
