/**
 * A region's HTTP app composed as src/region.ts composes it (API, peer link
 * routes, live routes) over a real SQLite store, with every route it
 * registers recorded through fastify's `onRoute` hook, for the OpenAPI tests.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { buildApp } from '../../src/api/app.js';
import { liveRoutes } from '../../src/api/routes-live.js';
import { createDocumentCreations, createWriteRates } from '../../src/api/quotas.js';
import { parseConfig } from '../../src/config.js';
import { createDocuments } from '../../src/docs/documents.js';
import { Rooms } from '../../src/live/rooms.js';
import { createMetrics } from '../../src/metrics.js';
import { apiConfig, linkOptions } from '../../src/region.js';
import { acceptLinks } from '../../src/replication/transport.js';
import { openStore } from '../../src/storage/sqlite.js';
import { standaloneReplicationView } from './api-node.js';
import { SharedReads } from '../../src/api/shared-reads.js';

/** One registered route: its method and fastify URL (`/v1/docs/:collection`). */
export interface RegisteredRoute {
  method: string;
  url: string;
}

export interface RecordedApp {
  app: FastifyInstance;
  routes: RegisteredRoute[];
  close(): Promise<void>;
}

/** Builds the app with every optional part on (dashboard, simulator control) and records its routes. */
export async function buildRecordedApp(): Promise<RecordedApp> {
  const dir = mkdtempSync(path.join(tmpdir(), 'meridian-openapi-'));
  const config = parseConfig({
    region: 'us-east', listen: { port: 0 }, dataDir: path.join(dir, 'data'), secret: 'openapi-test-secret-0123',
    peers: [{ region: 'eu-west', url: 'http://127.0.0.1:1' }],
    ui: { enabled: true, simControl: 'http://127.0.0.1:2' },
  }, dir);
  const logger = pino({ level: 'silent' });
  const store = openStore({ dataDir: config.dataDir, region: config.region, synchronous: 'off', logger });
  const documents = createDocuments({ store, logger, cacheDocs: 100, yjsUpdateBytes: config.limits.yjsUpdateBytes });
  const metrics = createMetrics(config.region);
  const app = buildApp({
    config: apiConfig(config), documents, replication: standaloneReplicationView(documents, config.region), metrics, logger,
  });
  const routes: RegisteredRoute[] = [];
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) routes.push({ method, url: route.url });
  });
  await acceptLinks(app, { link: linkOptions(config, null), logger, metrics, onLink: () => undefined, onRefused: () => undefined });
  const rooms = new Rooms({
    maxPerDoc: config.limits.liveConnectionsPerDoc, maxTotal: config.limits.liveConnections, versionVector: () => documents.versionVector(),
    stateOf: (doc) => documents.readYjs(doc),
  });
  await app.register(liveRoutes, { documents, rooms, reads: new SharedReads(), limits: config.limits, auth: config.auth, metrics, logger, writeRates: createWriteRates(), creations: createDocumentCreations(documents) });
  await app.ready();
  return {
    app,
    routes,
    close: async () => {
      await app.close();
      await documents.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
