/**
 * The client against a region that misbehaves (a buggy region, or
 * something between it and the client). Its change feed: an event that
 * never ends, streams that end at once after one event, a position no
 * region takes. Its session: a version token no region takes. The client
 * must neither grow without bound, nor ask again in a tight loop, nor end
 * a subscription or fail every call for good.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createClient, type MeridianClient } from '../src/client/index.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

const servers: Server[] = [];
const clients: MeridianClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((resolve) => s.close(resolve));
  }
});

/** A region at a free port that answers probes and hands every other request to `handle`. */
async function region(handle: Handler): Promise<string> {
  const server = createServer((req, res) => {
    if (req.url === '/readyz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ready":true}');
      return;
    }
    handle(req, res);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function client(url: string): MeridianClient {
  const c = createClient({ regions: [{ name: 'r', url }], probeIntervalMs: 60_000, timeoutMs: 2000 });
  clients.push(c);
  return c;
}

const change = (n: number): string => `id: v1.W1s${n}XQ\nevent: change\ndata: ${JSON.stringify({ collection: 'c', id: `d${n}`, deleted: false })}\n\n`;

async function until(ok: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('the client change feed against a misbehaving region', () => {
  it('gives up on an event whose data never ends, and says so', async () => {
    const line = `data: ${'x'.repeat(1 << 20)}\n`;
    let requests = 0;
    const url = await region((_req, res) => {
      requests++;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      // 80 MiB of one event's data lines, never ended by a blank line.
      let sent = 0;
      const more = (): void => {
        while (sent < 80 && !res.destroyed) {
          sent++;
          if (!res.write(line)) {
            res.once('drain', more);
            return;
          }
        }
      };
      more();
    });
    const errors: string[] = [];
    const stop = client(url).subscribe('c', undefined, () => undefined, { onError: (e) => errors.push(e.message) });
    try {
      await until(() => errors.some((m) => m.includes('event stream event too large')), 30_000);
      expect(requests).toBeGreaterThanOrEqual(1);
    } finally {
      stop();
    }
  }, 60_000);

  it('resumes a stream that ends at once after an event after a pause, not in a tight loop', async () => {
    let requests = 0;
    const url = await region((_req, res) => {
      requests++;
      res.writeHead(200, { 'content-type': 'text/event-stream' }).end(change(requests));
    });
    const seen: string[] = [];
    const stop = client(url).subscribe('c', undefined, (c) => seen.push(c.id));
    try {
      await until(() => requests > 0);
      const from = requests;
      await new Promise((r) => setTimeout(r, 1000));
      // At most one a pause (100 ms) apart; without it, hundreds a second.
      expect(requests - from).toBeLessThanOrEqual(12);
      expect(requests - from).toBeGreaterThanOrEqual(3);
      expect(seen.length).toBeGreaterThanOrEqual(3);
    } finally {
      stop();
    }
  });

  it('starts afresh, and says so, when the position a region gave is refused', async () => {
    const positions: (string | undefined)[] = [];
    const url = await region((req, res) => {
      const position = req.headers['last-event-id'] as string | undefined;
      positions.push(position);
      if (position === 'not-a-token') {
        res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"invalid_token","message":"unknown version token format"}');
        return;
      }
      if (positions.length === 1) {
        res.writeHead(200, { 'content-type': 'text/event-stream' }).end('id: not-a-token\nevent: change\ndata: {"collection":"c","id":"first","deleted":false}\n\n');
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(change(2));
    });
    const seen: string[] = [];
    let resets = 0;
    const errors: string[] = [];
    const stop = client(url).subscribe('c', undefined, (c) => seen.push(c.id), { onReset: () => resets++, onError: (e) => errors.push(e.message) });
    try {
      await until(() => seen.includes('d2'));
      expect(positions.slice(0, 3)).toEqual([undefined, 'not-a-token', undefined]);
      expect(resets).toBe(1);
      expect(errors.some((m) => m.includes('position was refused'))).toBe(true);
    } finally {
      stop();
    }
  });
});

describe('the client session against a region that hands out a malformed version', () => {
  it('drops a token the region refuses, goes on without it, and takes the next one', async () => {
    const seen: { method: string; after: string | undefined }[] = [];
    const url = await region((req, res) => {
      const after = req.headers['meridian-after'] as string | undefined;
      seen.push({ method: req.method ?? '', after });
      req.resume();
      if (after === 'not a token') {
        res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"invalid_token","message":"unknown version token format"}');
      } else if (req.method === 'PUT') {
        res.writeHead(200, { 'content-type': 'application/json', 'meridian-version': 'not a token' }).end('{"version":"not a token"}');
      } else {
        res.writeHead(200, { 'content-type': 'application/json', 'meridian-version': 'v1.W10' }).end('{"n":1}');
      }
    });
    const c = client(url);
    expect(await c.put('c', 'a', { n: 1 })).toBe('not a token');
    // Refused with the malformed token, then served without it; the session takes the token of that answer.
    expect(await c.get('c', 'b')).toMatchObject({ value: { n: 1 }, version: 'v1.W10' });
    expect(seen.map((r) => `${r.method} ${r.after ?? '-'}`)).toEqual(['PUT -', 'GET not a token', 'GET -']);
    expect(c.status().session).toBe('v1.W10');
    await c.get('c', 'b');
    expect(seen.at(-1)!.after).toBe('v1.W10');
  });
});

