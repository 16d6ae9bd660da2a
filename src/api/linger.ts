/**
 * Lingering close for requests answered before their body arrived in full
 * (413 for a body over the limit, 415, a body that does not parse). Fastify
 * closes such a connection after the answer, since the rest of the body is
 * still on its way. A socket closed with unread bytes is reset by the
 * kernel, and a client that is still writing its body then gets EPIPE or
 * ECONNRESET in place of the answer: a clear 413 became a network error for
 * up to two oversized uploads in three. So, as HTTP servers do, the answer
 * goes out and what the client still sends is read and dropped until it is
 * done, for at most {@link LINGER_MS} and {@link LINGER_BYTES}; then the
 * connection is closed.
 */
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';

/** Longest wait for a client to stop sending after its answer, ms. */
const LINGER_MS = 2000;
/** Most bytes read and dropped after the answer. */
const LINGER_BYTES = 16 * 1024 * 1024;

const lingering = new WeakSet<Socket>();

export function installLingeringClose(app: FastifyInstance): void {
  // A callback hook, not an async one: it runs on every answer, and almost always does nothing.
  app.addHook('onSend', (request, reply, payload, done) => {
    // A body cut off for arriving too slowly (408) gets no more time.
    if (!request.raw.complete && reply.statusCode !== 408 && /close/i.test(String(reply.getHeader('connection') ?? ''))) {
      linger(request.raw.socket);
    }
    done(null, payload);
  });
}

/**
 * Replaces the close Node's HTTP server makes once the answer is written
 * (`destroySoon`: shut the write side, destroy when flushed) with one that
 * first reads until the client has sent everything. The write side stays
 * open meanwhile: a Node client that sees the server's FIN while it writes
 * fails its request with EPIPE.
 */
function linger(socket: Socket | undefined): void {
  // Requests injected in-process (tests, tools) have a stand-in socket without it.
  if (typeof socket?.destroySoon !== 'function' || lingering.has(socket)) return;
  lingering.add(socket);
  const close = socket.destroySoon.bind(socket);
  socket.destroySoon = function lingeringClose(this: Socket): void {
    let dropped = 0;
    let closed = false;
    const done = (): void => {
      if (closed) return;
      closed = true;
      clearTimeout(timer);
      this.removeListener('data', onData);
      close();
    };
    const onData = (chunk: Buffer): void => {
      dropped += chunk.length;
      if (dropped > LINGER_BYTES) done();
    };
    const timer = setTimeout(done, LINGER_MS);
    timer.unref();
    this.on('data', onData);
    this.once('end', done);
    this.once('close', () => clearTimeout(timer));
    this.resume();
  };
}
