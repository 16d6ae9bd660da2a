/**
 * Change feeds as Server-Sent Events: `GET /v1/events/:collection/:id` (one
 * document) and `GET /v1/events/:collection` (every document of a
 * collection), for local and replicated changes alike.
 *
 * Threat model: callers hold a read token (as a header, or `?token=` for
 * EventSource, which cannot set headers). They choose the scope and a
 * resume position (`Last-Event-ID` or `?after=`, a version token checked
 * like `meridian-after`). Bounds: `limits.maxFeedSubscribers` streams per
 * region (503 beyond), `limits.maxFeedSubscribersPerCaller` per caller (429
 * beyond), `limits.feedQueueBytes` unsent per stream (cut off
 * beyond, with the position to resume from), a resume reads at most
 * MAX_RESUME_SCAN log entries (beyond it, it is answered by state), and a
 * resume at a region lacking the position waits at most
 * `limits.defaultWaitMs` for it.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { LimitsConfig } from '../config.js';
import { MeridianError } from '../errors.js';
import { LAST_EVENT_ID_HEADER } from '../contract.js';
import type { VersionVector } from '../ids.js';
import type { Documents } from '../docs/types.js';
import { decodeVersion, refuseUnheldWriters } from '../docs/token.js';
import type { FeedLog, FeedScope } from '../docs/feed.js';
import type { ReplicationView } from '../replication/types.js';
import type { Metrics } from '../metrics.js';
import { createLogLimiter } from '../log-limiter.js';
import { covers } from '../vv.js';
import { CallerSlots } from './caller-slots.js';
import { FeedHub, FeedSubscriber, type CutoffReason } from './feed-hub.js';
import { RenderGate, resume } from './feed-resume.js';
import { OversizedSends, SseStream } from './feed-stream.js';
import { CollectionParams, DocParams, checkName } from './schemas.js';

/** Route patterns of the change feeds (exempt from the request cap: they have their own). */
export const EVENT_ROUTES = ['/v1/events/:collection', '/v1/events/:collection/:id'] as const;

export type FeedLimits = Pick<LimitsConfig, 'feedQueueBytes' | 'maxFeedSubscribers' | 'maxFeedSubscribersPerCaller' | 'feedHeartbeatMs' | 'defaultWaitMs'>;

export interface EventRouteDeps {
  documents: Documents;
  replication: Pick<ReplicationView, 'waitForVersion'>;
  /** The log, to resume from a position; without it every resume is answered by state. */
  log: FeedLog | null;
  limits: FeedLimits;
  metrics: Metrics;
  /** Who a request comes from, as per-caller limits count it (see `callerOf` in limits.ts). */
  callerOf: (request: FastifyRequest) => string;
}

const EventQuery = Type.Object({
  after: Type.Optional(Type.String({ description: 'resume position (a version token) for clients that cannot set Last-Event-ID' })),
  token: Type.Optional(Type.String({ description: 'bearer token, for EventSource clients that cannot set headers' })),
});
type EventQuery = Static<typeof EventQuery>;

const EventHeaders = Type.Object({
  [LAST_EVENT_ID_HEADER]: Type.Optional(Type.String({ description: 'resume position: the id of the last event received' })),
});

const ErrorResponse = Type.Object({ error: Type.String(), message: Type.String() }, { additionalProperties: true });
const EventStream = {
  description: 'text/event-stream: `change` events (id = version token; data = {collection, id, version, value}), ' +
    '`reset`, `ready` and a final `cutoff`; `: ping` comments every feedHeartbeatMs',
  content: { 'text/event-stream': { schema: Type.String() } },
};
const responses = { 200: EventStream, 400: ErrorResponse, 401: ErrorResponse, 403: ErrorResponse, 429: ErrorResponse, 503: ErrorResponse };

/** Bytes of events larger than a stream's bound that a region's feeds may hold unsent, in all (see OversizedSends). */
const MAX_OVERSIZED_SEND_BYTES = 64 * 1024 * 1024;

/** Registers the change-feed routes. */
export async function eventRoutes(app: FastifyInstance, deps: EventRouteDeps): Promise<void> {
  // A change delivered after its commit's listener returned (it waited for a large document's render): logged as that listener's failures are.
  const hub = new FeedHub(deps.documents, (err) => app.log.error({ err }, 'commit listener failed'));
  const oversized = new OversizedSends(MAX_OVERSIZED_SEND_BYTES);
  const renders = new RenderGate();
  const callers = new CallerSlots(deps.limits.maxFeedSubscribersPerCaller);
  const limiter = createLogLimiter({ logger: app.log, onSuppressed: (event) => deps.metrics.logSuppressed.inc({ event }) });
  deps.metrics.onCollect(() => deps.metrics.feedSubscribers.set(hub.size));
  // Streams never end by themselves: closing must end them, or it would wait for them forever.
  app.addHook('preClose', async () => hub.close());

  const onCutoff = (request: FastifyRequest) => (reason: CutoffReason): void => {
    deps.metrics.feedCutoffs.inc({ reason });
    limiter.warn(`feed_${reason}`, request.ip, { reason, route: request.routeOptions.url }, 'change feed cut off');
  };
  const serve = async (request: FastifyRequest<{ Querystring: EventQuery }>, reply: FastifyReply, scope: FeedScope): Promise<void> => {
    const since = positionOf(request);
    if (since !== null) refuseUnheldWriters(since, deps.documents.versionVector());
    const caller = deps.callerOf(request);
    if (callers.full(caller)) {
      deps.metrics.feedCutoffs.inc({ reason: 'caller_limit' });
      limiter.warn('feed_caller_limit', caller, { limit: callers.max }, 'change feed refused');
      void reply.header('retry-after', '1');
      throw new MeridianError(
        'too_many_requests',
        `this caller has ${callers.max} change feeds open at this region (limits.maxFeedSubscribersPerCaller); close one first`,
      );
    }
    if (!hub.reserve(deps.limits.maxFeedSubscribers)) {
      deps.metrics.feedCutoffs.inc({ reason: 'subscriber_limit' });
      limiter.warn('feed_subscriber_limit', request.ip, { limit: deps.limits.maxFeedSubscribers }, 'change feed refused');
      void reply.header('retry-after', '1');
      throw new MeridianError('unavailable', `${deps.limits.maxFeedSubscribers} change feeds are open at this region; retry shortly or use another region`);
    }
    // The response closes whichever way the feed ends: refused below, cut off, or its client gone.
    reply.raw.once('close', callers.hold(caller));
    try {
      if (since !== null) await awaitPosition(deps, reply, since);
    } finally {
      // The place passes to the stream below, in the same turn.
      hub.unreserve();
    }
    reply.hijack();
    const stream = new SseStream(reply.raw, {
      queueBytes: deps.limits.feedQueueBytes, heartbeatMs: deps.limits.feedHeartbeatMs, headers: headersOf(reply), oversized,
    });
    const subscriber = new FeedSubscriber(scope, stream, since ?? deps.documents.versionVector(), onCutoff(request));
    hub.add(subscriber);
    if (since === null) return subscriber.goLive('live');
    try {
      await resume({ documents: deps.documents, log: deps.log, renders }, subscriber);
    } catch (err) {
      // A document the resume could not read (one that cannot be built, or a render past its deadline): the consumer
      // reconnects and tries again, so at most once a minute per caller.
      limiter.warn('feed_resume_failed', caller, { err }, 'change feed resume failed; the stream is ended and its consumer resumes from its last event id');
      stream.end();
    }
  };

  app.get<{ Params: DocParams; Querystring: EventQuery }>(
    EVENT_ROUTES[1],
    {
      schema: {
        summary: 'Stream the changes of one document (Server-Sent Events)',
        tags: ['events'], params: DocParams, querystring: EventQuery, headers: EventHeaders, response: responses,
      },
    },
    async (request, reply) => {
      const { collection, id } = request.params;
      await serve(request, reply, { collection: checkName(collection, 'collection'), id: checkName(id, 'id') });
    },
  );
  app.get<{ Params: CollectionParams; Querystring: EventQuery }>(
    EVENT_ROUTES[0],
    {
      schema: {
        summary: 'Stream the changes of every document of a collection (Server-Sent Events)',
        tags: ['events'], params: CollectionParams, querystring: EventQuery, headers: EventHeaders, response: responses,
      },
    },
    async (request, reply) => {
      await serve(request, reply, { collection: checkName(request.params.collection, 'collection'), id: null });
    },
  );
}

/** `Last-Event-ID` (sent by EventSource on reconnects), else `?after=`; null for a fresh feed. */
function positionOf(request: FastifyRequest<{ Querystring: EventQuery }>): VersionVector | null {
  const header = request.headers[LAST_EVENT_ID_HEADER];
  if (Array.isArray(header)) throw new MeridianError('invalid_token', 'Last-Event-ID must appear once');
  const token = header ?? request.query.after;
  return token === undefined ? null : decodeVersion(token);
}

/**
 * A region that lacks part of the position waits a while for it, so the
 * consumer is not shown older documents than it has seen; if the writes
 * never come (their region is lost), the feed goes on with what is here.
 */
async function awaitPosition(deps: EventRouteDeps, reply: FastifyReply, since: VersionVector): Promise<void> {
  if (covers(deps.documents.versionVector(), since)) return;
  const gone = new AbortController();
  const abort = (): void => gone.abort();
  // 'close' before the response is sent means the client went away.
  reply.raw.once('close', abort);
  try {
    await deps.replication.waitForVersion(since, deps.limits.defaultWaitMs, gone.signal);
  } finally {
    reply.raw.off('close', abort);
  }
}

/** Headers hooks set on the reply (CORS), which a hijacked response must send itself. */
function headersOf(reply: FastifyReply): Record<string, string | number | string[]> {
  const out: Record<string, string | number | string[]> = {};
  for (const [name, value] of Object.entries(reply.getHeaders())) if (value !== undefined) out[name] = value;
  return out;
}
