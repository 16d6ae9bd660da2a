/**
 * Binary Yjs routes, so that Yjs clients can sync a document directly:
 * `GET` returns the document (or what a state vector lacks) as an update,
 * `POST` applies a client's update after `Documents` has validated it.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { MeridianError } from '../errors.js';
import type { Documents } from '../docs/types.js';
import type { DocKey } from '../ids.js';
import { encodeVersion } from '../docs/token.js';
import { heldStateVector } from '../crdt/validate.js';
import { sha256 } from '../sha256.js';
import { errorResponses } from './openapi.js';
import type { SharedReads } from './shared-reads.js';
import { WriteAck, YjsUpdateBody } from './responses.js';
import { DocParams, YjsQuery, docOf } from './schemas.js';
import { VERSION_HEADER, type Session } from './session.js';

export interface YjsRouteDeps {
  documents: Documents;
  session: Session;
  reads: SharedReads;
  /** Largest update accepted; larger bodies get 413. */
  yjsUpdateBytes: number;
  /** Who asks (see limits.ts). */
  caller: (request: FastifyRequest) => string;
}

const OCTETS = 'application/octet-stream';
const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

/**
 * What of `doc`'s durable state a reader holding `sv` lacks (all of it
 * without), with the version it describes; null for an unknown document.
 * One variant per state vector's bytes, whatever way they came in (an HTTP
 * `sv` in either base64, a live client's sync step 1): such reads share a
 * render (./shared-reads.ts), so every one of them must render the same
 * thing. `caller` (see limits.ts) queues a few renders at most.
 * @throws MeridianError `invalid_query` when `sv` is not a Yjs state vector,
 * before the read waits for any turn.
 */
export function sharedYjsRead(
  reads: SharedReads, documents: Documents, doc: DocKey, sv: Uint8Array | undefined, caller: string,
): Promise<{ update: Uint8Array; version: string } | null> {
  let variant = 'yjs:all';
  if (sv !== undefined) {
    // Checked without building a map of its clients (see heldStateVector): a
    // live client's sync step 1 may name hundreds of thousands.
    try {
      heldStateVector(sv, () => false);
    } catch (err) {
      return Promise.reject(new MeridianError('invalid_query', 'sv is not a valid Yjs state vector', { field: 'querystring/sv' }, { cause: err }));
    }
    variant = `yjs:${Buffer.from(sha256(sv)).toString('base64')}`;
  }
  return reads.read(doc, variant, () => documents.settled(doc), async () => {
    const { update, version } = await documents.readYjsRendered(doc, sv, caller);
    return update === null ? null : { update, version: encodeVersion(version) };
  }, caller);
}

/**
 * Decodes the `sv` query parameter (standard or URL-safe base64). Whether the
 * bytes are a state vector is for `Documents.readYjs` to judge.
 * @throws MeridianError `invalid_query` when it is not base64.
 */
export function decodeStateVectorParam(sv: string): Uint8Array {
  // A `+` that was not percent-encoded arrives as a space.
  const text = sv.replace(/ /g, '+');
  if (!BASE64.test(text) || text.replace(/=+$/, '').length % 4 === 1) {
    throw new MeridianError('invalid_query', 'sv must be a base64 Yjs state vector', { field: 'querystring/sv' });
  }
  // A copy: small Buffers are slices of a shared pool, and decoders that look past a view's end would read it.
  return new Uint8Array(Buffer.from(text, 'base64'));
}

/** Registers the Yjs routes; the binary body parser exists only in their scope. */
export async function yjsRoutes(app: FastifyInstance, deps: YjsRouteDeps): Promise<void> {
  const { documents, session, reads, yjsUpdateBytes, caller } = deps;
  // Updates are binary only: a JSON body here is a client mistake, answered with 415.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser(OCTETS, { parseAs: 'buffer', bodyLimit: yjsUpdateBytes }, (_request, body, done) => {
    done(null, body);
  });

  app.get<{ Params: DocParams; Querystring: YjsQuery }>(
    '/v1/docs/:collection/:id/yjs',
    {
      schema: {
        summary: 'Read a document as a binary Yjs update', tags: ['yjs'], params: DocParams, querystring: YjsQuery,
        produces: [OCTETS], response: { 200: YjsUpdateBody, ...errorResponses('not_found', 'invalid_query') },
      },
    },
    async (request, reply) => {
      const doc = docOf(request.params);
      const sv = request.query.sv === undefined ? undefined : decodeStateVectorParam(request.query.sv);
      const read = await sharedYjsRead(reads, documents, doc, sv, caller(request));
      if (read === null) throw new MeridianError('not_found', `document ${doc} does not exist`);
      void reply.header(VERSION_HEADER, read.version);
      const { update } = read;
      return reply.type(OCTETS).send(Buffer.from(update.buffer, update.byteOffset, update.byteLength));
    },
  );

  app.post<{ Params: DocParams; Body: Buffer | undefined }>(
    '/v1/docs/:collection/:id/yjs',
    {
      schema: {
        summary: 'Apply a binary Yjs update to a document', tags: ['yjs'], consumes: [OCTETS], params: DocParams,
        // Documented, not validated: the update is checked by Documents, which knows the document.
        body: { content: { [OCTETS]: { schema: { description: 'a binary Yjs update' } } } },
        response: { 200: WriteAck, ...errorResponses('invalid_update', 'client_id_conflict', 'body_too_large', 'unavailable') },
      },
      bodyLimit: yjsUpdateBytes,
    },
    async (request, reply) => {
      const doc = docOf(request.params);
      const body = request.body;
      if (!Buffer.isBuffer(body) || body.length === 0) {
        throw new MeridianError('invalid_update', `the body must be a non-empty ${OCTETS} Yjs update`);
      }
      // A copy of its own, for the same reason as the state vector above.
      const update = new Uint8Array(body);
      return session.write(request, reply, 'yjs', () => documents.applyYjs(doc, update));
    },
  );
}
