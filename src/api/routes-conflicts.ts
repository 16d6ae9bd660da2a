/**
 * `GET /v1/docs/:collection/:id/conflicts`: the document states that lost a
 * content conflict in this region (two clients wrote different content under
 * one Yjs client id; see docs/replace.ts), oldest first, paged by id. A
 * page is read as the document is (./shared-reads.ts): a lost state may be
 * as large as the document, and a large one is rendered on the render
 * thread, as a large document's read is.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { MeridianError } from '../errors.js';
import type { Documents } from '../docs/types.js';
import { errorResponses } from './openapi.js';
import { ConflictPage } from './responses.js';
import { DocParams, docOf } from './schemas.js';
import type { SharedReads } from './shared-reads.js';

const MAX_CONFLICTS = 100;
/** Lost states' bytes in one page at most (beyond its first conflict): each is decoded, rendered and sent twice over. */
const PAGE_STATE_BYTES = 1 << 20;

const ConflictQuery = Type.Object({
  after: Type.Optional(Type.Integer({ minimum: 0, default: 0, description: '`next` of the previous page' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_CONFLICTS, default: 20 })),
});
type ConflictQuery = Static<typeof ConflictQuery>;

export async function conflictRoutes(
  app: FastifyInstance, deps: { documents: Documents; reads: SharedReads; caller: (request: FastifyRequest) => string },
): Promise<void> {
  const { documents, reads, caller } = deps;
  app.get<{ Params: DocParams; Querystring: ConflictQuery }>(
    '/v1/docs/:collection/:id/conflicts',
    {
      schema: {
        summary: 'The states of a document that lost a content conflict in this region, oldest first', tags: ['documents'],
        params: DocParams, querystring: ConflictQuery, response: { 200: ConflictPage, ...errorResponses('not_found') },
      },
    },
    async (request, reply) => {
      const doc = docOf(request.params);
      // The validator has filled in the defaults.
      const { after = 0, limit = 20 } = request.query;
      const who = caller(request);
      const body = await reads.read(doc, `conflicts:${after}:${limit}`, () => null, async () => {
        const page = await documents.conflicts(doc, after, limit, PAGE_STATE_BYTES, who);
        if (page.conflicts.length === 0 && after === 0 && !documents.hasState(doc)) return null;
        // Each lost value comes as JSON text (rendered off the event loop when large): placed as it is.
        const conflicts = page.conflicts.map((c) => {
          const head = JSON.stringify({ id: c.id, at: new Date(c.at).toISOString(), winner: c.winner, keptDigest: c.keptDigest, lostDigest: c.lostDigest });
          return `${head.slice(0, -1)},"value":${c.valueJson},"yjs":"${Buffer.from(c.state).toString('base64')}"}`;
        });
        return Buffer.from(`{"conflicts":[${conflicts.join(',')}],"next":${JSON.stringify(page.next)}}`);
      }, who);
      if (body === null) throw new MeridianError('not_found', `document ${doc} does not exist`);
      return reply.type('application/json; charset=utf-8').send(body);
    },
  );
}
