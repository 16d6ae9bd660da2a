import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import * as Y from 'yjs';
import { startApiNode, type ApiNode } from './helpers/api-node.js';

const YJS_LIMIT = 4096;
let node: ApiNode;

beforeAll(async () => {
  node = await startApiNode({ limits: { yjsUpdateBytes: YJS_LIMIT } });
});
afterAll(async () => {
  await node.close();
});

function postYjs(url: string, body: Uint8Array | Buffer) {
  return node.app.inject({
    method: 'POST',
    url,
    payload: Buffer.from(body),
    headers: { 'content-type': 'application/octet-stream' },
  });
}

async function fetchDoc(url: string): Promise<Y.Doc> {
  const res = await node.app.inject({ url });
  expect(res.statusCode).toBe(200);
  expect(res.headers['content-type']).toBe('application/octet-stream');
  const doc = new Y.Doc();
  Y.applyUpdate(doc, res.rawPayload);
  return doc;
}

describe('GET yjs', () => {
  test('returns the document as an update a Yjs client can load', async () => {
    await node.app.inject({ method: 'PUT', url: '/v1/docs/y/a', payload: { title: 'hi', n: 2 } });
    const res = await node.app.inject({ url: '/v1/docs/y/a/yjs' });
    expect(res.headers['meridian-version']).toMatch(/^v1\./);
    const doc = await fetchDoc('/v1/docs/y/a/yjs');
    expect(doc.getMap('root').get('title')).toBe('hi');
    expect(doc.getMap('root').get('n')).toBe(2);
  });

  test('with a state vector returns only what it lacks', async () => {
    const doc = await fetchDoc('/v1/docs/y/a/yjs');
    const sv = Buffer.from(Y.encodeStateVector(doc)).toString('base64url');
    const full = await node.app.inject({ url: '/v1/docs/y/a/yjs' });
    const diff = await node.app.inject({ url: `/v1/docs/y/a/yjs?sv=${sv}` });
    expect(diff.statusCode).toBe(200);
    expect(diff.rawPayload.length).toBeLessThan(full.rawPayload.length);
    await node.app.inject({ method: 'PATCH', url: '/v1/docs/y/a', payload: { title: 'changed' } });
    const next = await node.app.inject({ url: `/v1/docs/y/a/yjs?sv=${encodeURIComponent(sv)}` });
    Y.applyUpdate(doc, next.rawPayload);
    expect(doc.getMap('root').get('title')).toBe('changed');
  });

  test('an unknown document is 404 and bad state vectors are 400 invalid_query', async () => {
    expect((await node.app.inject({ url: '/v1/docs/y/none/yjs' })).statusCode).toBe(404);
    for (const sv of ['%25%25', 'A', Buffer.from([9]).toString('base64url')]) {
      const res = await node.app.inject({ url: `/v1/docs/y/a/yjs?sv=${sv}` });
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({ error: 'invalid_query', field: 'querystring/sv' });
    }
  });
});

describe('POST yjs', () => {
  test("applies a client's update", async () => {
    await node.app.inject({ method: 'PUT', url: '/v1/docs/y/b', payload: { a: 1 } });
    const doc = await fetchDoc('/v1/docs/y/b/yjs');
    const before = Y.encodeStateVector(doc);
    doc.getMap('root').set('b', 'from yjs');
    const res = await postYjs('/v1/docs/y/b/yjs', Y.encodeStateAsUpdate(doc, before));
    expect(res.statusCode).toBe(200);
    expect(res.headers['meridian-version']).toBe((res.json() as { version: string }).version);
    expect((await node.app.inject({ url: '/v1/docs/y/b' })).json()).toEqual({ a: 1, b: 'from yjs' });
  });

  test('random bytes are 400, leave the document unchanged and the node serving', async () => {
    await node.app.inject({ method: 'PUT', url: '/v1/docs/y/c', payload: { keep: true } });
    const before = await node.app.inject({ url: '/v1/docs/y/c/yjs' });
    for (let i = 0; i < 50; i++) {
      const res = await postYjs('/v1/docs/y/c/yjs', randomBytes(1 + (i * 37) % 2000));
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({ error: 'invalid_update' });
    }
    const after = await node.app.inject({ url: '/v1/docs/y/c/yjs' });
    expect(Buffer.compare(after.rawPayload, before.rawPayload)).toBe(0);
    expect((await node.app.inject({ url: '/v1/docs/y/c' })).json()).toEqual({ keep: true });
    expect((await node.app.inject({ url: '/healthz' })).statusCode).toBe(200);
    expect((await node.app.inject({ method: 'PUT', url: '/v1/docs/y/c2', payload: { ok: 1 } })).statusCode).toBe(200);
  });

  test('an empty body or another content type is refused', async () => {
    const empty = await postYjs('/v1/docs/y/d/yjs', new Uint8Array(0));
    expect(empty.statusCode).toBe(400);
    expect(empty.json()).toMatchObject({ error: 'invalid_update' });
    const json = await node.app.inject({ method: 'POST', url: '/v1/docs/y/d/yjs', payload: { a: 1 } });
    expect(json.statusCode).toBe(415);
  });

  test('an update over yjsUpdateBytes is 413 and not applied', async () => {
    const doc = new Y.Doc();
    doc.getMap('root').set('big', 'x'.repeat(YJS_LIMIT * 2));
    const res = await postYjs('/v1/docs/y/big/yjs', Y.encodeStateAsUpdate(doc));
    expect(res.statusCode).toBe(413);
    expect(res.json()).toMatchObject({ error: 'body_too_large' });
    expect((await node.app.inject({ url: '/v1/docs/y/big/yjs' })).statusCode).toBe(404);
  });

  test('bad names are 400 invalid_name', async () => {
    const res = await postYjs(`/v1/docs/y/${'x'.repeat(129)}/yjs`, new Uint8Array([0, 0]));
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ error: 'invalid_name' });
  });
});
