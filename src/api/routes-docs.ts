/**
 * JSON document routes: whole-document writes, merge patches, typed CRDT
 * operations, reads, deletes and listing. Every write goes through
 * `Documents`, which answers only once the write is durable.
 */
import type { FastifyInstance } from 'fastify';
import { MeridianError } from '../errors.js';
import { parseOps } from '../crdt/index.js';
import type { JsonObject } from '../crdt/types.js';
import type { Documents } from '../docs/types.js';
import { encodeVersion } from '../docs/token.js';
import {
  CollectionParams,
  DocParams,
  JsonObjectBody,
  ListQuery,
  checkName,
  docOf,
} from './schemas.js';
import { VERSION_HEADER, type Session } from './session.js';

export interface DocRouteDeps {
  documents: Documents;
  session: Session;
}

const DOC = '/v1/docs/:collection/:id';

/** Registers the JSON document routes. */
export async function docRoutes(app: FastifyInstance, deps: DocRouteDeps): Promise<void> {
  const { documents, session } = deps;

  app.put<{ Params: DocParams; Body: JsonObject }>(
    DOC,
    { schema: { params: DocParams, body: JsonObjectBody } },
    async (request, reply) => {
      const doc = docOf(request.params);
      return session.write(request, reply, 'put', () => documents.put(doc, request.body));
    },
  );

  // Merge patches may be sent as application/merge-patch+json (RFC 7386); only this route parses it.
  await app.register(async (scope) => {
    scope.addContentTypeParser(
      'application/merge-patch+json',
      { parseAs: 'string' },
      scope.getDefaultJsonParser('error', 'error'),
    );
    scope.patch<{ Params: DocParams; Body: JsonObject }>(
      DOC,
      { schema: { params: DocParams, body: JsonObjectBody } },
      async (request, reply) => {
        const doc = docOf(request.params);
        return session.write(request, reply, 'patch', () => documents.patch(doc, request.body));
      },
    );
  });

  // The CRDT model owns the shape of operations; its parser reports the first bad one (`invalid_ops`).
  app.post<{ Params: DocParams; Body: unknown }>(
    `${DOC}/ops`,
    { schema: { params: DocParams } },
    async (request, reply) => {
      const doc = docOf(request.params);
      const ops = parseOps(request.body);
      return session.write(request, reply, 'ops', () => documents.ops(doc, ops));
    },
  );

  app.get<{ Params: DocParams }>(DOC, { schema: { params: DocParams } }, async (request, reply) => {
    const doc = docOf(request.params);
    // A write to it may still be on its way to the disk: never read what is not durable.
    await documents.settled(doc);
    const result = documents.read(doc);
    if (result.value === null) throw new MeridianError('not_found', `document ${doc} does not exist`);
    void reply.header(VERSION_HEADER, encodeVersion(result.version));
    return result.value;
  });

  app.delete<{ Params: DocParams }>(DOC, { schema: { params: DocParams } }, async (request, reply) => {
    const doc = docOf(request.params);
    return session.write(request, reply, 'delete', async () => {
      const ack = await documents.remove(doc);
      if (ack === null) throw new MeridianError('not_found', `document ${doc} does not exist`);
      return ack;
    });
  });

  app.get<{ Params: CollectionParams; Querystring: ListQuery }>(
    '/v1/docs/:collection',
    { schema: { params: CollectionParams, querystring: ListQuery } },
    async (request) => {
      const collection = checkName(request.params.collection, 'collection');
      const after = request.query.after === undefined ? null : checkName(request.query.after, 'after');
      return documents.list(collection, after, request.query.limit);
    },
  );
}
