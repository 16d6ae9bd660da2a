/**
 * Load shedding: at most `max` requests are served at once, and at most
 * `maxPerCaller` for any one caller (a token, or a client address when the
 * API is open), so one caller cannot take every slot and starve the others.
 * Beyond either cap a request is refused with 429 before its body is read.
 * Exempt routes (`/healthz`, `/readyz`, `/metrics`) neither count nor are
 * refused, so probes and scrapes answer under any load.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { MeridianError } from '../errors.js';
import type { Principal, Principals } from './auth.js';
import type { RefusalReason } from './refusals.js';

export interface ConcurrencyLimit {
  /** Requests being served now. */
  inFlight(): number;
}

export interface ConcurrencyOptions {
  max: number;
  maxPerCaller: number;
  exempt: ReadonlySet<string>;
  callerOf: (request: FastifyRequest) => string;
  onRefused: (request: FastifyRequest, reason: RefusalReason) => void;
}

/**
 * Who a request comes from, as per-caller limits count it: its token when it
 * carried one, else its client address. Behind a proxy every client shares
 * the proxy's address; configure tokens there.
 */
export function callerOf(principals: Principals, request: FastifyRequest): string {
  return callerKey(principals.principalOf(request), request.ip);
}

/** The caller of a request by `principal` (null when no token was needed) from `ip`. */
export function callerKey(principal: Principal | null, ip: string): string {
  return principal === null ? `address ${ip}` : `token ${principal.id} (${principal.name})`;
}

/** Installs the caps on `app`; install it after access control, which tells who the caller is. */
export function installConcurrencyLimit(app: FastifyInstance, o: ConcurrencyOptions): ConcurrencyLimit {
  let inFlight = 0;
  const perCaller = new Map<string, number>();
  app.addHook('onRequest', async (request, reply) => {
    const route = request.routeOptions.url;
    if (route !== undefined && o.exempt.has(route)) return;
    const caller = o.callerOf(request);
    const mine = perCaller.get(caller) ?? 0;
    if (mine >= o.maxPerCaller) {
      o.onRefused(request, 'caller_busy');
      throw new MeridianError('too_many_requests', `this caller has ${o.maxPerCaller} requests in flight; retry shortly`);
    }
    if (inFlight >= o.max) {
      o.onRefused(request, 'busy');
      throw new MeridianError('too_many_requests', `more than ${o.max} requests at once; retry shortly`);
    }
    inFlight += 1;
    perCaller.set(caller, mine + 1);
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      inFlight -= 1;
      const left = (perCaller.get(caller) ?? 1) - 1;
      if (left > 0) perCaller.set(caller, left);
      else perCaller.delete(caller);
    };
    // 'finish' when the response was sent, 'close' when the client went away first.
    reply.raw.once('finish', release);
    reply.raw.once('close', release);
  });
  return { inFlight: () => inFlight };
}
