/**
 * Replication status routes. The API only reads what replication reports
 * through its public view; it never reaches into links or sessions.
 */
import type { FastifyInstance } from 'fastify';
import type { DocSyncStatus, ReplicationView, SyncStatus } from '../replication/types.js';
import { errorResponses } from './openapi.js';
import { DocSyncStatusSchema, SyncStatusSchema } from './responses.js';
import { DocParams, docOf } from './schemas.js';

/** Registers `GET /v1/sync` and `GET /v1/docs/:collection/:id/sync`. */
export async function syncRoutes(app: FastifyInstance, deps: { replication: ReplicationView }): Promise<void> {
  const { replication } = deps;

  app.get('/v1/sync', {
    schema: {
      summary: "This region's replication status: digest, and per peer link state, RTT, route and lag",
      description: 'Needs a token whose collections include `*`, or a `status` token.',
      tags: ['sync'], response: { 200: SyncStatusSchema },
    },
  }, async (): Promise<SyncStatus> => {
    await replication.settled();
    return replication.status();
  });

  app.get<{ Params: DocParams }>(
    '/v1/docs/:collection/:id/sync',
    {
      schema: {
        summary: 'Per region, whether it holds the latest version of one document, and how far behind it is',
        tags: ['sync'], params: DocParams, response: { 200: DocSyncStatusSchema, ...errorResponses('not_found') },
      },
    },
    async (request): Promise<DocSyncStatus> => replication.docStatus(docOf(request.params)),
  );
}
