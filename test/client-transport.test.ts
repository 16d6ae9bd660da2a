import { createServer, type Server, type Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exchange, probeRtt } from '../src/client/transport.js';

// A full collection on demand, as a loaded client process would run them while it waits.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** A region that takes the connection and the request, and never answers. */
let silent: Server;
let url: string;
const sockets = new Set<Socket>();

beforeAll(async () => {
  silent = createServer((socket) => {
    sockets.add(socket);
    socket.on('data', () => undefined);
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const address = silent.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  url = `http://127.0.0.1:${address.port}`;
});

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise<void>((resolve) => silent.close(() => resolve()));
});

/** Runs `work`, collecting garbage every 20 ms meanwhile. */
async function underCollections<T>(work: Promise<T>): Promise<T> {
  const collecting = setInterval(gc, 20);
  try {
    return await work;
  } finally {
    clearInterval(collecting);
  }
}

describe('client transport deadlines', () => {
  it('gives up on a region that never answers within the timeout, whatever the collector does', async () => {
    const closed = new AbortController().signal;
    const started = performance.now();
    const results = await underCollections(Promise.all(Array.from({ length: 8 }, () =>
      exchange(fetch, url, { method: 'POST', path: '/v1/docs/c/d/ops', body: { ops: [] }, headers: {}, timeoutMs: 300 }, closed))));
    for (const r of results) expect(r).toMatchObject({ kind: 'lost', reason: 'timeout' });
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it('gives up a probe of a region that never answers within the timeout', async () => {
    const closed = new AbortController().signal;
    const started = performance.now();
    await expect(underCollections(probeRtt(fetch, url, 300, closed))).rejects.toThrow();
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it('stops at once when the client is closed', async () => {
    const client = new AbortController();
    const pending = exchange(fetch, url, { method: 'GET', path: '/v1/docs/c/d', headers: {}, timeoutMs: 60_000 }, client.signal);
    setTimeout(() => client.abort(new Error('client closed')), 50);
    const started = performance.now();
    expect(await pending).toMatchObject({ kind: 'lost', reason: 'closed' });
    expect(performance.now() - started).toBeLessThan(5000);
  });
});
