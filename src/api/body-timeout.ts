/**
 * A deadline for request bodies. A client that declares a body and then sends
 * it a byte at a time holds a concurrency slot (and memory) for as long as
 * the server waits; Node's own request timeout is long (it must cover slow
 * networks for the whole request) and is checked only every few seconds. So
 * a body that has not arrived in full `timeoutMs` after the request began is
 * cut off: the request gets 408 `request_timeout` and its connection is closed.
 */
import { PassThrough } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { MeridianError } from '../errors.js';

/** Whether the request declares a body that a content parser will read. */
function declaresBody(request: FastifyRequest): boolean {
  if (request.method === 'GET' || request.method === 'HEAD') return false;
  const length = request.headers['content-length'];
  return request.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * Whether the whole declared body is already here. It usually arrives with
 * the headers, and is then buffered in the request before the request is
 * marked complete: guarding it would cost a stream and a timer per request.
 */
function bodyArrived(request: FastifyRequest): boolean {
  if (request.raw.complete) return true;
  const length = request.headers['content-length'];
  return request.headers['transfer-encoding'] === undefined && length !== undefined && request.raw.readableLength >= Number(length);
}

/** Installs the deadline on every route of `app`; `onTimeout` is told of each body cut off. */
export function installBodyTimeout(
  app: FastifyInstance,
  timeoutMs: number,
  onTimeout: (request: FastifyRequest) => void,
): void {
  app.addHook('preParsing', async (request, reply, payload) => {
    if (!declaresBody(request) || bodyArrived(request)) return payload;
    const guarded = new PassThrough();
    // Not pipeline(): it would destroy the request, and with it the socket the 408 goes out on.
    payload.pipe(guarded);
    payload.once('error', (err) => guarded.destroy(err));
    const cutOff = (): void => {
      payload.unpipe(guarded);
      // Nobody reads this body (the request was answered without it): nothing to tell.
      if (guarded.listenerCount('error') === 0) {
        guarded.destroy();
        return;
      }
      onTimeout(request);
      // The rest of the body is still on its way; the connection cannot carry another request.
      void reply.header('connection', 'close');
      guarded.destroy(new MeridianError('request_timeout', `the request body did not arrive within ${timeoutMs} ms`));
    };
    const timer = setTimeout(cutOff, Math.max(0, timeoutMs - reply.elapsedTime));
    const stop = (): void => clearTimeout(timer);
    guarded.once('end', stop);
    guarded.once('close', stop);
    reply.raw.once('close', stop);
    return guarded;
  });
}
