/**
 * Liveness, readiness and metrics. `/healthz` answers while the process
 * serves at all. `/readyz` is 503 while a freshly started region still holds
 * writes until it hears from (or, with an empty data directory, catches up
 * with) a peer, while its store refuses commits or a commit has waited for
 * it over 2 s, and once shutdown begins,
 * so that a load balancer or the client sends traffic elsewhere. An isolated region (no peer up) is still
 * ready: it keeps serving reads and writes.
 */
import type { FastifyInstance } from 'fastify';
import type { RegionId } from '../ids.js';
import type { Metrics } from '../metrics.js';
import { isolatedOf, type ReplicationView } from '../replication/types.js';
import { Health, MetricsText, NotReady, Ready } from './responses.js';
import { COMMIT_STALL_MS } from '../docs/types.js';

const tags = ['health'];

export interface HealthRouteDeps {
  region: RegionId;
  replication: ReplicationView;
  metrics: Metrics;
  /** True once the node has begun shutting down. */
  shuttingDown: () => boolean;
  /** False while local writes are held after start. */
  writesOpen: () => boolean;
  /** Why the store refused the last commit, while that counts (see Documents.storageFault). */
  storageFault: () => string | null;
  /** How long the commit on its way to the store has waited, ms (see Documents.commitWaitingMs). */
  commitWaitingMs: () => number;
}

/**
 * SQLite's own texts for what stops commits; anything else (a constraint
 * naming columns, a thread's exit) stays in the log: `/readyz` needs no token.
 */
const STORAGE_FAULTS = [
  'database is locked', 'database or disk is full', 'disk I/O error', 'database disk image is malformed',
  'attempt to write a readonly database', 'unable to open database file',
];

function publicFault(message: string): string {
  return STORAGE_FAULTS.find((known) => message.startsWith(known)) ?? 'see the region\'s log';
}

/** Registers `/healthz`, `/readyz` and `/metrics`. */
export async function healthRoutes(app: FastifyInstance, deps: HealthRouteDeps): Promise<void> {
  const { region, replication, metrics, shuttingDown, writesOpen, storageFault, commitWaitingMs } = deps;

  app.get('/healthz', {
    schema: { summary: 'Liveness: 200 while the process serves (never needs a token)', tags, response: { 200: Health } },
  }, async () => ({ status: 'ok', region }));

  app.get('/readyz', {
    schema: {
      summary: `Readiness: 503 while shutting down, holding writes after start, while the store refuses commits, or while a commit has waited over ${COMMIT_STALL_MS / 1000} s for it`,
      tags, response: { 200: Ready, 503: NotReady },
    },
  }, async (_request, reply) => {
    if (shuttingDown()) return reply.code(503).send({ ready: false, region, reason: 'shutting down' });
    if (!writesOpen()) {
      return reply.code(503).send({ ready: false, region, reason: 'holding writes until a peer answers' });
    }
    const fault = storageFault();
    if (fault !== null) {
      return reply.code(503).send({ ready: false, region, reason: `storage failing, writes refused: ${publicFault(fault)}` });
    }
    const waiting = commitWaitingMs();
    if (waiting > COMMIT_STALL_MS) {
      return reply.code(503).send({ ready: false, region, reason: `storage stalled: a commit has waited ${Math.round(waiting / 1000)} s for the disk` });
    }
    // The links alone: a probe, never capped, must not make the region compute digests.
    return { ready: true, region, isolated: isolatedOf(replication.peerStatuses()) };
  });

  app.get('/metrics', {
    schema: { summary: 'Prometheus metrics', tags, produces: ['text/plain'], response: { 200: MetricsText } },
  }, async (_request, reply) => {
    const text = await metrics.scrape();
    return reply.type(metrics.contentType).send(text);
  });
}
