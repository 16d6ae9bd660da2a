/**
 * Liveness, readiness and metrics. `/healthz` answers while the process
 * serves at all; `/readyz` turns 503 once shutdown begins, so a load balancer
 * stops sending traffic before connections close. An isolated region (no peer
 * up) is still ready: it keeps serving reads and writes.
 */
import type { FastifyInstance } from 'fastify';
import type { RegionId } from '../ids.js';
import type { Metrics } from '../metrics.js';
import type { ReplicationView } from '../replication/types.js';

export interface HealthRouteDeps {
  region: RegionId;
  replication: ReplicationView;
  metrics: Metrics;
  /** True once the node has begun shutting down. */
  shuttingDown: () => boolean;
}

/** Registers `/healthz`, `/readyz` and `/metrics`. */
export async function healthRoutes(app: FastifyInstance, deps: HealthRouteDeps): Promise<void> {
  const { region, replication, metrics, shuttingDown } = deps;

  app.get('/healthz', async () => ({ status: 'ok', region }));

  app.get('/readyz', async (_request, reply) => {
    if (shuttingDown()) return reply.code(503).send({ ready: false, region, reason: 'shutting down' });
    return { ready: true, region, isolated: replication.status().isolated };
  });

  app.get('/metrics', async (_request, reply) => {
    const text = await metrics.scrape();
    return reply.type(metrics.contentType).send(text);
  });
}
