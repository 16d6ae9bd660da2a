/**
 * Hardening of the HTTP API and the replication endpoint against ordinary
 * clients. Each test starts with the reproduction of an attack, scaled
 * down: real sockets where the socket is the point (slow bodies,
 * disconnects, upgrades), `inject` elsewhere.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest, type ClientRequest } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import Fastify from 'fastify';
import { pino, type Logger } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { WebSocket } from 'ws';
import { parseConfig } from '../src/config.js';
import { decodeVersion, encodeVersion } from '../src/docs/token.js';
import { docKey, type WriterId } from '../src/ids.js';
import { createLogLimiter } from '../src/log-limiter.js';
import { createMetrics } from '../src/metrics.js';
import { linkOptions, startRegion, type RunningRegion } from '../src/region.js';
import { REPLICATE_PATH } from '../src/replication/handshake.js';
import { acceptLinks } from '../src/replication/transport.js';
import { downPeer, startApiNode, type ApiNode } from './helpers/api-node.js';
import { http, startTestCluster } from './helpers/cluster.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

function captureLogger(lines: string[]): Logger {
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter((l) => l.length > 0));
      done();
    },
  });
  return pino({ level: 'info' }, sink);
}

/** The value of one series in a Prometheus text scrape; 0 when absent. */
function metricValue(scrape: string, series: string): number {
  const line = scrape.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

async function listen(node: ApiNode): Promise<number> {
  await node.app.listen({ host: '127.0.0.1', port: 0 });
  const address = node.app.server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

interface SlowAnswer {
  status: number;
  body: string;
  /** Milliseconds from the first byte sent to the answer. */
  afterMs: number;
}

/**
 * A PUT that declares a 100-byte body and sends one byte every 100 ms, from
 * `localAddress`; resolves with the first answer (the client hangs up then).
 */
function slowPut(port: number, url: string, headers: Record<string, string>, localAddress = '127.0.0.1'): Promise<SlowAnswer> {
  const started = Date.now();
  const socket = connect({ host: '127.0.0.1', port, localAddress });
  const lines = [`PUT ${url} HTTP/1.1`, 'host: meridian', 'content-type: application/json', 'content-length: 100'];
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
  socket.write(`${lines.join('\r\n')}\r\n\r\n`);
  const drip = setInterval(() => socket.write(' '), 100);
  return new Promise((resolve, reject) => {
    let text = '';
    const finish = (): void => {
      clearInterval(drip);
      socket.destroy();
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      resolve({ status, body: text.slice(text.indexOf('\r\n\r\n') + 4), afterMs: Date.now() - started });
    };
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('utf8');
      const head = text.indexOf('\r\n\r\n');
      const length = Number(/content-length: (\d+)/i.exec(text)?.[1] ?? -1);
      if (head >= 0 && text.length - head - 4 >= length) finish();
    });
    socket.on('close', () => (text === '' ? reject(new Error('closed without an answer')) : finish()));
    socket.on('error', () => clearInterval(drip));
  });
}

/** A plain request from `localAddress` with a JSON body; resolves with status and body. */
function send(
  port: number,
  method: string,
  url: string,
  options: { headers?: Record<string, string>; body?: unknown; localAddress?: string } = {},
): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
  const headers = { ...options.headers, ...(payload === undefined ? {} : { 'content-type': 'application/json' }) };
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, method, path: url, headers, agent: false, localAddress: options.localAddress ?? '127.0.0.1' },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString('utf8')));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

describe('slow bodies', () => {
  const SLOW = 'slow-token-0123456789abcdef';
  const OTHER = 'other-token-0123456789abcdef';
  let node: ApiNode | null = null;

  afterEach(async () => {
    await node?.close();
    node = null;
  });

  test('slow PUTs of one token neither lock out another token nor outlive the body timeout', async () => {
    const logLines: string[] = [];
    node = await startApiNode({
      tokens: [{ token: SLOW, name: 'slow' }, { token: OTHER, name: 'other' }],
      limits: { maxConcurrentRequests: 8, maxConcurrentPerCaller: 4, bodyTimeoutMs: 500, requestTimeoutMs: 20_000 },
      logLines,
    });
    const port = await listen(node);
    // The reproduction: more slow bodies than the node has slots, 100 bytes declared, a byte at a time.
    const slow = Array.from({ length: 12 }, (_, i) => slowPut(port, `/v1/docs/notes/slow-${i}`, bearer(SLOW)));
    await sleep(200);

    const other = await send(port, 'PUT', '/v1/docs/notes/served', { headers: bearer(OTHER), body: { ok: true } });
    expect(other.status).toBe(200);

    const answers = await Promise.all(slow);
    const byStatus = (status: number) => answers.filter((a) => a.status === status);
    expect(byStatus(429)).toHaveLength(8);
    expect(byStatus(408)).toHaveLength(4);
    for (const cut of byStatus(408)) {
      expect(JSON.parse(cut.body)).toMatchObject({ error: 'request_timeout' });
      // Cut off at the body timeout, far before the 20 s request timeout.
      expect(cut.afterMs).toBeLessThan(5000);
    }
    const scrape = await node.metrics.scrape();
    expect(metricValue(scrape, 'meridian_requests_refused_total{reason="caller_busy",region="test"}')).toBe(8);
    expect(metricValue(scrape, 'meridian_requests_refused_total{reason="body_timeout",region="test"}')).toBe(4);
    // Twelve refusals, one line per reason for this caller.
    expect(logLines.filter((l) => l.includes('request refused by a limit'))).toHaveLength(2);
  });

  test('a body that comes after its headers, within the body timeout, is read whole', async () => {
    node = await startApiNode({ limits: { maxConcurrentRequests: 8, maxConcurrentPerCaller: 4, bodyTimeoutMs: 1000 } });
    const port = await listen(node);
    const body = JSON.stringify({ part: 'first', rest: 'second' });
    const socket = connect({ host: '127.0.0.1', port });
    const answer = new Promise<string>((resolve) => {
      let text = '';
      socket.on('data', (chunk: Buffer) => {
        text += chunk.toString('utf8');
        if (/\r\n\r\n[\s\S]*\}$/.test(text)) resolve(text);
      });
    });
    socket.write(`PUT /v1/docs/c/split HTTP/1.1\r\nhost: meridian\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n`);
    await sleep(150);
    socket.write(body.slice(0, 10));
    await sleep(150);
    socket.write(body.slice(10));
    try {
      expect(await answer).toMatch(/^HTTP\/1\.1 200 /);
    } finally {
      socket.destroy();
    }
    const read = await send(port, 'GET', '/v1/docs/c/split');
    expect(JSON.parse(read.body)).toEqual({ part: 'first', rest: 'second' });
  });

  test('without tokens the cap is per client address', async () => {
    node = await startApiNode({ limits: { maxConcurrentRequests: 8, maxConcurrentPerCaller: 4, bodyTimeoutMs: 500 } });
    const port = await listen(node);
    const slow = Array.from({ length: 12 }, (_, i) => slowPut(port, `/v1/docs/c/slow-${i}`, {}, '127.0.0.2'));
    await sleep(200);
    const other = await send(port, 'PUT', '/v1/docs/c/served', { body: { ok: true } });
    expect(other.status).toBe(200);
    const statuses = (await Promise.all(slow)).map((a) => a.status).sort((a, b) => a - b);
    expect(statuses).toEqual([...Array<number>(4).fill(408), ...Array<number>(8).fill(429)]);
  });

  test('/healthz, /readyz and /metrics answer while every slot is taken, and never count', async () => {
    node = await startApiNode({
      tokens: [{ token: SLOW, name: 'slow' }, { token: OTHER, name: 'other' }],
      limits: { maxConcurrentRequests: 4, maxConcurrentPerCaller: 4, bodyTimeoutMs: 3000 },
    });
    const port = await listen(node);
    const slow = Array.from({ length: 4 }, (_, i) => slowPut(port, `/v1/docs/notes/slow-${i}`, bearer(SLOW)));
    await sleep(200);
    for (const url of ['/healthz', '/readyz', '/metrics']) {
      expect((await send(port, 'GET', url)).status, url).toBe(200);
    }
    const refused = await send(port, 'GET', '/v1/docs/notes/x', { headers: bearer(OTHER) });
    expect(refused.status).toBe(429);
    expect(refused.headers['retry-after']).toBe('1');
    expect((await Promise.all(slow)).map((a) => a.status)).toEqual([408, 408, 408, 408]);
    // The slots are free again.
    expect((await send(port, 'PUT', '/v1/docs/notes/after', { headers: bearer(OTHER), body: { a: 1 } })).status).toBe(200);
  });
});

describe('bodies refused before they arrive', () => {
  test('an oversized body is answered 413 while the client is still sending it, never reset under it', async () => {
    // A region process (in this process the client would write the whole body before the server reads a byte),
    // and a body far larger than socket buffers hold: the answer comes while most of it is still to be written.
    const cluster = await startTestCluster(['solo']);
    try {
      const port = Number(new URL(cluster.url('solo')).port);
      const body = Buffer.alloc(8 * 1024 * 1024, 0x20);
      const outcomes: string[] = [];
      for (let i = 0; i < 10; i++) {
        outcomes.push(await new Promise<string>((resolve) => {
          const req = httpRequest(
            { host: '127.0.0.1', port, method: 'PUT', path: '/v1/docs/big/one', headers: { 'content-type': 'application/json', 'content-length': String(body.length) } },
            (res) => {
              let text = '';
              res.on('data', (c: Buffer) => (text += c.toString('utf8')));
              res.on('end', () => resolve(`${res.statusCode} ${(JSON.parse(text) as { error?: string }).error}`));
            },
          );
          // Once the answer is in, the client's own hang-up may still fail the rest of its write: not what is tested.
          req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
          req.end(body);
        }));
      }
      expect(outcomes).toEqual(Array<string>(10).fill('413 body_too_large'));

      // A client that declares a gigabyte and keeps sending is still cut off: the lingering is bounded.
      const endless = connect({ host: '127.0.0.1', port });
      endless.on('error', () => undefined);
      endless.write('PUT /v1/docs/big/two HTTP/1.1\r\nhost: meridian\r\ncontent-type: application/json\r\ncontent-length: 1000000000\r\n\r\n');
      let answer = '';
      endless.on('data', (c: Buffer) => (answer += c.toString('utf8')));
      const started = Date.now();
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const pump = setInterval(() => {
        if (!endless.destroyed) endless.write(chunk);
      }, 1);
      await new Promise<void>((resolve) => endless.once('close', () => resolve()));
      clearInterval(pump);
      expect(answer).toMatch(/^HTTP\/1\.1 413/);
      // At most 2 s or 16 MiB after the answer; generous for a loaded machine.
      expect(Date.now() - started).toBeLessThan(10_000);
      expect((await http(`${cluster.url('solo')}/healthz`)).status).toBe(200);
    } finally {
      await cluster.dispose();
    }
  });
});

describe('versions naming writers nobody knows', () => {
  test('a meridian-after or a change feed position naming more than 16 writers this region holds nothing of is answered lagging at once; 16 are waited for', async () => {
    const node = await startApiNode({});
    try {
      await node.app.inject({ method: 'PUT', url: '/v1/docs/notes/a', payload: { v: 1 } });
      const held = [...node.documents.versionVector()];
      const made = (n: number) => encodeVersion(new Map([...held, ...Array.from({ length: n }, (_, i) => [`made-up~${i.toString(16)}` as WriterId, 1] as const)]));
      const tooMany = made(17);
      // Not waited for (no waiter held), and not called malformed: a client goes to another region, or comes back later.
      const asked = performance.now();
      const after = await node.app.inject({ method: 'GET', url: '/v1/docs/notes/a', headers: { 'meridian-after': tooMany, 'meridian-wait-ms': '5000' } });
      expect(performance.now() - asked).toBeLessThan(2500);
      expect(after.statusCode).toBe(503);
      expect(after.json()).toMatchObject({ error: 'lagging', message: expect.stringMatching(/more than 16 writers/) });
      expect(Object.keys((after.json() as { missing: object }).missing)).toHaveLength(16);
      const feed = await node.app.inject({ method: 'GET', url: `/v1/events/notes?after=${tooMany}` });
      expect(feed.statusCode).toBe(503);
      expect(feed.json()).toMatchObject({ error: 'lagging' });
      // Sixteen: a region waits for them as for any version it lacks.
      const waited = await node.app.inject({ method: 'GET', url: '/v1/docs/notes/a', headers: { 'meridian-after': made(16), 'meridian-wait-ms': '50' } });
      expect(waited.statusCode).toBe(503);
      expect(waited.json()).toMatchObject({ error: 'lagging' });
      // Several tokens, comma-separated: their union is waited for; more than 64 are refused.
      const held1 = encodeVersion(new Map(held));
      const listed = (tokens: string[]) => node.app.inject({ method: 'GET', url: '/v1/docs/notes/a', headers: { 'meridian-after': tokens.join(', '), 'meridian-wait-ms': '50' } });
      expect((await listed([held1, held1])).statusCode).toBe(200);
      const lacking = await listed([held1, encodeVersion(new Map([['elsewhere~ab' as WriterId, 3]]))]);
      expect(lacking.statusCode).toBe(503);
      expect(lacking.json()).toMatchObject({ error: 'lagging', missing: { 'elsewhere~ab': 3 } });
      const long = await listed(Array.from({ length: 65 }, () => held1));
      expect(long.statusCode).toBe(400);
      expect(long.json()).toMatchObject({ error: 'invalid_token', message: expect.stringMatching(/at most 64 tokens/) });
    } finally {
      await node.close();
    }
  });
});

describe('abandoned waits', () => {
  const unreachable = encodeVersion(new Map([['elsewhere~zz' as WriterId, 7]]));
  const dirs: string[] = [];
  const regions: RunningRegion[] = [];

  afterAll(async () => {
    for (const region of regions) await region.close();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  /** A real region in this process (real replicator, real sockets); returns its port. */
  async function startSolo(limits: Record<string, number> = {}): Promise<number> {
    const dir = mkdtempSync(path.join(tmpdir(), 'meridian-waits-'));
    dirs.push(dir);
    const raw = { region: 'solo', listen: { port: 0 }, dataDir: dir, secret: 'solo-secret-0123456789', storage: { synchronous: 'off' }, limits };
    const region = await startRegion(parseConfig(raw, dir), { logger: pino({ level: 'silent' }) });
    regions.push(region);
    return Number(new URL(region.url).port);
  }

  async function waiting(port: number): Promise<number> {
    const scrape = (await send(port, 'GET', '/metrics')).body;
    return metricValue(scrape, 'meridian_waiting_requests{region="solo"}');
  }

  /** Timers alive in this process (the region's own are unref'd and not listed): each wait holds one until it ends. */
  const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

  async function until(what: string, probe: () => boolean | Promise<boolean>, timeoutMs = 3000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await probe())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(20);
    }
  }

  /**
   * A read that waits a minute for a version nobody will write; the caller
   * hangs up when it likes. Without tokens a caller is its address: each
   * `from` (127.0.0.x) is another one.
   */
  function waitForever(port: number, from = '127.0.0.1', path = '/v1/docs/c/d'): ClientRequest {
    const req = httpRequest({
      host: '127.0.0.1', port, path, agent: false, localAddress: from,
      headers: { 'meridian-after': unreachable, 'meridian-wait-ms': '60000' },
    });
    req.on('error', () => undefined);
    req.end();
    return req;
  }

  test('a wait ends when its client disconnects', async () => {
    const port = await startSolo();
    const waits = 20;
    for (let round = 0; round < 3; round++) {
      const requests = Array.from({ length: waits }, () => waitForever(port));
      await until(`${waits} waits`, () => timers() >= waits);
      await sleep(30);
      for (const req of requests) req.destroy();
      // The reproduction: before, each wait kept its timer (and memory) for its full minute.
      await until('every wait gone', () => timers() < waits / 4);
    }
    expect(await waiting(port)).toBe(0);
  });

  test('closing the region ends the waits it holds (answered 503) instead of waiting them out', async () => {
    const port = await startSolo();
    const region = regions.at(-1);
    const answer = send(port, 'GET', '/v1/docs/c/d', { headers: { 'meridian-after': unreachable, 'meridian-wait-ms': '60000' } });
    await until('1 waiting', async () => (await waiting(port)) === 1);
    await region?.close();
    expect((await answer).status).toBe(503);
  });

  test('beyond maxWaiters a request is 503 unavailable with retry-after', async () => {
    const port = await startSolo({ maxWaiters: 4 });
    // Four callers, one wait each (a caller may hold a quarter of the waits).
    const requests = Array.from({ length: 4 }, (_, i) => waitForever(port, `127.0.0.${i + 1}`));
    await until('4 waiting', async () => (await waiting(port)) === 4);
    const refused = await send(port, 'GET', '/v1/docs/c/d', {
      headers: { 'meridian-after': unreachable, 'meridian-wait-ms': '60000' }, localAddress: '127.0.0.5',
    });
    expect(refused.status).toBe(503);
    expect(JSON.parse(refused.body)).toMatchObject({ error: 'unavailable' });
    expect(refused.headers['retry-after']).toMatch(/^\d+$/);
    // A request that needs no wait is served as usual.
    expect((await send(port, 'PUT', '/v1/docs/c/d', { body: { n: 1 } })).status).toBe(200);
    for (const req of requests) req.destroy();
    await until('no waiter left', async () => (await waiting(port)) === 0);
  });

  test('one caller holds at most a quarter of the waits, change feeds (uncapped otherwise) included: beyond, 429 with retry-after; other callers still wait', async () => {
    const port = await startSolo({ maxWaiters: 8 });
    // Feeds are exempt from the concurrency cap per caller, so they reach the wait for a version
    // however many a caller opens: without a share, one caller took every wait of the region.
    const feeds = Array.from({ length: 2 }, () => waitForever(port, '127.0.0.1', '/v1/events/c'));
    await until('2 waiting', async () => (await waiting(port)) === 2);
    const refused = await send(port, 'GET', '/v1/events/c', {
      headers: { 'meridian-after': unreachable, 'meridian-wait-ms': '60000' }, localAddress: '127.0.0.1',
    });
    expect(refused.status).toBe(429);
    expect(JSON.parse(refused.body)).toMatchObject({ error: 'too_many_requests', message: expect.stringMatching(/a quarter of limits.maxWaiters/) });
    expect(refused.headers['retry-after']).toMatch(/^\d+$/);
    const scrape = (await send(port, 'GET', '/metrics')).body;
    expect(metricValue(scrape, 'meridian_requests_refused_total{reason="caller_waiters",region="solo"}')).toBe(1);
    const other = waitForever(port, '127.0.0.2');
    await until('3 waiting', async () => (await waiting(port)) === 3);
    for (const req of [...feeds, other]) req.destroy();
    await until('no waiter left', async () => (await waiting(port)) === 0);
  });

  test('a wait longer than the socket idle timeout is answered, not cut off', async () => {
    const port = await startSolo({ connectionTimeoutMs: 1000 });
    const started = Date.now();
    const answer = await send(port, 'GET', '/v1/docs/c/d', { headers: { 'meridian-after': unreachable, 'meridian-wait-ms': '2500' } });
    expect(answer.status).toBe(503);
    expect(JSON.parse(answer.body)).toMatchObject({ error: 'lagging' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(2400);
  });

  test('after a wait, the socket idle timeout closes a connection whose client never reads the answer, and frees its slot', async () => {
    const port = await startSolo({ connectionTimeoutMs: 1000, maxConcurrentPerCaller: 1 });
    // A document of some 8 MB: its answer is more than the sockets' buffers take, and waits for a reader that never comes.
    let version = '';
    for (let i = 0; i < 9; i++) {
      const put = await send(port, 'PATCH', '/v1/docs/c/large', { body: { [`f${i}`]: 'x'.repeat(900_000) } });
      expect(put.status).toBe(200);
      version = JSON.parse(put.body).version as string;
    }
    const next = encodeVersion(new Map([...decodeVersion(version)].map(([writer, seq]) => [writer, seq + 1])));
    const socket = connect({ port, host: '127.0.0.1', localAddress: '127.0.0.1' });
    socket.on('error', () => undefined);
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write(`GET /v1/docs/c/large HTTP/1.1\r\nhost: x\r\nmeridian-after: ${next}\r\nmeridian-wait-ms: 10000\r\n\r\n`);
    socket.pause();
    await until('1 waiting', async () => (await waiting(port)) === 1);
    // Another caller's write ends the wait: the answer is sent and never read, and holds the caller's one slot.
    expect((await send(port, 'PUT', '/v1/docs/c/other', { body: { n: 1 }, localAddress: '127.0.0.2' })).status).toBe(200);
    expect((await send(port, 'GET', '/v1/docs/c/other')).status).toBe(429);
    // Idle for connectionTimeoutMs, the connection is closed, and the slot comes back.
    await until('the slot back', async () => (await send(port, 'GET', '/v1/docs/c/other')).status === 200, 8000);
    socket.destroy();
  });

  test('a write is refused for its node budget before it waits for a version, and the bodies waiting writes hold are bounded per caller', async () => {
    const port = await startSolo();
    const headers = { 'meridian-after': unreachable, 'meridian-wait-ms': '60000' };
    // 413 at once, where it waited a minute holding the parsed body (21 MB of heap for 349,000 nodes) and was refused after.
    const wide = Array.from({ length: 6000 }, () => ({}));
    for (const [method, url, body] of [
      ['PUT', '/v1/docs/c/wide', { a: wide }],
      ['PATCH', '/v1/docs/c/wide', { a: wide }],
      ['POST', '/v1/docs/c/wide/ops', [{ op: 'set', path: ['a'], value: wide }]],
    ] as const) {
      const started = Date.now();
      const refused = await send(port, method, url, { headers, body });
      expect(refused.status).toBe(413);
      expect(JSON.parse(refused.body)).toMatchObject({ error: 'too_complex' });
      expect(Date.now() - started).toBeLessThan(5000);
    }
    expect(await waiting(port)).toBe(0);
    // Writes within the budget wait with their bodies: one caller holds at most a quarter of 64 MiB of them.
    const body = JSON.stringify({ s: 'x'.repeat(999_980) });
    const held: ClientRequest[] = [];
    for (let i = 0; i < 16; i++) {
      const req = httpRequest({
        host: '127.0.0.1', port, method: 'PUT', path: `/v1/docs/c/held${i}`, agent: false, localAddress: '127.0.0.1',
        headers: { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      });
      req.on('error', () => undefined);
      req.end(body);
      held.push(req);
    }
    await until('16 waiting', async () => (await waiting(port)) === 16, 10_000);
    const refused = await send(port, 'PUT', '/v1/docs/c/one-more', { headers, body: { s: 'x'.repeat(999_980) } });
    expect(refused.status).toBe(429);
    expect(JSON.parse(refused.body)).toMatchObject({ error: 'too_many_requests', message: expect.stringMatching(/bytes of bodies/) });
    expect(refused.headers['retry-after']).toMatch(/^\d+$/);
    // Another caller still waits, and a write that needs no wait is served.
    const other = waitForever(port, '127.0.0.2');
    await until('17 waiting', async () => (await waiting(port)) === 17);
    expect((await send(port, 'PUT', '/v1/docs/c/plain', { body: { n: 1 } })).status).toBe(200);
    for (const req of [...held, other]) req.destroy();
    await until('no waiter left', async () => (await waiting(port)) === 0);
    // Nothing the refused or abandoned writes carried was stored.
    expect((await send(port, 'GET', '/v1/docs/c/one-more')).status).toBe(404);
    expect((await send(port, 'GET', '/v1/docs/c/wide')).status).toBe(404);
  });
});

describe('waits for replicas', () => {
  test('beyond maxWaiters a write that asks for replicas is refused before it is stored', async () => {
    const node = await startApiNode({ peers: [downPeer('b')], limits: { maxWaiters: 1 } });
    try {
      const headers = { 'meridian-replicas': '2', 'meridian-wait-ms': '400' };
      const holding = node.app.inject({ method: 'PUT', url: '/v1/docs/c/first', payload: { a: 1 }, headers });
      await sleep(100);
      const refused = await node.app.inject({ method: 'PUT', url: '/v1/docs/c/second', payload: { a: 1 }, headers });
      expect(refused.statusCode).toBe(503);
      expect(refused.json()).toMatchObject({ error: 'unavailable' });
      expect(node.documents.read(docKey('c', 'second')).value).toBeNull();
      expect((await holding).statusCode).toBe(504);
    } finally {
      await node.close();
    }
  });
});

describe('per-token quotas', () => {
  const LIMITED = 'limited-token-0123456789abcdef';
  const CAPPED = 'capped-token-0123456789abcdef';
  const FREE = 'free-token-0123456789abcdef';
  let node: ApiNode;

  beforeAll(async () => {
    node = await startApiNode({
      tokens: [
        { token: LIMITED, name: 'limited', quota: { writesPerSecond: 0.5, writeBurst: 3, maxDocuments: null } },
        { token: CAPPED, name: 'capped', quota: { writesPerSecond: null, writeBurst: 1, maxDocuments: 2 } },
        { token: FREE, name: 'free' },
      ],
    });
  });
  afterAll(async () => {
    await node.close();
  });

  const put = (token: string, id: string, body: unknown = { v: 1 }) =>
    node.app.inject({ method: 'PUT', url: `/v1/docs/q/${id}`, payload: body as object, headers: bearer(token) });

  test('writes beyond a token rate get 429 with retry-after in whole seconds; other tokens and reads go on', async () => {
    for (let i = 0; i < 3; i++) expect((await put(LIMITED, `r${i}`)).statusCode).toBe(200);
    const refused = await put(LIMITED, 'r3');
    expect(refused.statusCode).toBe(429);
    expect(refused.json()).toMatchObject({ error: 'too_many_requests' });
    expect(refused.headers['retry-after']).toBe('2');
    expect((await node.app.inject({ url: '/v1/docs/q/r0', headers: bearer(LIMITED) })).statusCode).toBe(200);
    for (let i = 0; i < 10; i++) expect((await put(FREE, `f${i}`)).statusCode).toBe(200);
    expect(node.documents.read(docKey('q', 'r3')).value).toBeNull();
  });

  test('a token creates at most maxDocuments documents (403 quota_exceeded), and may still update them', async () => {
    // A refused write creates nothing and costs nothing.
    expect((await put(CAPPED, 'c0', [1, 2])).statusCode).toBe(400);
    expect((await put(CAPPED, 'c1')).statusCode).toBe(200);
    expect((await put(CAPPED, 'c2')).statusCode).toBe(200);
    expect((await put(CAPPED, 'c1', { v: 2 })).statusCode).toBe(200);
    const patched = await node.app.inject({ method: 'PATCH', url: '/v1/docs/q/c2', payload: { w: 1 }, headers: bearer(CAPPED) });
    expect(patched.statusCode).toBe(200);
    const third = await put(CAPPED, 'c3');
    expect(third.statusCode).toBe(403);
    expect(third.json()).toMatchObject({ error: 'quota_exceeded' });
    const ops = await node.app.inject({
      method: 'POST', url: '/v1/docs/q/c4/ops', headers: bearer(CAPPED),
      payload: { ops: [{ op: 'increment', path: ['n'], by: 1 }] },
    });
    expect(ops.statusCode).toBe(403);
    // Deleting does not give a creation back.
    expect((await node.app.inject({ method: 'DELETE', url: '/v1/docs/q/c1', headers: bearer(CAPPED) })).statusCode).toBe(200);
    expect((await put(CAPPED, 'c5')).statusCode).toBe(403);
    expect((await put(FREE, 'c3')).statusCode).toBe(200);
    const scrape = await node.metrics.scrape();
    expect(metricValue(scrape, 'meridian_requests_refused_total{reason="document_quota",region="test"}')).toBe(3);
  });

  test('quotas are configured per token and off by default', () => {
    const base = { region: 'a', listen: { port: 0 }, dataDir: '.', secret: 'secret-secret' };
    const token = { token: 't'.repeat(16), scope: 'read-write' };
    const other = { ...token, token: 'u'.repeat(16) };
    const parsed = parseConfig({ ...base, auth: { tokens: [{ ...token, quota: { writesPerSecond: 5 } }, other] } }, '/tmp');
    expect(parsed.auth.tokens[0]?.quota).toEqual({ writesPerSecond: 5, writeBurst: 5, maxDocuments: null });
    expect(parsed.auth.tokens[1]?.quota).toBeUndefined();
    expect(() => parseConfig({ ...base, auth: { tokens: [{ ...token, quota: { writesPerSecond: 0 } }] } }, '/tmp')).toThrow(
      /auth\.tokens\[0\]\.quota\.writesPerSecond/,
    );
  });
});

describe('region status needs a region-wide token', () => {
  const STATUS = 'status-token-0123456789abcdef';
  const SCOPED = 'scoped-token-0123456789abcdef';
  const READ_ALL = 'readall-token-0123456789abcdef';
  let node: ApiNode;

  beforeAll(async () => {
    node = await startApiNode({
      tokens: [
        { token: STATUS, scope: 'status', name: 'monitor' },
        { token: SCOPED, scope: 'read-write', collections: ['notes'], name: 'scoped' },
        { token: READ_ALL, scope: 'read', name: 'reader' },
      ],
      protectMetrics: true,
    });
  });
  afterAll(async () => {
    await node.close();
  });

  const get = (url: string, token?: string) => node.app.inject({ url, ...(token === undefined ? {} : { headers: bearer(token) }) });

  test('/v1/sync refuses a collection-scoped token and serves status and every-collection tokens', async () => {
    const scoped = await get('/v1/sync', SCOPED);
    expect(scoped.statusCode).toBe(403);
    expect(scoped.json()).toMatchObject({ error: 'forbidden' });
    expect(scoped.body).not.toContain(node.documents.writer);
    expect((await get('/v1/sync', STATUS)).statusCode).toBe(200);
    expect((await get('/v1/sync', READ_ALL)).statusCode).toBe(200);
  });

  test('a status token reads /v1/sync and /metrics and nothing else', async () => {
    expect((await get('/metrics', STATUS)).statusCode).toBe(200);
    for (const url of ['/v1/docs/notes/a', '/v1/docs/notes', '/v1/docs/notes/a/sync', '/v1/docs/notes/a/yjs']) {
      expect((await get(url, STATUS)).statusCode, url).toBe(403);
    }
    const write = await node.app.inject({ method: 'PUT', url: '/v1/docs/notes/a', payload: { a: 1 }, headers: bearer(STATUS) });
    expect(write.statusCode).toBe(403);
  });

  test('document sync stays collection-scoped, health stays public', async () => {
    expect((await get('/v1/docs/notes/a/sync', SCOPED)).statusCode).toBe(200);
    expect((await get('/v1/docs/other/a/sync', SCOPED)).statusCode).toBe(403);
    expect((await get('/healthz')).statusCode).toBe(200);
    expect((await get('/readyz')).statusCode).toBe(200);
  });
});

describe('log flooding', () => {
  test('the limiter logs the first event of a source, then one line a minute with the count left out', () => {
    const lines: string[] = [];
    let now = 0;
    const suppressed: string[] = [];
    const limiter = createLogLimiter({
      logger: captureLogger(lines), intervalMs: 60_000, now: () => now, onSuppressed: (e) => suppressed.push(e),
    });
    for (let i = 0; i < 100; i++) limiter.warn('refused', '10.0.0.1', { i }, 'refused');
    limiter.warn('refused', '10.0.0.2', {}, 'refused');
    expect(lines).toHaveLength(2);
    expect(suppressed).toHaveLength(99);
    now = 60_000;
    limiter.warn('refused', '10.0.0.1', {}, 'refused');
    expect(lines).toHaveLength(3);
    expect(JSON.parse(lines[2] ?? '{}')).toMatchObject({ source: '10.0.0.1', suppressed: 99, event: 'refused' });
  });

  test('the limiter forgets the stalest sources beyond maxSources', () => {
    const lines: string[] = [];
    const limiter = createLogLimiter({ logger: captureLogger(lines), maxSources: 2, now: () => 0 });
    for (const source of ['a', 'b', 'c', 'a']) limiter.warn('e', source, {}, 'm');
    // 'a' was forgotten when 'c' came, so it is logged again; memory stays at two sources.
    expect(lines).toHaveLength(4);
  });

  test('unauthenticated replication upgrades write one warning per source, the rest counted', async () => {
    const lines: string[] = [];
    const dir = mkdtempSync(path.join(tmpdir(), 'meridian-flood-'));
    const config = parseConfig(
      { region: 'eu-west', listen: { port: 0 }, dataDir: dir, secret: 'flood-secret-0123456789', peers: [{ region: 'ap-south', url: 'http://127.0.0.1:1' }] },
      dir,
    );
    const metrics = createMetrics('eu-west');
    const app = Fastify();
    try {
      await acceptLinks(app, { link: linkOptions(config, null), logger: captureLogger(lines), onLink: () => undefined, onRefused: () => undefined, metrics });
      await app.listen({ host: '127.0.0.1', port: 0 });
      const address = app.server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      const attempts = 60;
      for (let i = 0; i < attempts; i++) {
        const status = await new Promise<number>((resolve, reject) => {
          const ws = new WebSocket(`ws://127.0.0.1:${port}${REPLICATE_PATH}`);
          ws.once('unexpected-response', (_req, res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          });
          ws.once('open', () => reject(new Error('an unauthenticated upgrade was accepted')));
          ws.once('error', reject);
        });
        expect(status).toBe(400);
      }
      const warnings = lines.filter((l) => (JSON.parse(l) as { level: number }).level >= 40);
      expect(warnings).toHaveLength(1);
      const scrape = await metrics.scrape();
      expect(metricValue(scrape, 'meridian_log_suppressed_total{event="replication_link_refused",region="eu-west"}')).toBe(attempts - 1);
    } finally {
      await app.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
