/**
 * Load shedding: at most `max` requests are served at once. Beyond that a
 * request is refused with 429 before its body is read, so a burst (or many
 * requests waiting for a version) cannot exhaust memory. Exempt routes such
 * as `/healthz` keep answering under load.
 */
import type { FastifyInstance } from 'fastify';
import { MeridianError } from '../errors.js';

export interface ConcurrencyLimit {
  /** Requests being served now. */
  inFlight(): number;
}

export function installConcurrencyLimit(
  app: FastifyInstance,
  max: number,
  exempt: ReadonlySet<string>,
): ConcurrencyLimit {
  let inFlight = 0;
  app.addHook('onRequest', async (request, reply) => {
    const route = request.routeOptions.url;
    if (route !== undefined && exempt.has(route)) return;
    if (inFlight >= max) {
      throw new MeridianError('too_many_requests', `more than ${max} requests at once; retry shortly`);
    }
    inFlight += 1;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      inFlight -= 1;
    };
    // 'finish' when the response was sent, 'close' when the client went away first.
    reply.raw.once('finish', release);
    reply.raw.once('close', release);
  });
  return { inFlight: () => inFlight };
}
