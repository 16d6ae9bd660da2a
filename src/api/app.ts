/**
 * The HTTP API of a region node. `buildApp` wires routes, access control,
 * session guarantees, load protection, metrics and error handling onto a
 * fastify instance and returns it without listening; the composition root
 * calls `listen()`.
 */
import type { Server } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyHttpOptions,
  type FastifyHttpsOptions,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
} from 'fastify';
import cors from '@fastify/cors';
import type { Logger } from 'pino';
import type { RegionConfig } from '../config.js';
import type { Documents } from '../docs/types.js';
import type { Metrics } from '../metrics.js';
import type { ReplicationView } from '../replication/types.js';
import { installAuth, stripQueryToken } from './auth.js';
import { errorBody, installErrorHandling } from './errors.js';
import { MeridianError } from '../errors.js';
import { createLogLimiter } from '../log-limiter.js';
import { installBodyTimeout } from './body-timeout.js';
import { installLingeringClose } from './linger.js';
import { corsOptions } from './cors.js';
import { callerOf, installConcurrencyLimit } from './limits.js';
import { createQuotas, installWriteRate, type DocumentCreations, type WriteRates } from './quotas.js';
import { installRefusals } from './refusals.js';
import { installOpenApi } from './openapi.js';
import { healthRoutes } from './routes-health.js';
import { docRoutes } from './routes-docs.js';
import { syncRoutes } from './routes-sync.js';
import { yjsRoutes } from './routes-yjs.js';
import { conflictRoutes } from './routes-conflicts.js';
import { EVENT_ROUTES, eventRoutes } from './routes-events.js';
import type { FeedLog } from '../docs/feed.js';
import { historyRoutes, packagedUiAssets, uiRoutes, type UiAssets } from './routes-ui.js';
import { StatusHistory } from './status-history.js';
import { checkName, validatorCompiler } from './schemas.js';
import { createSession } from './session.js';
import { SharedReads } from './shared-reads.js';

/** The parts of the region config the API reads. */
export type ApiConfig = Pick<RegionConfig, 'region' | 'limits' | 'auth'> & Partial<Pick<RegionConfig, 'cors' | 'ui'>>;

export interface ApiDeps {
  config: ApiConfig;
  /** Certificate and key (PEM) to serve https instead of http. */
  https?: { key: Buffer; cert: Buffer; ca?: Buffer };
  documents: Documents;
  replication: ReplicationView;
  metrics: Metrics;
  logger: Logger;
  /**
   * Tells the API that the node is draining before it closes, so `/readyz`
   * answers 503 while requests are still served. Closing the app does the same.
   */
  shuttingDown?: () => boolean;
  /** The log, for change feeds to resume from a position; without it a resume sends every document in scope. */
  feedLog?: FeedLog;
  /** Recent status samples for `/v1/sync/history`, filled by the caller's sampler; default an empty one. */
  history?: StatusHistory;
  /** Where the dashboard's files are (served when `config.ui.enabled`); default the package's `ui/` and uPlot. */
  uiAssets?: UiAssets;
  /** The tokens' write rates, shared with the live endpoint; default the API's own. */
  writeRates?: WriteRates;
  /** Documents created per token, shared with live connections (made here when absent). */
  creations?: DocumentCreations;
  /** Renders of large documents, shared with live connections (made here when absent). */
  reads?: SharedReads;
}

/** Log paths that may hold credentials; pino replaces them. */
export const LOG_REDACT_PATHS = [
  'req.headers.authorization',
  'headers.authorization',
  'request.headers.authorization',
  '*.headers.authorization',
];

/** Routes served even when the node is at its concurrency cap, and never counted against it. */
// Change feeds are long-lived: they have their own bound (`limits.maxFeedSubscribers`) instead.
const UNCAPPED_ROUTES: ReadonlySet<string> = new Set(['/healthz', '/readyz', '/metrics', ...EVENT_ROUTES]);

/**
 * The fastify constructor options that carry the API's limits. The headers
 * timeout is not one of them: {@link buildApp} sets it on the server.
 */
export function serverOptions(limits: ApiConfig['limits']): FastifyServerOptions {
  return {
    bodyLimit: limits.bodyBytes,
    connectionTimeout: limits.connectionTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    // Quiet by default: failures are logged by the error handler, not every request.
    logController: new LogController({ disableRequestLogging: true }),
    // Names may be 128 characters (percent-encoded up to 3 bytes each); longer ones get 400, not 404.
    routerOptions: { maxParamLength: 1024 },
    // The `?token=` of live clients and change feeds is taken out before routing, so nothing logs it.
    rewriteUrl: (req) => stripQueryToken(req),
    // URLs the router cannot even parse answer in the API's own error shape.
    frameworkErrors: (err, _request, reply) => {
      const refused = err.code === 'FST_ERR_MAX_PARAM_LENGTH'
        ? new MeridianError('invalid_name', 'names are 1-128 characters; this one is far longer')
        : new MeridianError('bad_request', 'the URL is not valid (a malformed percent-escape?)');
      void (reply as unknown as FastifyReply).code(refused.status).type('application/json; charset=utf-8').send(errorBody(refused));
    },
  };
}

/**
 * Builds the API of one region. The caller listens and closes, and may add
 * routes of its own (replication links): the API's hooks (load shedding,
 * access control, session waits) live in a child scope and do not touch them.
 */
export function buildApp(deps: ApiDeps): FastifyInstance {
  const { config, metrics } = deps;
  const logger = deps.logger.child({ module: 'api' }, { redact: { paths: LOG_REDACT_PATHS, censor: '[redacted]' } });
  const options: FastifyHttpOptions<Server, FastifyBaseLogger> = {
    ...serverOptions(config.limits),
    loggerInstance: logger,
  };
  // With TLS the same app serves https (and the peers' wss links); the types differ only in the server class.
  const app = (deps.https
    ? Fastify({ ...options, https: deps.https } as unknown as FastifyHttpsOptions<HttpsServer, FastifyBaseLogger>)
    : Fastify(options)) as unknown as FastifyInstance;
  app.server.headersTimeout = config.limits.headersTimeoutMs;
  installErrorHandling(app);
  installLingeringClose(app);

  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  const shuttingDown = (): boolean => closing || deps.shuttingDown?.() === true;

  app.addHook('onResponse', async (request, reply) => {
    metrics.httpRequestSeconds.observe(
      { method: request.method, route: request.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
  });

  // First, so that the generator sees every route registered after it, the peer links' included.
  installOpenApi(app);
  // At the root, so that preflights are answered before the API's access control, on every route.
  const corsPlugin = corsOptions(config.cors);
  if (corsPlugin !== null) void app.register(cors, corsPlugin);
  void app.register(apiScope, { ...deps, shuttingDown });
  return app;
}

/** The API's routes and the hooks that apply to them alone. */
async function apiScope(api: FastifyInstance, deps: ApiDeps & { shuttingDown: () => boolean }): Promise<void> {
  const { config, documents, replication, metrics } = deps;
  api.setValidatorCompiler(validatorCompiler());
  // Response schemas document the API (OpenAPI); they never filter or coerce what a route answers.
  api.setSerializerCompiler(() => (data) => JSON.stringify(data));
  // Only the content types the routes declare are parsed; anything else gets 415.
  api.removeContentTypeParser('text/plain');

  // In this order, all before the body is read: check access (which tells who
  // the caller is), refuse excess load per caller and in all, then charge the
  // caller's write rate.
  const principals = installAuth(api, config.auth);
  const caller = (request: FastifyRequest): string => callerOf(principals, request);
  const limiter = createLogLimiter({
    logger: api.log, onSuppressed: (event) => metrics.logSuppressed.inc({ event }),
  });
  const refusals = installRefusals(api, { metrics, limiter, callerOf: caller });
  installConcurrencyLimit(api, {
    max: config.limits.maxConcurrentRequests,
    maxPerCaller: config.limits.maxConcurrentPerCaller,
    exempt: UNCAPPED_ROUTES,
    callerOf: caller,
    onRefused: (request, reason) => refusals.record(request, reason),
  });
  const quotas = createQuotas({ principals, documents, refusals, rates: deps.writeRates, creations: deps.creations });
  installWriteRate(api, quotas);
  installBodyTimeout(api, config.limits.bodyTimeoutMs, (request) => refusals.record(request, 'body_timeout'));

  // Names are checked before a request may wait for a version, so a bad name fails at once.
  api.addHook('preValidation', async (request) => {
    const params = (request.params ?? {}) as Record<string, string | undefined>;
    if (params['collection'] !== undefined) checkName(params['collection'], 'collection');
    if (params['id'] !== undefined) checkName(params['id'], 'id');
  });

  const session = createSession({ documents, replication, metrics, limits: config.limits, refusals, quotas, callerOf: caller });
  api.addHook('preHandler', async (request, reply) => {
    if (request.routeOptions.url?.startsWith('/v1/') === true) await session.awaitAfter(request, reply);
  });
  // Closing waits for requests in flight; a request waiting a minute for a version must not hold it up.
  api.addHook('preClose', async () => session.endWaits());

  await api.register(healthRoutes, {
    region: config.region, replication, metrics, shuttingDown: deps.shuttingDown, writesOpen: () => documents.writesOpen(),
    storageFault: () => documents.storageFault(),
    commitWaitingMs: () => documents.commitWaitingMs(),
  });
  await api.register(syncRoutes, { replication });
  await api.register(historyRoutes, { region: config.region, history: deps.history ?? new StatusHistory() });
  if (config.ui?.enabled === true) {
    await api.register(uiRoutes, { region: config.region, ui: config.ui, assets: deps.uiAssets ?? packagedUiAssets(), logger: deps.logger });
  }
  const reads = deps.reads ?? new SharedReads();
  await api.register(docRoutes, { documents, session, reads, caller, maxWriteNodes: config.limits.maxWriteNodes });
  await api.register(conflictRoutes, { documents, reads, caller });
  await api.register(yjsRoutes, { documents, session, reads, yjsUpdateBytes: config.limits.yjsUpdateBytes, caller });
  await api.register(eventRoutes, { documents, replication, log: deps.feedLog ?? null, limits: config.limits, metrics, callerOf: caller });
}
