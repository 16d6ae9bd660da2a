/**
 * Events larger than a stream's bound go out alone, and a region's streams
 * hold at most so many bytes of them unsent in all: one change to a large
 * document reaches every feed of its collection at once, and feeds that
 * never read would each hold a copy. Real HTTP responses carry the streams.
 */
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import { afterEach, describe, expect, test } from 'vitest';
import { RenderGate } from '../src/api/feed-resume.js';
import { OversizedSends, SseStream } from '../src/api/feed-stream.js';

let server: Server | null = null;
const responses: IncomingMessage[] = [];

afterEach(async () => {
  for (const res of responses.splice(0)) res.destroy();
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined));
  server = null;
});

/** `n` streams on real responses whose clients do not read until told to (`res.resume()`). */
async function streams(n: number, oversized: OversizedSends): Promise<{ streams: SseStream[]; clients: IncomingMessage[] }> {
  const made: SseStream[] = [];
  const arrived: ((s: SseStream) => void)[] = [];
  server = createServer((_req, res: ServerResponse) => {
    const stream = new SseStream(res, { queueBytes: 64 * 1024, heartbeatMs: 60_000, oversized });
    made.push(stream);
    arrived.shift()?.(stream);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  const clients: IncomingMessage[] = [];
  for (let i = 0; i < n; i++) {
    const opened = new Promise<SseStream>((resolve) => arrived.push(resolve));
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      httpRequest({ host: '127.0.0.1', port, path: '/feed' }, resolve).on('error', reject).end();
    });
    res.pause();
    responses.push(res);
    clients.push(res);
    await opened;
  }
  return { streams: made, clients };
}

const big = (n: number) => ({ event: 'change', data: { value: 'x'.repeat(n) } });

describe('events larger than a stream\'s bound', () => {
  test('take room among the region\'s oversized sends while unsent; another is told to try again only once the first is handed on', async () => {
    // 16 MB events: more than loopback socket buffers take from a client that does not read.
    const oversized = new OversizedSends(24 * 1024 * 1024);
    const { streams: [a, b], clients: [readerA] } = await streams(2, oversized);
    expect(a!.send(big(16 * 1024 * 1024))).toBe(true);
    expect(b!.send(big(16 * 1024 * 1024))).toBe(false);
    // Nothing of b's own waits, yet it is not told to send again while there is no room (each try renders its
    // event anew: a whole document), however many polls pass.
    let drained = false;
    const waiting = b!.drained().then(() => (drained = true));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(drained).toBe(false);
    // Once a's client reads, its event is handed on: b is told, and its event fits.
    readerA!.resume();
    await waiting;
    expect(b!.send(big(16 * 1024 * 1024))).toBe(true);
  });

  test('events within the bound may wait behind one, up to the bound; another larger one may not', async () => {
    const oversized = new OversizedSends(64 * 1024 * 1024);
    const { streams: [a], clients: [reader] } = await streams(1, oversized);
    // Its client does not read: the 16 MB event waits, and what follows it (a large document's change is followed
    // at once by the changes committed while it was rendered) waits behind it, up to the 64 KiB bound.
    expect(a!.send(big(16 * 1024 * 1024))).toBe(true);
    let taken = 0;
    while (taken < 100 && a!.send(big(10 * 1024))) taken++;
    expect(taken).toBeGreaterThanOrEqual(5);
    expect(taken).toBeLessThanOrEqual(6);
    expect(a!.send(big(16 * 1024 * 1024))).toBe(false);
    // Once read, it takes events again.
    reader!.resume();
    await a!.drained();
    expect(a!.send(big(10 * 1024))).toBe(true);
  });

  test('one always goes out alone, however large, and small events are not counted', async () => {
    const oversized = new OversizedSends(1024 * 1024);
    const { streams: [a, b] } = await streams(2, oversized);
    expect(a!.send(big(4 * 1024 * 1024))).toBe(true);
    expect(b!.send({ event: 'change', data: { value: 'small' } })).toBe(true);
    expect(b!.send(big(128 * 1024))).toBe(false);
  });
});

describe('renders of slow documents across a region\'s resumes', () => {
  test('are spaced by as long as the last one took, other work running between them', async () => {
    const renders = new RenderGate();
    /** A render that keeps the thread 20 ms, as a large document's does. */
    const slow = (): number => {
      const started = performance.now();
      while (performance.now() - started < 20);
      return performance.now();
    };
    // The first render of a document is not known to be slow; the next ones are.
    renders.render(slow);
    const ran: string[] = [];
    const resumes = Array.from({ length: 5 }, async (_, i) => {
      await renders.turn();
      renders.render(slow);
      ran.push(`render ${i}`);
      // Work that arrives meanwhile (a request, a heartbeat) gets its turn before the next render.
      setImmediate(() => ran.push(`other after ${i}`));
    });
    await Promise.all(resumes);
    await new Promise((resolve) => setImmediate(resolve));
    const rendered = ran.filter((r) => r.startsWith('render'));
    expect(rendered).toHaveLength(5);
    for (let i = 0; i < rendered.length - 1; i++) {
      const at = ran.indexOf(rendered[i]!);
      const next = ran.indexOf(rendered[i + 1]!);
      expect(ran.slice(at + 1, next)).toContain(`other after ${rendered[i]!.split(' ')[1]}`);
    }
    // A fast render is not waited for (a collection pause on a loaded host can make one of them slow: ten tries).
    for (let i = 0; i < 10; i++) {
      renders.render(() => 0);
      if (!renders.waits()) break;
    }
    expect(renders.waits()).toBe(false);
  });
});
