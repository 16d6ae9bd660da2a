import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { InjectOptions } from 'fastify';
import { startApiNode, type ApiNode } from './helpers/api-node.js';

const ADMIN = 'admin-token-0123456789abcdef';
const READER = 'reader-token-0123456789abcdef';
const SCOPED = 'scoped-token-0123456789abcdef';

const tokens = [
  { token: ADMIN, scope: 'read-write' as const, name: 'admin' },
  { token: READER, scope: 'read' as const, name: 'reader' },
  { token: SCOPED, scope: 'read-write' as const, collections: ['notes', 'app-*'], name: 'scoped' },
];

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** One request of every /v1 kind against `collection`, each marked as a read or a write. */
function requests(collection: string): { write: boolean; req: InjectOptions }[] {
  const doc = `/v1/docs/${collection}/d`;
  return [
    { write: false, req: { url: doc } },
    { write: false, req: { url: `/v1/docs/${collection}` } },
    { write: false, req: { url: `${doc}/yjs` } },
    { write: false, req: { url: `${doc}/sync` } },
    { write: true, req: { method: 'PUT', url: doc, payload: { a: 1 } } },
    { write: true, req: { method: 'PATCH', url: doc, payload: { b: 1 } } },
    { write: true, req: { method: 'POST', url: `${doc}/ops`, payload: { ops: [{ op: 'increment', path: ['c'], by: 1 }] } } },
    {
      write: true,
      req: { method: 'POST', url: `${doc}/yjs`, payload: Buffer.from([0, 0]), headers: { 'content-type': 'application/octet-stream' } },
    },
    { write: true, req: { method: 'DELETE', url: `/v1/docs/${collection}/gone` } },
  ];
}

function withAuth(req: InjectOptions, token: string | null): InjectOptions {
  const headers = { ...(req.headers ?? {}), ...(token === null ? {} : bearer(token)) };
  return { ...req, headers };
}

describe('with tokens configured', () => {
  let node: ApiNode;
  const logLines: string[] = [];

  beforeAll(async () => {
    node = await startApiNode({ tokens, protectMetrics: true, logLines, limits: { bodyBytes: 1024 } });
    await node.app.inject({ method: 'PUT', url: '/v1/docs/other/gone', payload: { x: 1 }, headers: bearer(ADMIN) });
  });
  afterAll(async () => {
    await node.close();
  });

  test('every /v1 request without a known token is 401 with a Bearer challenge', async () => {
    for (const { req } of requests('notes')) {
      for (const header of [null, 'wrong-token-0123456789abcdef', `${ADMIN}x`]) {
        const res = await node.app.inject(withAuth(req, header));
        expect(res.statusCode, `${req.method ?? 'GET'} ${req.url as string}`).toBe(401);
        expect(res.json()).toMatchObject({ error: 'unauthorized' });
        expect(res.headers['www-authenticate']).toBe('Bearer');
      }
    }
    for (const authorization of [`Basic ${ADMIN}`, ADMIN, 'Bearer']) {
      const res = await node.app.inject({ url: '/v1/sync', headers: { authorization } });
      expect(res.statusCode).toBe(401);
    }
  });

  test('access is checked before the body is read', async () => {
    const res = await node.app.inject({ method: 'PUT', url: '/v1/docs/notes/big', payload: { s: 'x'.repeat(4096) } });
    expect(res.statusCode).toBe(401);
  });

  test('a read-write token may do everything', async () => {
    for (const { req } of requests('other')) {
      const res = await node.app.inject(withAuth(req, ADMIN));
      expect([401, 403]).not.toContain(res.statusCode);
    }
  });

  test('a read-only token reads but every write is 403', async () => {
    for (const { write, req } of requests('notes')) {
      const res = await node.app.inject(withAuth(req, READER));
      if (write) {
        expect(res.statusCode, `${req.method ?? 'GET'} ${req.url as string}`).toBe(403);
        expect(res.json()).toMatchObject({ error: 'forbidden' });
      } else {
        expect([401, 403]).not.toContain(res.statusCode);
      }
    }
    expect((await node.app.inject({ url: '/v1/docs/other/d', headers: bearer(READER) })).statusCode).toBe(200);
  });

  test('a token limited to collections reaches those alone (exact names and prefixes)', async () => {
    for (const collection of ['notes', 'app-1', 'app-']) {
      for (const { req } of requests(collection)) {
        const res = await node.app.inject(withAuth(req, SCOPED));
        expect([401, 403], `${req.method ?? 'GET'} ${req.url as string}`).not.toContain(res.statusCode);
      }
    }
    for (const collection of ['other', 'notes2', 'app']) {
      for (const { req } of requests(collection)) {
        const res = await node.app.inject(withAuth(req, SCOPED));
        expect(res.statusCode, `${req.method ?? 'GET'} ${req.url as string}`).toBe(403);
      }
    }
    expect((await node.app.inject({ url: '/v1/docs/other/d', headers: bearer(SCOPED) })).statusCode).toBe(403);
  });

  test('/v1/sync needs a token for every collection; a collection-scoped one is 403', async () => {
    expect((await node.app.inject({ url: '/v1/sync' })).statusCode).toBe(401);
    for (const token of [ADMIN, READER]) {
      expect((await node.app.inject({ url: '/v1/sync', headers: bearer(token) })).statusCode).toBe(200);
    }
    const scoped = await node.app.inject({ url: '/v1/sync', headers: bearer(SCOPED) });
    expect(scoped.statusCode).toBe(403);
    expect(scoped.json()).toMatchObject({ error: 'forbidden' });
  });

  test('health endpoints need no token', async () => {
    expect((await node.app.inject({ url: '/healthz' })).statusCode).toBe(200);
    expect((await node.app.inject({ url: '/readyz' })).statusCode).toBe(200);
  });

  test('protected metrics need a token of any scope', async () => {
    const res = await node.app.inject({ url: '/metrics' });
    expect(res.statusCode).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Bearer');
    expect((await node.app.inject({ url: '/metrics', headers: bearer(READER) })).statusCode).toBe(200);
    expect((await node.app.inject({ url: '/metrics', headers: bearer(SCOPED) })).statusCode).toBe(200);
  });

  test('tokens never reach the log', async () => {
    node.app.log.info({ req: { headers: { authorization: `Bearer ${ADMIN}` } } }, 'request with headers');
    node.app.log.info({ headers: { authorization: `Bearer ${READER}` } }, 'bare headers');
    expect(logLines.length).toBeGreaterThan(10);
    expect(logLines.some((l) => l.includes('[redacted]'))).toBe(true);
    for (const token of [ADMIN, READER, SCOPED]) {
      expect(logLines.filter((l) => l.includes(token))).toEqual([]);
    }
  });
});

describe('without tokens', () => {
  let node: ApiNode;

  beforeAll(async () => {
    node = await startApiNode({ protectMetrics: false });
  });
  afterAll(async () => {
    await node.close();
  });

  test('the API and metrics are open', async () => {
    for (const { req } of requests('notes')) {
      const res = await node.app.inject(req);
      expect([401, 403]).not.toContain(res.statusCode);
    }
    expect((await node.app.inject({ url: '/metrics' })).statusCode).toBe(200);
    expect((await node.app.inject({ url: '/v1/sync' })).statusCode).toBe(200);
  });
});

describe('with tokens but unprotected metrics', () => {
  test('metrics are open while the API is not', async () => {
    const node = await startApiNode({ tokens, protectMetrics: false });
    try {
      expect((await node.app.inject({ url: '/metrics' })).statusCode).toBe(200);
      expect((await node.app.inject({ url: '/v1/docs/notes/a' })).statusCode).toBe(401);
    } finally {
      await node.close();
    }
  });
});
