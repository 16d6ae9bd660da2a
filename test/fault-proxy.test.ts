import { afterEach, describe, expect, it } from 'vitest';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomBytes } from 'node:crypto';
import { FaultProxy, parseFault, formatFault, startFaultProxy, type Fault } from '../src/faults/proxy.js';
import { MeridianError } from '../src/errors.js';

/** A loopback server that echoes (or just collects) what it reads. */
interface TestServer {
  port: number;
  received: Buffer[];
  sockets: Set<Socket>;
  receivedBytes(): number;
  close(): Promise<void>;
}

async function startServer(mode: 'echo' | 'sink'): Promise<TestServer> {
  const received: Buffer[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.on('data', (data: Buffer) => {
      received.push(data);
      if (mode === 'echo') socket.write(data);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no address');
  return {
    port: addr.port,
    received,
    sockets,
    receivedBytes: () => received.reduce((n, b) => n + b.length, 0),
    close: async () => {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

/** A connected client that collects everything it reads and the error it died of, if any. */
interface TestClient {
  socket: Socket;
  chunks: Buffer[];
  data(): Buffer;
  error: () => NodeJS.ErrnoException | undefined;
  closed: Promise<void>;
}

async function connectClient(port: number): Promise<TestClient> {
  const socket = connect({ host: '127.0.0.1', port });
  const chunks: Buffer[] = [];
  let error: NodeJS.ErrnoException | undefined;
  socket.on('data', (d: Buffer) => chunks.push(d));
  socket.on('error', (e: NodeJS.ErrnoException) => (error = e));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await once(socket, 'connect');
  return { socket, chunks, data: () => Buffer.concat(chunks), error: () => error, closed };
}

async function waitFor(cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(5);
  }
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

async function setup(
  mode: 'echo' | 'sink' = 'echo',
  random?: () => number,
): Promise<{ server: TestServer; proxy: FaultProxy }> {
  const server = await startServer(mode);
  cleanups.push(() => server.close());
  const proxy = await startFaultProxy({
    upstreamHost: '127.0.0.1', upstreamPort: server.port, name: 'test', ...(random ? { random } : {}),
  });
  cleanups.push(() => proxy.close());
  return { server, proxy };
}

async function client(proxy: FaultProxy): Promise<TestClient> {
  const c = await connectClient(proxy.address().port);
  cleanups.push(() => void c.socket.destroy());
  return c;
}

describe('FaultProxy', () => {
  it('passes bytes through both ways and counts them', async () => {
    const { proxy } = await setup('echo');
    const c = await client(proxy);
    const payload = randomBytes(200_000);
    c.socket.write(payload);
    await waitFor(() => c.data().length === payload.length);
    expect(c.data().equals(payload)).toBe(true);
    expect(proxy.stats()).toMatchObject({
      connectionsTotal: 1,
      connectionsOpen: 1,
      bytesUpstream: payload.length,
      bytesDownstream: payload.length,
      bytesDropped: 0,
      fault: { kind: 'none' },
    });
    c.socket.end();
    await c.closed;
    await waitFor(() => proxy.stats().connectionsOpen === 0);
  });

  it('down resets open connections and refuses new ones until healed', async () => {
    const { server, proxy } = await setup('echo');
    const c = await client(proxy);
    c.socket.write('hi');
    await waitFor(() => c.data().toString() === 'hi');
    proxy.setFault({ kind: 'down' });
    await c.closed;
    expect(c.error()?.code).toBe('ECONNRESET');
    await waitFor(() => server.sockets.size === 0);

    // The RST can beat the client's own connect callback, so watch the raw socket.
    const refused = connect({ host: '127.0.0.1', port: proxy.address().port });
    let refusedError: NodeJS.ErrnoException | undefined;
    refused.on('error', (e: NodeJS.ErrnoException) => (refusedError = e));
    await new Promise<void>((resolve) => refused.once('close', () => resolve()));
    expect(refusedError?.code).toBe('ECONNRESET');
    await waitFor(() => proxy.stats().connectionsOpen === 0);
    expect(proxy.stats()).toMatchObject({ connectionsTotal: 2, bytesUpstream: 2, bytesDownstream: 2 });

    proxy.heal();
    const after = await client(proxy);
    after.socket.write('back');
    await waitFor(() => after.data().toString() === 'back');
  });

  it('blackhole keeps connections open and swallows bytes; heal lets new bytes flow', async () => {
    const { server, proxy } = await setup('echo');
    const c = await client(proxy);
    proxy.setFault({ kind: 'blackhole' });
    c.socket.write('lost-1');
    const fresh = await client(proxy);
    fresh.socket.write('lost-2');
    await sleep(300);
    expect(server.receivedBytes()).toBe(0);
    expect(c.socket.destroyed || fresh.socket.destroyed).toBe(false);
    expect(c.socket.writableLength).toBe(0);
    expect(proxy.stats().bytesDropped).toBe('lost-1'.length + 'lost-2'.length);

    proxy.setFault({ kind: 'none' });
    c.socket.write('found');
    await waitFor(() => c.data().toString() === 'found');
    expect(Buffer.concat(server.received).toString()).toBe('found');
  });

  it('blackhole downstream only swallows the replies', async () => {
    const { server, proxy } = await setup('echo');
    const c = await client(proxy);
    proxy.setFault(parseFault('blackhole downstream'));
    c.socket.write('ping');
    await waitFor(() => server.receivedBytes() === 4);
    await sleep(100);
    expect(c.data().length).toBe(0);
  });

  it('stall applies backpressure to the sender and releases everything in order on heal', async () => {
    const { server, proxy } = await setup('sink');
    const c = await client(proxy);
    proxy.setFault({ kind: 'stall', direction: 'upstream' });
    const payload = Buffer.alloc(16 << 20);
    for (let i = 0; i < payload.length; i += 4) payload.writeUInt32BE(i, i);
    const accepted = c.socket.write(payload);
    await sleep(300);
    expect(accepted).toBe(false);
    expect(server.receivedBytes()).toBe(0);
    // Kernel buffers hold a few MB at most; the rest must still wait in the client.
    expect(c.socket.writableLength).toBeGreaterThan(0);

    proxy.heal();
    await waitFor(() => server.receivedBytes() === payload.length, 5000);
    expect(Buffer.concat(server.received).equals(payload)).toBe(true);
    expect(c.socket.writableLength).toBe(0);
  });

  it('latency delays each direction and keeps byte order under jitter', async () => {
    const { proxy } = await setup('echo');
    const c = await client(proxy);
    proxy.setFault(parseFault('latency 100ms'));
    const t0 = performance.now();
    c.socket.write('rtt');
    await waitFor(() => c.data().length === 3);
    const rtt = performance.now() - t0;
    expect(rtt).toBeGreaterThanOrEqual(199);
    expect(rtt).toBeLessThan(2000);

    proxy.setFault({ kind: 'latency', ms: 20, jitterMs: 19 });
    c.chunks.length = 0;
    let expected = '';
    for (let i = 0; i < 200; i++) {
      const line = `${String(i).padStart(4, '0')}\n`;
      expected += line;
      c.socket.write(line);
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    await waitFor(() => c.data().length === expected.length);
    expect(c.data().toString()).toBe(expected);
  });

  it('forwards a FIN only after the bytes still delayed before it', async () => {
    const { proxy } = await setup('echo');
    const c = await client(proxy);
    proxy.setFault({ kind: 'latency', ms: 50 });
    c.socket.end('last words');
    await c.closed;
    expect(c.error()).toBeUndefined();
    expect(c.data().toString()).toBe('last words');
    await waitFor(() => proxy.stats().connectionsOpen === 0);
  });

  it('slicer delivers a 64 KiB payload intact and in order, in many pieces', async () => {
    const { proxy } = await setup('echo');
    const c = await client(proxy);
    proxy.setFault(parseFault('slicer 16'));
    const payload = randomBytes(64 * 1024);
    c.socket.write(payload);
    await waitFor(() => c.data().length === payload.length, 5000);
    expect(c.data().equals(payload)).toBe(true);

    const sink = await setup('sink');
    const s = await client(sink.proxy);
    sink.proxy.setFault({ kind: 'slicer', maxBytes: 1024, delayMs: 1, direction: 'upstream' });
    s.socket.write(payload);
    await waitFor(() => sink.server.receivedBytes() === payload.length, 5000);
    expect(Buffer.concat(sink.server.received).equals(payload)).toBe(true);
    expect(sink.server.received.length).toBeGreaterThan(16);
  });

  it('bandwidth limits the byte rate', async () => {
    const { server, proxy } = await setup('sink');
    const c = await client(proxy);
    proxy.setFault(parseFault('bandwidth 100kb/s upstream'));
    const t0 = performance.now();
    c.socket.write(randomBytes(25_000));
    await waitFor(() => server.receivedBytes() === 25_000);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(150);
  });

  /** Round-trip times of `count` one-byte pings, one after the other. */
  async function pingTimes(c: TestClient, count: number): Promise<number[]> {
    const times: number[] = [];
    for (let i = 0; i < count; i++) {
      const before = c.data().length;
      const t0 = performance.now();
      c.socket.write('p');
      await waitFor(() => c.data().length === before + 1, 10_000);
      times.push(performance.now() - t0);
    }
    return times;
  }

  it('loss 0% holds no chunk back, even when every random draw would count as lost', async () => {
    // random() = 0 is below any loss threshold above zero: this is the boundary.
    const { proxy } = await setup('echo', () => 0);
    const c = await client(proxy);
    // 300 ms each way makes the retransmission timeout 600 ms: a lost chunk would add at least that.
    proxy.setFault(parseFault('latency 300ms, loss 0%'));
    for (const rtt of await pingTimes(c, 3)) {
      expect(rtt).toBeGreaterThanOrEqual(599);
      expect(rtt).toBeLessThan(1200);
    }
  });

  it('loss holds chunks for a retransmission timeout', async () => {
    const { proxy } = await setup('echo', () => 0);
    const c = await client(proxy);
    proxy.setFault(parseFault('loss 1%'));
    // Every draw is "lost": each direction waits the minimum RTO of 200 ms.
    for (const rtt of await pingTimes(c, 2)) expect(rtt).toBeGreaterThanOrEqual(399);
    proxy.setFault(parseFault('loss 1% downstream'));
    for (const rtt of await pingTimes(c, 2)) expect(rtt).toBeGreaterThanOrEqual(199);
  });

  it('loss with jitter delivers every byte in order', async () => {
    const { proxy } = await setup('echo');
    const c = await client(proxy);
    proxy.setFault(parseFault('latency 5ms ±5ms, loss 20%'));
    let expected = '';
    for (let i = 0; i < 200; i++) {
      const line = `${String(i).padStart(4, '0')}\n`;
      expected += line;
      c.socket.write(line);
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    await waitFor(() => c.data().length === expected.length, 20_000);
    expect(c.data().toString()).toBe(expected);
  });

  it('a wan fault honours latency and bandwidth together', async () => {
    const { server, proxy } = await setup('sink');
    const c = await client(proxy);
    proxy.setFault(parseFault('latency 200ms, bandwidth 100kb/s upstream'));
    const t0 = performance.now();
    c.socket.write(randomBytes(25_000));
    await waitFor(() => server.receivedBytes() > 0);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(199);
    await waitFor(() => server.receivedBytes() === 25_000);
    // 200 ms of latency, then 25 kB at 100 kB/s (the first slice leaves at once).
    expect(performance.now() - t0).toBeGreaterThanOrEqual(200 + 150);
  });

  it('resets the client when the upstream refuses the connection', async () => {
    const { server, proxy } = await setup('echo');
    await server.close();
    const c = await client(proxy);
    await c.closed;
    expect(c.error()?.code).toBe('ECONNRESET');
  });

  it('close() stops listening and destroys every socket it opened', async () => {
    const tcpHandles = (): number =>
      process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap' || r === 'TCPServerWrap').length;
    const baseline = tcpHandles();
    const server = await startServer('echo');
    const proxy = await startFaultProxy({ upstreamHost: '127.0.0.1', upstreamPort: server.port });
    const c = await connectClient(proxy.address().port);
    proxy.setFault({ kind: 'latency', ms: 5_000 });
    c.socket.write('pending');
    await waitFor(() => server.sockets.size === 1);

    await proxy.close();
    expect(proxy.listening).toBe(false);
    expect(proxy.stats().connectionsOpen).toBe(0);
    await c.closed;
    await waitFor(() => server.sockets.size === 0);
    await server.close();
    await waitFor(() => tcpHandles() === baseline);
  });
});

describe('parseFault', () => {
  const accepted: [string, Fault][] = [
    ['heal', { kind: 'none' }],
    ['none', { kind: 'none' }],
    ['down', { kind: 'down' }],
    ['blackhole', { kind: 'blackhole' }],
    ['blackhole upstream', { kind: 'blackhole', direction: 'upstream' }],
    ['stall', { kind: 'stall' }],
    ['stall downstream', { kind: 'stall', direction: 'downstream' }],
    ['latency 80ms', { kind: 'latency', ms: 80 }],
    ['latency 80ms ±20ms', { kind: 'latency', ms: 80, jitterMs: 20 }],
    ['latency 80ms +-20ms', { kind: 'latency', ms: 80, jitterMs: 20 }],
    ['latency 80ms ~20ms both', { kind: 'latency', ms: 80, jitterMs: 20, direction: 'both' }],
    ['  LATENCY 1s±5ms  ', { kind: 'latency', ms: 1000, jitterMs: 5 }],
    ['bandwidth 64kb/s', { kind: 'bandwidth', bytesPerSecond: 64_000 }],
    ['bandwidth 1mib/s downstream', { kind: 'bandwidth', bytesPerSecond: 1_048_576, direction: 'downstream' }],
    ['slicer 16', { kind: 'slicer', maxBytes: 16 }],
    ['slicer 16 5ms upstream', { kind: 'slicer', maxBytes: 16, delayMs: 5, direction: 'upstream' }],
    ['loss 5%', { kind: 'loss', percent: 5 }],
    ['loss 0.5% upstream', { kind: 'loss', percent: 0.5, direction: 'upstream' }],
    [
      'latency 80ms ±20ms, loss 1%, bandwidth 1mb/s upstream',
      { kind: 'wan', latencyMs: 80, jitterMs: 20, lossPercent: 1, bytesPerSecond: 1_000_000, direction: 'upstream' },
    ],
    ['loss 2%,latency 50ms', { kind: 'wan', latencyMs: 50, lossPercent: 2 }],
    ['bandwidth 64kb/s, loss 0%', { kind: 'wan', latencyMs: 0, lossPercent: 0, bytesPerSecond: 64_000 }],
  ];
  it.each(accepted)('parses %j', (text, fault) => {
    expect(parseFault(text)).toEqual(fault);
    expect(parseFault(formatFault(fault))).toEqual(
      fault.kind !== 'none' && 'direction' in fault && fault.direction === 'both'
        ? { ...fault, direction: undefined }
        : fault,
    );
  });

  const rejected = [
    '',
    'explode',
    'down upstream',
    'heal now',
    'blackhole sideways',
    'latency',
    'latency 80',
    'latency fast',
    'latency 80ms 20ms',
    'latency 80ms ±',
    'bandwidth 64kb',
    'bandwidth 64 kb/s',
    'bandwidth 0b/s',
    'slicer',
    'slicer 0',
    'slicer -3',
    'slicer 16 5',
    'stall upstream downstream',
    'loss',
    'loss 5',
    'loss 101%',
    'loss -1%',
    'loss 5% 6%',
    'latency 80ms upstream, loss 1%',
    'latency 80ms, latency 90ms',
    'latency 80ms, blackhole',
    'latency 80ms,',
  ];
  it.each(rejected)('rejects %j with a bad_request error', (text) => {
    expect(() => parseFault(text)).toThrow(MeridianError);
    try {
      parseFault(text);
    } catch (err) {
      expect((err as MeridianError).code).toBe('bad_request');
      expect((err as MeridianError).message.length).toBeGreaterThan(10);
    }
  });

  it('setFault rejects invalid numbers', async () => {
    const proxy = new FaultProxy({ upstreamHost: '127.0.0.1', upstreamPort: 1 });
    expect(() => proxy.setFault({ kind: 'latency', ms: -1 })).toThrow(MeridianError);
    expect(() => proxy.setFault({ kind: 'bandwidth', bytesPerSecond: Number.NaN })).toThrow(MeridianError);
    expect(() => proxy.setFault({ kind: 'loss', percent: 150 })).toThrow(MeridianError);
    expect(() => proxy.setFault({ kind: 'wan', latencyMs: 10, bytesPerSecond: 0 })).toThrow(MeridianError);
    expect(proxy.currentFault()).toEqual({ kind: 'none' });
    await proxy.close();
  });
});
