import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { WriterId } from '../src/ids.js';
import { decodeVersion, encodeVersion } from '../src/docs/token.js';
import { downPeer, startApiNode, type ApiNode } from './helpers/api-node.js';

const MAX_WAIT_MS = 600;

async function versionOf(node: ApiNode, url: string, payload: Record<string, unknown>): Promise<string> {
  const res = await node.app.inject({ method: 'PUT', url, payload });
  expect(res.statusCode).toBe(200);
  return (res.json() as { version: string }).version;
}

describe('meridian-after', () => {
  let node: ApiNode;

  beforeAll(async () => {
    node = await startApiNode({ limits: { defaultWaitMs: 200, maxWaitMs: MAX_WAIT_MS } });
  });
  afterAll(async () => {
    await node.close();
  });

  test('a version already applied is served at once, for reads and writes', async () => {
    const version = await versionOf(node, '/v1/docs/s/a', { n: 1 });
    const read = await node.app.inject({ url: '/v1/docs/s/a', headers: { 'meridian-after': version } });
    expect(read.statusCode).toBe(200);
    expect(read.json()).toEqual({ n: 1 });
    const write = await node.app.inject({
      method: 'PUT',
      url: '/v1/docs/s/a',
      payload: { n: 2 },
      headers: { 'meridian-after': version },
    });
    expect(write.statusCode).toBe(200);
  });

  test('a request waits until the version is applied, then sees the write', async () => {
    const current = decodeVersion(await versionOf(node, '/v1/docs/s/b', { step: 1 }));
    const writer = node.documents.writer;
    const next = encodeVersion(new Map([[writer, (current.get(writer) ?? 0) + 1]]));
    const started = Date.now();
    const pending = node.app.inject({
      url: '/v1/docs/s/b',
      headers: { 'meridian-after': next, 'meridian-wait-ms': String(MAX_WAIT_MS) },
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    await versionOf(node, '/v1/docs/s/b', { step: 2 });
    const res = await pending;
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ step: 2 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(90);
    expect(Date.now() - started).toBeLessThan(MAX_WAIT_MS);
  });

  test('a version never reached is 503 lagging with what is missing', async () => {
    const unreachable = encodeVersion(new Map([['elsewhere~zz' as WriterId, 7]]));
    const started = Date.now();
    const res = await node.app.inject({
      url: '/v1/docs/s/a',
      headers: { 'meridian-after': unreachable, 'meridian-wait-ms': '150' },
    });
    expect(res.statusCode).toBe(503);
    expect(res.json()).toMatchObject({ error: 'lagging', missing: { 'elsewhere~zz': 7 } });
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
  });

  test('the wait defaults to defaultWaitMs and is capped at maxWaitMs', async () => {
    const unreachable = encodeVersion(new Map([['elsewhere~zz' as WriterId, 1]]));
    let started = Date.now();
    const byDefault = await node.app.inject({ url: '/v1/docs/s/a', headers: { 'meridian-after': unreachable } });
    expect(byDefault.statusCode).toBe(503);
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(Date.now() - started).toBeLessThan(MAX_WAIT_MS);
    started = Date.now();
    const capped = await node.app.inject({
      url: '/v1/docs/s/a',
      headers: { 'meridian-after': unreachable, 'meridian-wait-ms': '600000' },
    });
    expect(capped.statusCode).toBe(503);
    expect(Date.now() - started).toBeGreaterThanOrEqual(MAX_WAIT_MS - 10);
    expect(Date.now() - started).toBeLessThan(MAX_WAIT_MS + 1000);
  });

  test('a write that waits and times out writes nothing', async () => {
    const unreachable = encodeVersion(new Map([['elsewhere~zz' as WriterId, 1]]));
    const res = await node.app.inject({
      method: 'PUT',
      url: '/v1/docs/s/never',
      payload: { a: 1 },
      headers: { 'meridian-after': unreachable, 'meridian-wait-ms': '50' },
    });
    expect(res.statusCode).toBe(503);
    expect((await node.app.inject({ url: '/v1/docs/s/never' })).statusCode).toBe(404);
  });

  test('malformed tokens are 400 invalid_token, bad waits 400 bad_request', async () => {
    for (const token of ['nonsense', 'v1.', 'v1.%%%', `v1.${Buffer.from('[["w",0]]').toString('base64url')}`]) {
      const res = await node.app.inject({ url: '/v1/docs/s/a', headers: { 'meridian-after': token } });
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({ error: 'invalid_token' });
    }
    const version = encodeVersion(new Map());
    for (const wait of ['-5', 'soon', '1.5']) {
      const res = await node.app.inject({
        url: '/v1/docs/s/a',
        headers: { 'meridian-after': version, 'meridian-wait-ms': wait },
      });
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({ error: 'bad_request' });
    }
  });
});

describe('meridian-replicas', () => {
  test('with no peers only 1 is possible; anything else is 400 and writes nothing', async () => {
    const node = await startApiNode();
    try {
      const one = await node.app.inject({
        method: 'PUT',
        url: '/v1/docs/r/a',
        payload: { a: 1 },
        headers: { 'meridian-replicas': '1' },
      });
      expect(one.statusCode).toBe(200);
      for (const n of ['0', '2', 'all', '-1']) {
        const res = await node.app.inject({
          method: 'PUT',
          url: '/v1/docs/r/b',
          payload: { a: 1 },
          headers: { 'meridian-replicas': n },
        });
        expect(res.statusCode).toBe(400);
        expect(res.json()).toMatchObject({ error: 'bad_request' });
      }
      expect((await node.app.inject({ url: '/v1/docs/r/b' })).statusCode).toBe(404);
    } finally {
      await node.close();
    }
  });

  test('when the peers do not confirm, 504 quorum_timeout; the write stands and is readable', async () => {
    const node = await startApiNode({ peers: [downPeer('west')] });
    try {
      const started = Date.now();
      const res = await node.app.inject({
        method: 'PUT',
        url: '/v1/docs/r/q',
        payload: { q: 1 },
        headers: { 'meridian-replicas': '2', 'meridian-wait-ms': '150' },
      });
      expect(res.statusCode).toBe(504);
      const body = res.json() as { error: string; message: string; version: string };
      expect(body.error).toBe('quorum_timeout');
      expect(body.message).toContain('will replicate');
      expect(res.headers['meridian-version']).toBe(body.version);
      expect(Date.now() - started).toBeGreaterThanOrEqual(140);
      expect(decodeVersion(body.version).get(node.documents.writer)).toBeGreaterThan(0);
      const read = await node.app.inject({ url: '/v1/docs/r/q', headers: { 'meridian-after': body.version } });
      expect(read.statusCode).toBe(200);
      expect(read.json()).toEqual({ q: 1 });
      expect((await node.app.inject({ url: '/readyz' })).json()).toMatchObject({ ready: true, isolated: true });
      const three = await node.app.inject({
        method: 'PUT',
        url: '/v1/docs/r/q',
        payload: { q: 2 },
        headers: { 'meridian-replicas': '3' },
      });
      expect(three.statusCode).toBe(400);
    } finally {
      await node.close();
    }
  });
});

describe('load protection', () => {
  test('beyond the concurrency cap requests get 429 with retry-after; /healthz still answers', async () => {
    const node = await startApiNode({ limits: { maxConcurrentRequests: 2 } });
    try {
      const unreachable = encodeVersion(new Map([['elsewhere~zz' as WriterId, 1]]));
      const waiting = [1, 2].map(() =>
        node.app.inject({ url: '/v1/docs/c/a', headers: { 'meridian-after': unreachable, 'meridian-wait-ms': '300' } }),
      );
      await new Promise((resolve) => setTimeout(resolve, 50));
      const refused = await node.app.inject({ method: 'PUT', url: '/v1/docs/c/a', payload: { a: 1 } });
      expect(refused.statusCode).toBe(429);
      expect(refused.json()).toMatchObject({ error: 'too_many_requests' });
      expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
      expect((await node.app.inject({ url: '/healthz' })).statusCode).toBe(200);
      for (const res of await Promise.all(waiting)) expect(res.statusCode).toBe(503);
      // The slots are free again once the waiting requests have answered.
      expect((await node.app.inject({ method: 'PUT', url: '/v1/docs/c/a', payload: { a: 1 } })).statusCode).toBe(200);
      expect((await node.app.inject({ url: '/v1/docs/c/a' })).statusCode).toBe(200);
    } finally {
      await node.close();
    }
  });

  test('server timeouts come from the limits, and a client that goes away frees its slot', async () => {
    const limits = {
      maxConcurrentRequests: 1,
      requestTimeoutMs: 7000,
      headersTimeoutMs: 3000,
      keepAliveTimeoutMs: 2000,
      connectionTimeoutMs: 9000,
    };
    const node = await startApiNode({ limits });
    try {
      await node.app.listen({ host: '127.0.0.1', port: 0 });
      const server = node.app.server;
      expect(server.requestTimeout).toBe(7000);
      expect(server.headersTimeout).toBe(3000);
      expect(server.keepAliveTimeout).toBe(2000);
      expect(server.timeout).toBe(9000);
      const { port } = server.address() as AddressInfo;
      const unreachable = encodeVersion(new Map([['elsewhere~zz' as WriterId, 1]]));
      const aborter = new AbortController();
      const gone = fetch(`http://127.0.0.1:${port}/v1/docs/c/a`, {
        headers: { 'meridian-after': unreachable, 'meridian-wait-ms': '400' },
        signal: aborter.signal,
      }).catch((err: unknown) => err);
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect((await fetch(`http://127.0.0.1:${port}/v1/docs/c/a`)).status).toBe(429);
      aborter.abort();
      expect(await gone).toBeInstanceOf(Error);
      await new Promise((resolve) => setTimeout(resolve, 50));
      const res = await fetch(`http://127.0.0.1:${port}/v1/docs/c/a`, {
        method: 'PUT',
        body: '{"a":1}',
        headers: { 'content-type': 'application/json' },
      });
      expect(res.status).toBe(200);
    } finally {
      await node.close();
    }
  });

  test('readyz turns 503 while the node drains, healthz stays 200', async () => {
    let draining = false;
    const node = await startApiNode({ shuttingDown: () => draining });
    try {
      expect((await node.app.inject({ url: '/readyz' })).statusCode).toBe(200);
      draining = true;
      const ready = await node.app.inject({ url: '/readyz' });
      expect(ready.statusCode).toBe(503);
      expect(ready.json()).toMatchObject({ ready: false });
      expect((await node.app.inject({ url: '/healthz' })).statusCode).toBe(200);
      expect((await node.app.inject({ method: 'PUT', url: '/v1/docs/c/a', payload: { a: 1 } })).statusCode).toBe(200);
    } finally {
      await node.close();
    }
  });
});
