/**
 * What the API does when a load or quota limit refuses a request, besides
 * answering it: count it (`meridian_requests_refused_total{reason}`), log it
 * once per caller and reason per interval (a caller that keeps hitting a
 * limit must not flood the log), and tell the caller when to come back
 * (`retry-after`, whole seconds).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { LogLimiter } from '../log-limiter.js';
import type { Metrics } from '../metrics.js';

/** Why a request was refused; the label of the refusal metric. */
export type RefusalReason = 'busy' | 'caller_busy' | 'body_timeout' | 'write_rate' | 'document_quota' | 'waiters' | 'caller_waiters';

export interface Refusals {
  /** Records a refusal of `request`; `retryAfterSeconds` becomes its `retry-after` header. */
  record(request: FastifyRequest, reason: RefusalReason, retryAfterSeconds?: number): void;
}

export interface RefusalDeps {
  metrics: Metrics;
  limiter: LogLimiter;
  /** Who the caller is, as limits count it (see `callerOf` in limits.ts). */
  callerOf: (request: FastifyRequest) => string;
}

/**
 * Installs the `retry-after` header on refused requests of `app` and returns
 * the recorder. The header is set when the response is sent, after the error
 * handler, so a computed wait replaces its generic one.
 */
export function installRefusals(app: FastifyInstance, deps: RefusalDeps): Refusals {
  const retryAfter = new WeakMap<FastifyRequest, number>();
  app.addHook('onSend', async (request, reply, payload) => {
    const seconds = retryAfter.get(request);
    if (seconds !== undefined) void reply.header('retry-after', String(seconds));
    return payload;
  });
  return {
    record(request, reason, retryAfterSeconds) {
      deps.metrics.requestsRefused.inc({ reason });
      const caller = deps.callerOf(request);
      const route = request.routeOptions.url ?? 'unmatched';
      deps.limiter.warn(`refused_${reason}`, caller, { reason, route }, 'request refused by a limit');
      if (retryAfterSeconds !== undefined) retryAfter.set(request, Math.max(1, Math.ceil(retryAfterSeconds)));
    },
  };
}
