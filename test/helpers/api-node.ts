/**
 * A real region node for API tests: a SQLite store in a temp dir, the real
 * write path, the HTTP app (driven with `inject`, no socket), and a
 * replication view for a region without live peers.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import type { FastifyInstance } from 'fastify';
import { DEFAULTS, type AuthConfig, type LimitsConfig, type TokenConfig } from '../../src/config.js';
import type { DocKey, RegionId } from '../../src/ids.js';
import type { Documents } from '../../src/docs/types.js';
import { createDocuments } from '../../src/docs/documents.js';
import { openStore } from '../../src/storage/sqlite.js';
import type { Store } from '../../src/storage/types.js';
import { isolatedOf, type PeerStatus, type ReplicationView } from '../../src/replication/types.js';
import { createMetrics, type Metrics } from '../../src/metrics.js';
import { buildApp } from '../../src/api/app.js';

const POLL_MS = 5;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Replication as seen by a region whose peers (if any) never answer: versions
 * are reached only by local writes, and a write is held by this region alone.
 * `peers` lets a test describe configured peers that are down.
 */
export function standaloneReplicationView(
  documents: Documents,
  region: RegionId,
  peers: PeerStatus[] = [],
): ReplicationView {
  return {
    settled: () => documents.digests.settled(),
    peerStatuses: () => peers,
    status: () => ({
      region,
      writer: documents.writer,
      digest: '',
      isolated: isolatedOf(peers),
      pendingDocs: documents.pendingDocs(),
      conflicts: documents.conflictCount(),
      agree: peers.length === 0 && documents.pendingDocs() === 0,
      peers,
    }),
    docStatus: (doc: DocKey) => ({
      doc,
      deleted: false,
      latestLocal: null,
      latest: [],
      regions: [{ region, hasLatest: true, missingUpdates: 0, missingUpdatesCapped: false, lagMs: 0 }],
    }),
    async waitForVersion(vv, timeoutMs, signal) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const have = documents.versionVector();
        if ([...vv].every(([writer, seq]) => (have.get(writer) ?? 0) >= seq)) return true;
        if (Date.now() >= deadline || signal?.aborted === true) return false;
        await sleep(Math.min(POLL_MS, Math.max(0, deadline - Date.now())));
      }
    },
    async waitForReplicas(_held, replicas, timeoutMs) {
      // The local write is durable once acknowledged; nobody else will ever confirm it.
      if (replicas <= 1) return true;
      await sleep(timeoutMs);
      return false;
    },
  };
}

/** A configured peer that is down. */
export function downPeer(region: string): PeerStatus {
  return {
    region: region as RegionId,
    url: `http://127.0.0.1:1/${region}`,
    state: 'down',
    rttMs: null,
    lastSeenMs: null,
    route: 'none',
    lastError: 'connection refused',
    outbound: { pendingUpdates: 0, pendingBytes: 0, lagMs: 0 },
    inbound: { pendingUpdates: 0, lagMs: 0, quarantined: 0 },
    digest: null,
    links: [],
    reportAgeMs: null,
  };
}

export interface ApiNodeOptions {
  region?: string;
  limits?: Partial<LimitsConfig>;
  tokens?: Partial<TokenConfig>[];
  protectMetrics?: boolean;
  peers?: PeerStatus[];
  /** Collects every log line (JSON) written by the node, at level trace. */
  logLines?: string[];
  shuttingDown?: () => boolean;
}

export interface ApiNode {
  app: FastifyInstance;
  documents: Documents;
  store: Store;
  metrics: Metrics;
  region: RegionId;
  close(): Promise<void>;
}

/** Starts a node in a fresh temp dir; `close()` stops it and removes the dir. */
export async function startApiNode(options: ApiNodeOptions = {}): Promise<ApiNode> {
  const region = (options.region ?? 'test') as RegionId;
  const dir = mkdtempSync(path.join(tmpdir(), 'meridian-api-'));
  const logger = makeLogger(options.logLines);
  const limits: LimitsConfig = { ...DEFAULTS.limits, ...options.limits };
  const auth: AuthConfig = {
    tokens: (options.tokens ?? []).map((t, i) => ({
      token: t.token ?? `token-${i}-0123456789abcdef`,
      scope: t.scope ?? 'read-write',
      collections: t.collections ?? ['*'],
      name: t.name ?? `token ${i}`,
      ...(t.quota === undefined ? {} : { quota: t.quota }),
    })),
    protectMetrics: options.protectMetrics ?? false,
  };
  const store = openStore({ dataDir: dir, region, synchronous: 'off', logger });
  const documents = createDocuments({ store, logger, cacheDocs: 100, yjsUpdateBytes: limits.yjsUpdateBytes });
  const metrics = createMetrics(region);
  const replication = standaloneReplicationView(documents, region, options.peers);
  const app = buildApp({
    config: { region, limits, auth },
    documents,
    replication,
    metrics,
    logger,
    ...(options.shuttingDown === undefined ? {} : { shuttingDown: options.shuttingDown }),
  });
  await app.ready();
  return {
    app,
    documents,
    store,
    metrics,
    region,
    async close() {
      await app.close();
      await documents.close();
      store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function makeLogger(lines: string[] | undefined): Logger {
  if (lines === undefined) return pino({ level: 'silent' });
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter((l) => l.length > 0));
      done();
    },
  });
  return pino({ level: 'trace' }, sink);
}
