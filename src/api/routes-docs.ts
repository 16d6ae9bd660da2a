/**
 * JSON document routes: whole-document writes, merge patches, typed CRDT
 * operations, reads, deletes and listing. Every write goes through
 * `Documents`, which answers only once the write is durable.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { MeridianError } from '../errors.js';
import { OpsBody } from '../crdt/ops-parse.js';
import { writeNodes, type JsonWrite } from '../crdt/budget.js';
import type { JsonObject, Op } from '../crdt/types.js';
import type { Documents } from '../docs/types.js';
import { encodeVersion } from '../docs/token.js';
import { errorResponses } from './openapi.js';
import type { SharedReads } from './shared-reads.js';
import { DocumentBody, ListPage, WriteAck } from './responses.js';
import {
  CollectionParams,
  DEFAULT_LIST_LIMIT,
  DocParams,
  JSON_BODY,
  JsonObjectBody,
  ListQuery,
  MergePatchBody,
  checkName,
  docOf,
  validatorCompiler,
  withOpsBody,
} from './schemas.js';
import { VERSION_HEADER, type Session } from './session.js';

export interface DocRouteDeps {
  documents: Documents;
  session: Session;
  reads: SharedReads;
  caller: (request: FastifyRequest) => string;
  /** `limits.maxWriteNodes`: a write past it is refused before it waits for a version. */
  maxWriteNodes: number;
}

const DOC = '/v1/docs/:collection/:id';
const tags = ['documents'];
/** What any write of a JSON document may answer beyond the hooks' codes. */
const WRITE_ERRORS = ['too_complex', 'body_too_large', 'unavailable'] as const;

/** Registers the JSON document routes. */
export async function docRoutes(app: FastifyInstance, deps: DocRouteDeps): Promise<void> {
  const { documents, session, reads } = deps;
  const checkedBeforeWait = (write: (body: unknown) => JsonWrite) => ({
    checkBeforeWait: (request: { body: unknown }) => void writeNodes(write(request.body), deps.maxWriteNodes),
  });

  app.put<{ Params: DocParams; Body: JsonObject }>(
    DOC,
    {
      schema: {
        summary: 'Write a whole document', tags, consumes: JSON_BODY, params: DocParams, body: JsonObjectBody,
        response: { 200: WriteAck, ...errorResponses(...WRITE_ERRORS) },
      },
      config: checkedBeforeWait((value) => ({ kind: 'put', value })),
    },
    async (request, reply) => {
      const doc = docOf(request.params);
      return session.write(request, reply, 'put', () => documents.put(doc, request.body));
    },
  );

  // Merge patches may be sent as application/merge-patch+json (RFC 7396); only this route parses it.
  await app.register(async (scope) => {
    scope.addContentTypeParser(
      'application/merge-patch+json',
      { parseAs: 'string' },
      scope.getDefaultJsonParser('error', 'error'),
    );
    scope.patch<{ Params: DocParams; Body: JsonObject }>(
      DOC,
      {
        schema: {
          summary: 'Merge a JSON merge patch (RFC 7396) into a document', tags,
          consumes: [...JSON_BODY, 'application/merge-patch+json'], params: DocParams, body: MergePatchBody,
          response: { 200: WriteAck, ...errorResponses(...WRITE_ERRORS) },
        },
        config: checkedBeforeWait((value) => ({ kind: 'patch', value })),
      },
      async (request, reply) => {
        const doc = docOf(request.params);
        return session.write(request, reply, 'patch', () => documents.patch(doc, request.body));
      },
    );
  });

  // The CRDT model owns the shape of operations; its parser reports the first bad one (`invalid_ops`).
  app.post<{ Params: DocParams; Body: Op[] }>(
    `${DOC}/ops`,
    {
      schema: {
        summary: 'Apply typed CRDT operations to a document, atomically', tags, consumes: JSON_BODY, params: DocParams, body: OpsBody,
        response: { 200: WriteAck, ...errorResponses('invalid_ops', 'type_mismatch', ...WRITE_ERRORS) },
      },
      validatorCompiler: withOpsBody(validatorCompiler()),
      config: checkedBeforeWait((ops) => ({ kind: 'ops', ops: ops as Op[] })),
    },
    async (request, reply) => {
      const doc = docOf(request.params);
      const ops = request.body;
      return session.write(request, reply, 'ops', () => documents.ops(doc, ops));
    },
  );

  const readSchema = {
    summary: 'Read a document as plain JSON', tags, params: DocParams, response: { 200: DocumentBody, ...errorResponses('not_found') },
  };
  app.get<{ Params: DocParams }>(DOC, { schema: readSchema }, async (request, reply) => {
    const doc = docOf(request.params);
    const read = await reads.read(
      doc,
      'json',
      // A write to it may still be on its way to the disk: never read what is not durable.
      () => documents.settled(doc),
      async () => {
        const result = await documents.readJson(doc, deps.caller(request));
        return result.body === null ? null : { body: result.body, version: encodeVersion(result.version) };
      },
      deps.caller(request),
    );
    if (read === null) throw new MeridianError('not_found', `document ${doc} does not exist`);
    void reply.header(VERSION_HEADER, read.version);
    return reply.type('application/json; charset=utf-8').send(read.body);
  });

  const deleteSchema = {
    summary: 'Delete a document (a replicated tombstone)', tags, params: DocParams,
    response: { 200: WriteAck, ...errorResponses('not_found', 'unavailable') },
  };
  app.delete<{ Params: DocParams }>(DOC, { schema: deleteSchema }, async (request, reply) => {
    const doc = docOf(request.params);
    return session.write(request, reply, 'delete', async () => {
      const ack = await documents.remove(doc);
      if (ack === null) throw new MeridianError('not_found', `document ${doc} does not exist`);
      return ack;
    });
  });

  app.get<{ Params: CollectionParams; Querystring: ListQuery }>(
    '/v1/docs/:collection',
    {
      schema: {
        summary: 'List the document ids of a collection, a page at a time', tags, params: CollectionParams, querystring: ListQuery,
        response: { 200: ListPage },
      },
    },
    async (request) => {
      const collection = checkName(request.params.collection, 'collection');
      const after = request.query.after === undefined ? null : checkName(request.query.after, 'after');
      return documents.list(collection, after, request.query.limit ?? DEFAULT_LIST_LIMIT);
    },
  );
}
