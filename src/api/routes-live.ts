/**
 * `GET /v1/live/{collection}/{id}`: the WebSocket endpoint of live (Yjs
 * editor) clients, spoken by an unmodified y-websocket provider whose
 * serverUrl is `ws://<region>/v1/live/{collection}` and room `{id}`.
 *
 * Who may call it: holders of a token that reaches the collection (read
 * scope to connect and receive, read-write to send updates); with no tokens
 * configured, anyone. Browsers cannot set headers on a WebSocket, so the
 * token may also come as `?token=` (y-websocket's `params` option); it is
 * taken out of the URL before routing (`stripQueryToken` in auth.ts), so no log
 * line, error or hook ever sees it. What the connection may then send and
 * the bounds on it are in src/live/connection.ts. Before the upgrade, the
 * region answers 401/403 for a bad token, 429 beyond the caller's share of
 * connections (`limits.liveConnectionsPerCaller`; a caller is its token, or
 * its address without tokens) and 503 beyond its own bounds
 * (`limits.liveConnections`, `limits.liveConnectionsPerDoc`).
 */
import type { IncomingMessage } from 'node:http';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { AuthConfig, LimitsConfig } from '../config.js';
import type { Documents } from '../docs/types.js';
import { MeridianError } from '../errors.js';
import type { DocKey } from '../ids.js';
import { createLogLimiter } from '../log-limiter.js';
import { closeCodeOf } from '../live/close-codes.js';
import { LiveConnection } from '../live/connection.js';
import type { Rooms } from '../live/rooms.js';
import type { Metrics } from '../metrics.js';
import { authorizationOf, authorize, createAuthenticator, type Principal } from './auth.js';
import { CallerSlots } from './caller-slots.js';
import { callerKey } from './limits.js';
import { errorResponses } from './openapi.js';
import { documentQuotaExceeded, type DocumentCreations, type WriteRates } from './quotas.js';
import { DocParams, docOf } from './schemas.js';
import { sharedYjsRead } from './routes-yjs.js';
import type { SharedReads } from './shared-reads.js';

/** The route of live connections. */
export const LIVE_ROUTE = '/v1/live/:collection/:id';

const LiveQuery = Type.Object({
  token: Type.Optional(Type.String({ description: 'The bearer token, for clients that cannot set headers; never logged.' })),
  versions: Type.Optional(Type.String({ description: '`1`: send a meridian-version message (type 100) after each commit.' })),
});

export interface LiveRouteDeps {
  documents: Documents;
  rooms: Rooms;
  /** Renders of large documents, shared with the HTTP reads. */
  reads: SharedReads;
  limits: Pick<LimitsConfig, 'yjsUpdateBytes' | 'liveSendBufferBytes' | 'liveKeepAliveMs' | 'liveConnectionsPerCaller'>;
  auth: Pick<AuthConfig, 'tokens'>;
  metrics: Pick<Metrics, 'requestsRefused' | 'logSuppressed'>;
  logger: Logger;
  /** The tokens' write rates, shared with the HTTP API. */
  writeRates: WriteRates;
  /** Documents created per token, shared with the HTTP API. */
  creations: DocumentCreations;
}

/** Registers the live route; the WebSocket plugin must be registered before. */
export async function liveRoutes(app: FastifyInstance, deps: LiveRouteDeps): Promise<void> {
  const { documents, rooms, reads, limits, metrics } = deps;
  const authenticator = createAuthenticator(deps.auth.tokens);
  const limiter = createLogLimiter({ logger: deps.logger, onSuppressed: (event) => metrics.logSuppressed.inc({ event }) });
  const principals = new WeakMap<IncomingMessage, Principal | null>();
  const callers = new CallerSlots(limits.liveConnectionsPerCaller);
  const callerTooBusy = (): MeridianError => new MeridianError(
    'too_many_requests',
    `this caller holds ${callers.max} live connections at this region (limits.liveConnectionsPerCaller); close some first`,
  );

  const refused = (request: FastifyRequest, reason: string, fields: Record<string, unknown>): void => {
    metrics.requestsRefused.inc({ reason });
    limiter.warn(reason, principals.get(request.raw)?.name ?? request.ip, { reason, ...fields }, 'live client refused');
  };

  app.get<{ Params: DocParams }>(LIVE_ROUTE, {
    websocket: true,
    schema: {
      summary: 'Live Yjs connection (y-websocket protocol) to a document',
      description: 'WebSocket upgrade speaking y-protocols sync and awareness. See the README, "Live clients (Yjs editors)".',
      tags: ['live'],
      params: DocParams,
      querystring: LiveQuery,
      response: errorResponses('unauthorized', 'forbidden', 'invalid_name', 'too_many_requests', 'too_many_connections'),
    },
    preValidation: async (request) => {
      const doc = docOf(request.params);
      const principal = identify(request);
      principals.set(request.raw, principal);
      if (callers.full(callerKey(principal, request.ip))) {
        refused(request, 'live_caller_connections', { doc, bound: callers.max });
        throw callerTooBusy();
      }
      const admission = rooms.admission(doc);
      if (admission !== null) {
        refused(request, 'live_connections', { doc, bound: admission });
        const bound = admission === 'region_full' ? 'limits.liveConnections' : 'limits.liveConnectionsPerDoc';
        throw new MeridianError('too_many_connections', `this region is at its bound of live connections (${bound}); try another region or later`);
      }
    },
  }, (socket, request) => {
    const doc: DocKey = docOf(request.params);
    const principal = principals.get(request.raw) ?? null;
    const caller = callerKey(principal, request.ip);
    // Upgrades of one caller that were checked at once may have passed the share together.
    if (callers.full(caller)) {
      refused(request, 'live_caller_connections', { doc, bound: callers.max });
      const err = callerTooBusy();
      socket.close(closeCodeOf(err), err.code);
      return;
    }
    socket.once('close', callers.hold(caller));
    const query = request.query as { versions?: string };
    new LiveConnection({
      doc, socket, documents, rooms,
      // What is in memory but not yet on disk is never shown: the read waits for the commit.
      stateFor: async (sv) => (await sharedYjsRead(reads, documents, doc, sv, caller))?.update ?? null,
      stateVector: () => documents.stateVectorRendered(doc, caller),
      canWrite: !authenticator.enabled || principal?.scope === 'read-write',
      wantsVersions: query.versions === '1',
      maxUpdateBytes: limits.yjsUpdateBytes,
      sendBufferBytes: limits.liveSendBufferBytes,
      keepAliveMs: limits.liveKeepAliveMs,
      takeWrite: () => (principal === null ? 0 : deps.writeRates.take(principal)),
      reserveCreation: () => {
        if (principal === null) return () => undefined;
        const settle = deps.creations.reserve(principal, doc);
        if (settle === null) throw documentQuotaExceeded(principal);
        return settle;
      },
      onRefused: (reason, err) => refused(request, reason, { doc, ...(err ? { code: err.code, message: err.message } : {}) }),
    });
  });

  /** The caller's principal (null with auth off); throws 401/403 like the HTTP API. */
  function identify(request: FastifyRequest): Principal | null {
    if (!authenticator.enabled) return null;
    const principal = authenticator.identify(authorizationOf(request));
    if (principal === null) throw new MeridianError('unauthorized', 'a valid bearer token is required (header, or ?token= for browsers)');
    authorize(principal, { access: 'read', collection: (request.params as DocParams).collection });
    return principal;
  }
}
