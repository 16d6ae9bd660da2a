/**
 * The composition root: the one place that builds the concrete parts of a
 * region (store, documents, replication, HTTP API) and wires them together.
 */
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { frameBytesFor, mergedDocumentBytesFor, mergedDocumentStructsFor, type RegionConfig, type TlsConfig } from './config.js';
import type { RegionId } from './ids.js';
import { openStore } from './storage/sqlite.js';
import { lockDir } from './lockfile.js';
import { rebuildMark } from './rebuild-mark.js';
import { createDocuments } from './docs/documents.js';
import { rebuiltDocs, refusedDocLoads } from './crdt/index.js';
import { createMetrics } from './metrics.js';
import { buildApp } from './api/app.js';
import { Replicator, type ReplicationOptions } from './replication/replicator.js';
import { acceptLinks, dialLink, type LinkOptions, type TlsMaterial } from './replication/transport.js';
import type { ApiConfig } from './api/app.js';
import { StatusHistory, startSampler } from './api/status-history.js';
import { liveRoutes } from './api/routes-live.js';
import { createDocumentCreations, createWriteRates } from './api/quotas.js';
import { SharedReads } from './api/shared-reads.js';
import { Rooms } from './live/rooms.js';
import { BackgroundPacer } from './pacer.js';

export interface RunningRegion {
  /** Base URL the region serves on. */
  url: string;
  /** Stops taking requests, finishes in-flight writes, closes the database. */
  close(): Promise<void>;
}

/**
 * `onFatal`: the region can take no more writes until its process starts
 * again (its writer thread ended); without it the region stays up and
 * answers every write 503.
 */
export async function startRegion(config: RegionConfig, opts: { logger: Logger; onFatal?: (err: Error) => void }): Promise<RunningRegion> {
  const logger = opts.logger;
  const region = config.region as RegionId;
  const frameNeeded = frameBytesFor(config.peers.length + 1, config.limits.maxDocumentBytes);
  if (config.replication.maxFrameBytes < frameNeeded) {
    logger.warn(
      { maxFrameBytes: config.replication.maxFrameBytes, needed: frameNeeded },
      'replication.maxFrameBytes is below the size concurrent writes can merge a document to (regions × limits.maxDocumentBytes): such a document could not be repaired or rebuilt by state; raise it at every region, or lower limits.maxDocumentBytes',
    );
  }
  // Before anything opens the database: a second process on it is refused.
  const lock = lockDir(config.dataDir, `region ${region}`);
  let store: ReturnType<typeof openStore>;
  try {
    store = openStore({
      dataDir: config.dataDir, region, synchronous: config.storage.synchronous, writerThread: config.storage.writerThread, logger,
      onWriterLost: (err) => {
        logger.fatal({ err }, 'writer thread ended: no write can be taken until the region starts again');
        opts.onFatal?.(err);
      },
    });
  } catch (err) {
    lock.release();
    throw err;
  }
  // Local writes wait for the first word from a peer: a data directory
  // restored from a backup must learn that before it writes under its old
  // writer id, and an empty one (new, or wiped) rebuilds from its peers first.
  const hasPeers = config.peers.length > 0;
  const rebuild = hasPeers ? rebuildMark(config.dataDir, store.versionVector().size === 0) : null;
  const rebuilding = rebuild !== null;
  let openWrites: () => void = () => undefined;
  const writesOpen = hasPeers ? new Promise<void>((resolve) => (openWrites = resolve)) : undefined;
  // One share of the event loop for catch-up, however many links and commits do it.
  const pacer = new BackgroundPacer();
  const documents = createDocuments({
    pacer,
    ...(writesOpen ? { writesOpen } : {}),
    store, logger: logger.child({ module: 'documents' }),
    cacheDocs: config.storage.cacheDocs,
    decodedDocs: config.storage.decodedDocs,
    cacheBytes: config.storage.cacheBytes,
    yjsUpdateBytes: config.limits.yjsUpdateBytes,
    maxDocumentBytes: config.limits.maxDocumentBytes,
    maxMergedDocumentBytes: mergedDocumentBytesFor(config.peers.length + 1, config.limits.maxDocumentBytes),
    maxDocumentStructs: config.limits.maxDocumentStructs,
    maxMergedDocumentStructs: mergedDocumentStructsFor(config.peers.length + 1, config.limits.maxDocumentStructs),
    maxWriteNodes: config.limits.maxWriteNodes,
    compactAfterEntries: config.storage.compactAfterEntries,
    compactIntervalMs: config.storage.compactIntervalMs,
  });
  const metrics = createMetrics(region, { processMetrics: true });
  let corruptCounted = 0;
  let conflictsCounted = 0;
  let commitsRefusedCounted = 0;
  let decodedAgainCounted = 0;
  let reloadedCounted = 0;
  let checksCounted = { made: 0, putOff: 0, keptUnsettled: 0 };
  let rebuiltCounted = rebuiltDocs();
  let loadsRefusedCounted = refusedDocLoads();
  let withheldCounted = 0;
  let coldRendersCounted = 0;
  let judgedCounted = 0;
  const quarantineCounted = new Map<RegionId, number>();
  metrics.onCollect(() => {
    const stats = store.stats();
    metrics.corruptEntries.inc(stats.corruptEntries - corruptCounted);
    corruptCounted = stats.corruptEntries;
    metrics.databaseBytes.set(stats.dbBytes);
    metrics.documentsLoaded.set(documents.cachedDocs());
    metrics.documentsHeldBytes.set(documents.cachedBytes());
    metrics.documentsDecodedAgain.inc(documents.decodedAgain() - decodedAgainCounted);
    decodedAgainCounted = documents.decodedAgain();
    metrics.pendingDocs.set(documents.pendingDocs());
    metrics.commitsRefused.inc(documents.refusedCommits() - commitsRefusedCounted);
    commitsRefusedCounted = documents.refusedCommits();
    metrics.documentsReloaded.inc(documents.reloadedDocs() - reloadedCounted);
    reloadedCounted = documents.reloadedDocs();
    const checks = documents.peerReloadChecks();
    metrics.reloadChecks.inc({ check: 'made' }, checks.made - checksCounted.made);
    metrics.reloadChecks.inc({ check: 'put_off' }, checks.putOff - checksCounted.putOff);
    metrics.reloadChecks.inc({ check: 'kept_unsettled' }, checks.keptUnsettled - checksCounted.keptUnsettled);
    checksCounted = checks;
    metrics.coldRenders.inc(documents.coldRenders() - coldRendersCounted);
    coldRendersCounted = documents.coldRenders();
    metrics.conflictsJudgedOffLoop.inc(documents.conflictsJudgedOffLoop() - judgedCounted);
    judgedCounted = documents.conflictsJudgedOffLoop();
    // Counted by the process: a region has one of its own but in `meridian dev`.
    metrics.mergesRebuilt.inc(rebuiltDocs() - rebuiltCounted);
    rebuiltCounted = rebuiltDocs();
    metrics.loadsRefused.inc(refusedDocLoads() - loadsRefusedCounted);
    loadsRefusedCounted = refusedDocLoads();
    metrics.snapshotsWithheld.inc(documents.withheldSnapshots() - withheldCounted);
    withheldCounted = documents.withheldSnapshots();
    // Counted from the table: the total survives restarts.
    metrics.conflicts.inc(documents.conflictCount() - conflictsCounted);
    conflictsCounted = documents.conflictCount();
    for (const [peer, count] of store.quarantine.counts()) {
      // Counted from the table: the total survives restarts.
      metrics.quarantinedEntries.inc({ peer }, count - (quarantineCounted.get(peer) ?? 0));
      quarantineCounted.set(peer, count);
    }
  });
  // Read once: the HTTP server and every dial share the same material.
  const tls = loadTls(config.tls);
  const linkConfig = linkOptions(config, tls);
  const replicator = new Replicator({
    config: replicationOptions(config), documents, store, logger, metrics, pacer,
    dial: (peer) => dialLink(peer, { link: linkConfig, logger }),
  });
  const history = new StatusHistory();
  // One write rate per token, whether it writes over HTTP or a live connection.
  const writeRates = createWriteRates();
  const creations = createDocumentCreations(documents);
  const reads = new SharedReads();
  const app = buildApp({
    config: apiConfig(config), documents, replication: replicator, metrics, logger, history, feedLog: store, writeRates, creations, reads,
    ...(tls ? { https: tls } : {}),
  });
  await acceptLinks(app, {
    link: linkConfig, logger, metrics,
    onLink: (peer, link) => replicator.attach(peer, link),
    onRefused: (claimed, reason) => replicator.refused(claimed, reason),
  });
  // Live clients: after the links, whose registration brings the WebSocket plugin.
  const rooms = new Rooms({
    maxPerDoc: config.limits.liveConnectionsPerDoc, maxTotal: config.limits.liveConnections,
    relay: replicator, versionVector: () => documents.versionVector(), stateOf: (doc) => documents.readYjs(doc),
    onPeerPresenceDropped: (peer) => metrics.framesRejected.inc({ peer, reason: 'awareness_bound' }),
  });
  const stopLive = documents.onCommitted((entries) => rooms.committed(entries));
  const stopLiveStates = documents.onStateChanged((changes) => rooms.stateChanged(changes));
  await app.register(liveRoutes, {
    documents, rooms, reads, limits: config.limits, auth: config.auth, metrics, logger: logger.child({ module: 'live' }), writeRates, creations,
  });

  try {
    await app.listen({ host: config.listen.host, port: config.listen.port });
  } catch (err) {
    await documents.close();
    await store.close();
    lock.release();
    throw err;
  }
  replicator.start();
  const sampler = startSampler({
    history, status: () => ({ peers: replicator.peerStatuses() }),
    onError: (err) => logger.warn({ err }, 'status sample failed'),
  });
  if (hasPeers) {
    const waitMs = config.replication.deadAfterMs * 3;
    if (rebuilding) logger.info({ waitMs }, 'rebuilding from the peers (an empty data directory, or a rebuild not finished): holding writes until caught up with them');
    const ready = rebuilding ? replicator.caughtUpWithPeers(waitMs) : replicator.heardFromAPeer(waitMs);
    void ready.then((ok) => {
      if (ok && rebuilding) logger.info('caught up with the peers; taking writes');
      else if (!ok && rebuilding) logger.warn({ waitMs }, 'not caught up with the peers in time; taking writes while the rebuild goes on');
      else if (!ok) logger.warn({ waitMs }, 'no peer answered; taking writes alone');
      openWrites();
      if (rebuild === null) return;
      const over = (): void => {
        const err = rebuild.done();
        if (err) logger.warn({ err }, 'the rebuild is over, but its mark could not be removed: the next start holds writes until caught up again');
      };
      if (ok) return over();
      // The mark stays until the rebuild is over, so that a restart before then holds writes again.
      const check = setInterval(() => {
        if (closing === null && !replicator.holdsWhatPeersHeld(true)) return;
        clearInterval(check);
        if (closing === null) over();
      }, config.replication.heartbeatMs).unref();
    });
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.listen.port;
  const scheme = config.tls ? 'https' : 'http';
  const url = `${scheme}://${config.listen.host === '0.0.0.0' ? '127.0.0.1' : config.listen.host}:${port}`;
  logger.info({ url, writer: documents.writer, peers: config.peers.length, auth: config.auth.tokens.length > 0 }, 'region serving');

  let closing: Promise<void> | null = null;
  return {
    url,
    close: () =>
      (closing ??= (async () => {
        sampler.stop();
        await replicator.close();
        await app.close();
        stopLive();
        stopLiveStates();
        rooms.close();
        await documents.close();
        await store.close();
        lock.release();
        logger.info('region stopped');
      })()),
  };
}

// Each part gets a copy of only the fields it uses, so that the secret and the
// API tokens are not even reachable from parts that have no use for them.

/** Reads the certificate, key and CA files named in the configuration; null without TLS. */
export function loadTls(tls: TlsConfig | null): TlsMaterial | null {
  if (!tls) return null;
  return { key: readFileSync(tls.key), cert: readFileSync(tls.cert), ...(tls.ca ? { ca: readFileSync(tls.ca) } : {}) };
}

/** Replication's slice: identity, peers, timings and log retention; no secret, no tokens. */
export function replicationOptions(c: RegionConfig): ReplicationOptions {
  const { gcIntervalMs, logRetentionMs } = c.storage;
  return { region: c.region, peers: c.peers, replication: c.replication, storage: { gcIntervalMs, logRetentionMs } };
}

/** The links' slice: identity, the cluster secret, link bounds and TLS material; no tokens. */
export function linkOptions(c: RegionConfig, tls: TlsMaterial | null): LinkOptions {
  const { maxFrameBytes, heartbeatMs } = c.replication;
  return { region: c.region, cluster: c.cluster, secret: c.secret, peers: c.peers.map((p) => p.region), maxFrameBytes, heartbeatMs, tls };
}

/** The API's slice: identity, limits, tokens, CORS origins and the dashboard switch; no secret. */
export function apiConfig(c: RegionConfig): ApiConfig {
  return { region: c.region, limits: c.limits, auth: c.auth, cors: c.cors, ui: c.ui };
}
