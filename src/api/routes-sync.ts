/**
 * Replication status routes. The API only reads what replication reports
 * through its public view; it never reaches into links or sessions.
 */
import type { FastifyInstance } from 'fastify';
import type { DocSyncStatus, ReplicationView, SyncStatus } from '../replication/types.js';
import { DocParams, docOf } from './schemas.js';

/** Registers `GET /v1/sync` and `GET /v1/docs/:collection/:id/sync`. */
export async function syncRoutes(app: FastifyInstance, deps: { replication: ReplicationView }): Promise<void> {
  const { replication } = deps;

  app.get('/v1/sync', async (): Promise<SyncStatus> => replication.status());

  app.get<{ Params: DocParams }>(
    '/v1/docs/:collection/:id/sync',
    { schema: { params: DocParams } },
    async (request): Promise<DocSyncStatus> => replication.docStatus(docOf(request.params)),
  );
}
