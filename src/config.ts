/**
 * Region configuration: one JSON file per region, validated against a schema
 * that refuses unknown fields, completed with defaults, with relative paths
 * resolved against the file's folder, then frozen.
 */
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Ajv, type ErrorObject } from 'ajv';
import type { RegionId } from './ids.js';
import type { SyncMode } from './storage/sqlite-options.js';

/** pino levels; `silent` turns logging off. */
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
/**
 * `read` allows GET requests only; `read-write` allows every document request;
 * `status` allows `/v1/sync` and `/metrics` only (for monitoring).
 */
export type TokenScope = 'read' | 'read-write' | 'status';

/** A peer region this region replicates with (full mesh: list every other region). */
export interface PeerConfig {
  /** The peer's `region` name. Unique in the list and different from this region's. */
  readonly region: RegionId;
  /** Base URL of the peer's node, `http://` or `https://`; a trailing slash is removed. */
  readonly url: string;
}

/** Where the HTTP API and the replication endpoint listen. */
export interface ListenConfig {
  /** Interface to bind; default `127.0.0.1`. Use `0.0.0.0` in containers. */
  readonly host: string;
  /** TCP port, 0-65535; 0 picks a free port. Required. */
  readonly port: number;
}

/** The region's SQLite store and in-memory document cache. */
export interface StorageConfig {
  /**
   * SQLite `synchronous` setting (WAL mode). `full` (default): a write is
   * acknowledged once it would survive power loss. `normal`: survives a
   * process crash, may lose the last commits on power loss. `off`: tests only.
   */
  readonly synchronous: SyncMode;
  /** Documents kept in memory (least recently used are dropped); default 10000. */
  readonly cacheDocs: number;
  /**
   * Of those, at most this many kept decoded (the most recently used of
   * those in use); the rest are kept as their encoded state, a small
   * fraction of the memory, and decoded again on use. Default 5000.
   */
  readonly decodedDocs: number;
  /**
   * Most heap the documents held in memory take, about, in bytes: decoded
   * ones weighed by their structs and size, encoded ones by their bytes. A
   * document of many small keys takes 16 to 29 times its encoded size
   * decoded. Default 512 MiB.
   */
  readonly cacheBytes: number;
  /** Log entries a document gathers after its snapshot before it is compacted; default 32. */
  readonly compactAfterEntries: number;
  /** How often the compactor looks for documents to compact, in ms; default 1000. */
  readonly compactIntervalMs: number;
  /**
   * Log entries older than this (ms) are dropped even if a peer has not
   * acknowledged them; that peer then catches up by state transfer. Default 7 days.
   */
  readonly logRetentionMs: number;
  /** How often log entries acknowledged by every peer are dropped, in ms; default 5000. */
  readonly gcIntervalMs: number;
  /**
   * Group commits run on a writer thread with its own SQLite connection, so
   * that waiting for the disk never holds the thread serving requests and
   * links; default true. False commits on the main thread.
   */
  readonly writerThread: boolean;
}

/** Peer links, failure detection and anti-entropy. */
export interface ReplicationConfig {
  /** Interval of heartbeats on each peer link, in ms; default 1000. */
  readonly heartbeatMs: number;
  /** Missed heartbeats after which a peer is reported `suspect`; default 3. */
  readonly suspectAfterMisses: number;
  /** Silence after which a peer is `down` and its link is dropped, in ms; default 5000. */
  readonly deadAfterMs: number;
  /** First reconnect delay after a link fails, in ms (doubles with jitter); default 100. */
  readonly reconnectMinMs: number;
  /** Longest reconnect delay, in ms; default 10000. */
  readonly reconnectMaxMs: number;
  /** Interval of digest comparison with each peer (repairs anything missed), in ms; default 30000. */
  readonly antiEntropyMs: number;
  /**
   * After this region changed writer because a peer held more of its
   * writes than it did (a restore), how long until such a claim is followed
   * again, in ms; claims in between are refused (4400). Default 600000.
   */
  readonly writerChangeIntervalMs: number;
  /** Bytes of log entries sent per replication frame at most; default 256 KiB. */
  readonly batchBytes: number;
  /** Bytes queued on a link before sending pauses until the peer drains it; default 4 MiB. */
  readonly maxBufferedBytes: number;
  /**
   * Largest frame accepted from a peer; a larger one closes the link.
   * Default: room for the largest document concurrent writes can merge to,
   * see {@link frameBytesFor}.
   */
  readonly maxFrameBytes: number;
}

/** Limits of the HTTP API. */
export interface LimitsConfig {
  /** Largest request body; larger requests get 413. Default 1 MiB. */
  readonly bodyBytes: number;
  /**
   * Largest Yjs update a region accepts, from a client or a peer, and the
   * largest a local write may produce (beyond it: 413 `body_too_large`).
   * Default 1 MiB. Keep it equal across regions: an entry larger than a
   * peer's limit is quarantined there and reaches it only by state repair.
   */
  readonly yjsUpdateBytes: number;
  /**
   * Largest encoded Yjs state a local write may leave a document with
   * (beyond it: 413 `body_too_large`). Default 8 MiB. A document's whole
   * state travels in one frame (catch-up by state, rebuilds, conflicts): the
   * default `replication.maxFrameBytes` follows it (see frameBytesFor).
   */
  readonly maxDocumentBytes: number;
  /**
   * Most Yjs structs (items, and runs of deleted ones) a local write may
   * leave a document with (beyond it: 413 `too_complex`). Default 100,000.
   * Building a document costs time per struct, not per byte: 8 MiB of small
   * map values are 700,000 structs, and each cold read of such a document
   * held a region for seconds. Concurrent writes at every region can merge
   * a document to about the regions' count times this, which is what bounds
   * a cold read's time: keep that product in mind when raising it.
   */
  readonly maxDocumentStructs: number;
  /**
   * Most JSON nodes (objects, arrays and values, keys counted with their
   * values) one PUT, PATCH or ops write may hold; beyond it 413 `too_complex`.
   * Bounds the event-loop time one write takes. Default 5000.
   */
  readonly maxWriteNodes: number;
  /** Requests served at once; beyond this requests get 429. Default 256. */
  readonly maxConcurrentRequests: number;
  /**
   * Requests one caller (a token, or a client address when no tokens are
   * configured) may have in flight; beyond this its requests get 429.
   * Default a quarter of `maxConcurrentRequests` (64).
   */
  readonly maxConcurrentPerCaller: number;
  /** Time for a request body to arrive in full, in ms (at most `requestTimeoutMs`); then 408. Default 10000. */
  readonly bodyTimeoutMs: number;
  /** Requests that may wait for a version or for replicas at once; beyond this 503. Default 1024. */
  readonly maxWaiters: number;
  /** Time to receive a whole request, in ms; default 30000. */
  readonly requestTimeoutMs: number;
  /** Time to receive request headers, in ms (at most `requestTimeoutMs`); default 10000. */
  readonly headersTimeoutMs: number;
  /** Idle time before a keep-alive connection is closed, in ms; default 5000. */
  readonly keepAliveTimeoutMs: number;
  /** Inactivity time before a socket is closed, in ms; default 60000. */
  readonly connectionTimeoutMs: number;
  /** How long a request that asks to wait (for a version or for replicas) waits by default, in ms; default 5000. */
  readonly defaultWaitMs: number;
  /** Longest wait a request may ask for, in ms; default 60000. */
  readonly maxWaitMs: number;
  /**
   * Bytes of change-feed events that may wait unsent to one subscriber; a
   * consumer further behind is cut off with the position to resume from.
   * Default 1 MiB.
   */
  readonly feedQueueBytes: number;
  /** Change-feed streams one region serves at once; beyond this 503 `unavailable`. Default 1000. */
  readonly maxFeedSubscribers: number;
  /**
   * Change-feed streams one caller (a token, or a client address when no
   * tokens are configured) may hold open; beyond this 429. Default a
   * quarter of `maxFeedSubscribers` (250).
   */
  readonly maxFeedSubscribersPerCaller: number;
  /** Interval of the `: ping` comments on idle change-feed streams, in ms; default 15000. */
  readonly feedHeartbeatMs: number;
  /** Live (WebSocket) connections one document may have in a region; beyond this 503. Default 500. */
  readonly liveConnectionsPerDoc: number;
  /** Live connections a region may have; beyond this 503. Default 10000. */
  readonly liveConnections: number;
  /** Live connections one caller may hold; beyond this 429. Default a quarter of `liveConnections` (2500). */
  readonly liveConnectionsPerCaller: number;
  /**
   * Bytes queued for one live client beyond which it is dropped (it reconnects
   * and resyncs), so that one slow reader never slows the others. Default 4 MiB.
   */
  readonly liveSendBufferBytes: number;
  /** Interval of pings and keep-alive messages to live clients, in ms (below y-websocket's 30 s); default 10000. */
  readonly liveKeepAliveMs: number;
}

/** An access token for the HTTP API, sent as `Authorization: Bearer <token>`. */
export interface TokenConfig {
  /** The token itself, at least 16 characters. Never logged. */
  readonly token: string;
  /** `read` or `read-write`. */
  readonly scope: TokenScope;
  /**
   * Collections the token may access: exact names, or prefixes ending in `*`
   * (`app-*`). Omitted in the file means all collections, resolved as `["*"]`.
   */
  readonly collections: readonly string[];
  /** Label used in logs; default `auth.tokens[<index>]`. */
  readonly name: string;
  /** Limits on what this token may write; absent means none. */
  readonly quota?: TokenQuotaConfig;
}

/**
 * Per-token write limits, each off unless set. Counted by each region on its
 * own, in memory since it started (see README, Security model).
 */
export interface TokenQuotaConfig {
  /** Sustained writes per second (token bucket); beyond it 429 with `retry-after`. Null: unlimited. */
  readonly writesPerSecond: number | null;
  /** Writes allowed at once above the sustained rate; default `max(1, ceil(writesPerSecond))`. */
  readonly writeBurst: number;
  /** Documents the token may create; beyond it 403 `quota_exceeded`. Null: unlimited. */
  readonly maxDocuments: number | null;
}

/** Who may use the HTTP API. */
export interface AuthConfig {
  /** Accepted tokens. Empty (the default) leaves the API open to anyone who can reach it. */
  readonly tokens: readonly TokenConfig[];
  /** When true, `/metrics` also requires a token (any scope); default false. */
  readonly protectMetrics: boolean;
}

/** TLS for the HTTP API (https) and peer links (wss). Paths relative to the config file. */
export interface TlsConfig {
  /** CA certificate(s) that peers' certificates must chain to; null: the system's CAs. */
  readonly ca: string | null;
  /** This node's certificate (PEM). */
  readonly cert: string;
  /** This node's private key (PEM). */
  readonly key: string;
}

/** The dashboard served at `/ui`. */
export interface UiConfig {
  /** Serve the dashboard (static files; its data comes from the API with the API's tokens). Default true. */
  readonly enabled: boolean;
  /**
   * Base URL of a `meridian sim` control endpoint; when set, `POST /v1/sim/command`
   * forwards simulator commands there (a `read-write` token when auth is on).
   * Set by `meridian sim` only; default null.
   */
  readonly simControl: string | null;
}

/** Cross-origin requests from browser apps (CORS). */
export interface CorsConfig {
  /**
   * Origins (`https://app.example.com`, scheme, host and port, no path) whose
   * pages may call the API; `*` allows any page. Empty (the default) turns
   * CORS off: browsers then refuse cross-origin calls.
   */
  readonly origins: readonly string[];
}

/** A region's configuration, with every default filled in and every path absolute. */
export interface RegionConfig {
  /** This region's name: 1-32 characters of `a-z`, `0-9` and `-`. Required. */
  readonly region: RegionId;
  /** Cluster name; peers refuse links from a different cluster. Default `meridian`. */
  readonly cluster: string;
  /** Where the node listens. Required (at least `port`). */
  readonly listen: ListenConfig;
  /** Folder of the region's SQLite database; created if missing. Required. */
  readonly dataDir: string;
  /** The other regions of the cluster; default none (a single region). */
  readonly peers: readonly PeerConfig[];
  /** Shared by all regions of a cluster to authenticate peer links; at least 8 characters. Never logged. Required. */
  readonly secret: string;
  readonly storage: StorageConfig;
  readonly replication: ReplicationConfig;
  readonly limits: LimitsConfig;
  /** Access tokens; default none, which leaves the API open. */
  readonly auth: AuthConfig;
  /** Optional; null when the node speaks plain http/ws. */
  readonly tls: TlsConfig | null;
  /** `level`: one of fatal, error, warn, info (default), debug, trace, silent. */
  readonly log: { readonly level: LogLevel };
  /** Browser apps on other origins; default none (off). */
  readonly cors: CorsConfig;
  readonly ui: UiConfig;
}

const KIB = 1024;
const MIB = 1024 * KIB;

/** The part of {@link RegionConfig} that a config file may leave out. */
export type ConfigDefaults = Pick<RegionConfig, 'cluster' | 'peers' | 'storage' | 'replication' | 'limits' | 'auth' | 'tls' | 'log' | 'ui' | 'cors'> & {
  readonly listen: Pick<ListenConfig, 'host'>;
};

/** Every default, i.e. everything a config file may leave out. */
export const DEFAULTS: ConfigDefaults = deepFreeze({
  cluster: 'meridian',
  listen: { host: '127.0.0.1' },
  peers: [],
  storage: {
    synchronous: 'full',
    cacheDocs: 10_000,
    decodedDocs: 5000,
    cacheBytes: 512 * MIB,
    compactAfterEntries: 32,
    compactIntervalMs: 1000,
    logRetentionMs: 7 * 24 * 3600 * 1000,
    gcIntervalMs: 5000,
    writerThread: true,
  },
  replication: {
    heartbeatMs: 1000,
    suspectAfterMisses: 3,
    deadAfterMs: 5000,
    reconnectMinMs: 100,
    reconnectMaxMs: 10_000,
    antiEntropyMs: 30_000,
    writerChangeIntervalMs: 600_000,
    batchBytes: 64 * KIB,
    maxBufferedBytes: 4 * MIB,
    maxFrameBytes: 16 * MIB,
  },
  limits: {
    bodyBytes: MIB,
    yjsUpdateBytes: MIB,
    maxDocumentBytes: 8 * MIB,
    maxDocumentStructs: 100_000,
    maxWriteNodes: 5_000,
    maxConcurrentRequests: 256,
    maxConcurrentPerCaller: 64,
    bodyTimeoutMs: 10_000,
    maxWaiters: 1024,
    requestTimeoutMs: 30_000,
    headersTimeoutMs: 10_000,
    keepAliveTimeoutMs: 5000,
    connectionTimeoutMs: 60_000,
    defaultWaitMs: 5000,
    maxWaitMs: 60_000,
    feedQueueBytes: MIB,
    maxFeedSubscribers: 1000,
    maxFeedSubscribersPerCaller: 250,
    feedHeartbeatMs: 15_000,
    liveConnectionsPerDoc: 500,
    liveConnections: 10_000,
    liveConnectionsPerCaller: 2500,
    liveSendBufferBytes: 4 * MIB,
    liveKeepAliveMs: 10_000,
  },
  auth: { tokens: [], protectMetrics: false },
  tls: null,
  log: { level: 'info' },
  cors: { origins: [] },
  ui: { enabled: true, simControl: null },
});

/** One thing wrong with a config: where (`peers[0].url`, empty for the whole file) and what. */
export interface ConfigProblem {
  path: string;
  message: string;
}

/** A config file that cannot be read or is invalid. The message names the file, field and fault. */
export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly problems: readonly ConfigProblem[],
    options?: { cause?: unknown },
  ) {
    super(problems.map((p) => `${source}: ${p.path ? `${p.path}: ` : ''}${p.message}`).join('\n'), options);
    this.name = 'ConfigError';
  }
}

// Timers overflow above 2^31-1 ms and then fire at once.
const MAX_TIMER_MS = 2_147_483_647;
const PATTERN_HINTS: Record<string, string> = {
  '^[a-z0-9-]{1,32}$': 'must be 1-32 characters of a-z, 0-9 and -',
  '^[A-Za-z0-9._-]{1,64}$': 'must be 1-64 characters of A-Z, a-z, 0-9, ., _ and -',
  '^(?:[A-Za-z0-9._~-]{1,128}|[A-Za-z0-9._~-]{0,127}\\*)$': 'must be a collection name or a prefix ending in *',
};
const [REGION_RE, CLUSTER_RE, COLLECTION_RE] = Object.keys(PATTERN_HINTS) as [string, string, string];
const ORIGIN_RE = '^(?:\\*|https?://[^/?#\\s*]+/?)$';
PATTERN_HINTS[ORIGIN_RE] = "must be '*' or an origin: http(s)://host[:port] without path";

const strict = <T extends Record<string, TSchema>>(props: T) => Type.Object(props, { additionalProperties: false });
const int = (minimum: number, maximum = Number.MAX_SAFE_INTEGER) => Type.Integer({ minimum, maximum });
const ms = () => int(1, MAX_TIMER_MS);
const oneOf = <T extends string>(values: readonly T[]) => Type.Unsafe<T>({ type: 'string', enum: [...values] });
const text = (minLength: number, maxLength: number) => Type.String({ minLength, maxLength });

const StorageSchema = strict({
  synchronous: Type.Optional(oneOf<SyncMode>(['off', 'normal', 'full', 'extra'])),
  cacheDocs: Type.Optional(int(1)),
  decodedDocs: Type.Optional(int(1)),
  cacheBytes: Type.Optional(int(1)),
  compactAfterEntries: Type.Optional(int(1)),
  compactIntervalMs: Type.Optional(ms()),
  logRetentionMs: Type.Optional(int(1)),
  gcIntervalMs: Type.Optional(ms()),
  writerThread: Type.Optional(Type.Boolean()),
});
const ReplicationSchema = strict({
  heartbeatMs: Type.Optional(ms()),
  suspectAfterMisses: Type.Optional(int(1, 1000)),
  deadAfterMs: Type.Optional(ms()),
  reconnectMinMs: Type.Optional(ms()),
  reconnectMaxMs: Type.Optional(ms()),
  antiEntropyMs: Type.Optional(ms()),
  writerChangeIntervalMs: Type.Optional(ms()),
  batchBytes: Type.Optional(int(1)),
  maxBufferedBytes: Type.Optional(int(1)),
  maxFrameBytes: Type.Optional(int(1)),
});
const LimitsSchema = strict({
  bodyBytes: Type.Optional(int(1)),
  yjsUpdateBytes: Type.Optional(int(1)),
  maxDocumentBytes: Type.Optional(int(1)),
  maxDocumentStructs: Type.Optional(int(1)),
  maxWriteNodes: Type.Optional(int(1)),
  maxConcurrentRequests: Type.Optional(int(1)),
  maxConcurrentPerCaller: Type.Optional(int(1)),
  bodyTimeoutMs: Type.Optional(ms()),
  maxWaiters: Type.Optional(int(0)),
  requestTimeoutMs: Type.Optional(ms()),
  headersTimeoutMs: Type.Optional(ms()),
  keepAliveTimeoutMs: Type.Optional(ms()),
  connectionTimeoutMs: Type.Optional(ms()),
  defaultWaitMs: Type.Optional(int(0, MAX_TIMER_MS)),
  maxWaitMs: Type.Optional(int(0, MAX_TIMER_MS)),
  feedQueueBytes: Type.Optional(int(1024)),
  maxFeedSubscribers: Type.Optional(int(0)),
  maxFeedSubscribersPerCaller: Type.Optional(int(0)),
  feedHeartbeatMs: Type.Optional(int(100, MAX_TIMER_MS)),
  liveConnectionsPerDoc: Type.Optional(int(1)),
  liveConnections: Type.Optional(int(1)),
  liveConnectionsPerCaller: Type.Optional(int(1)),
  liveSendBufferBytes: Type.Optional(int(1024)),
  liveKeepAliveMs: Type.Optional(int(100, 25_000)),
});
const QuotaSchema = strict({
  writesPerSecond: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1e6 })),
  writeBurst: Type.Optional(int(1, 1e6)),
  maxDocuments: Type.Optional(int(0)),
});
const ConfigSchema = strict({
  region: Type.String({ pattern: REGION_RE }),
  cluster: Type.Optional(Type.String({ pattern: CLUSTER_RE })),
  listen: strict({ host: Type.Optional(text(1, 255)), port: int(0, 65535) }),
  dataDir: text(1, 4096),
  peers: Type.Optional(Type.Array(strict({ region: Type.String({ pattern: REGION_RE }), url: text(1, 2048) }))),
  secret: text(8, 4096),
  storage: Type.Optional(StorageSchema),
  replication: Type.Optional(ReplicationSchema),
  limits: Type.Optional(LimitsSchema),
  auth: Type.Optional(
    strict({
      tokens: Type.Optional(
        Type.Array(
          strict({
            token: text(16, 4096),
            scope: oneOf<TokenScope>(['read', 'read-write', 'status']),
            collections: Type.Optional(Type.Array(Type.String({ pattern: COLLECTION_RE }))),
            name: Type.Optional(text(1, 128)),
            quota: Type.Optional(QuotaSchema),
          }),
        ),
      ),
      protectMetrics: Type.Optional(Type.Boolean()),
    }),
  ),
  tls: Type.Optional(strict({ ca: Type.Optional(text(1, 4096)), cert: text(1, 4096), key: text(1, 4096) })),
  log: Type.Optional(strict({ level: Type.Optional(oneOf<LogLevel>(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])) })),
  cors: Type.Optional(strict({ origins: Type.Array(Type.String({ pattern: ORIGIN_RE, maxLength: 2048 }), { maxItems: 1000 }) })),
  ui: Type.Optional(strict({ enabled: Type.Optional(Type.Boolean()), simControl: Type.Optional(Type.Union([text(1, 2048), Type.Null()])) })),
});
type ConfigInput = Static<typeof ConfigSchema>;

// The numeric sections are declared twice (schema and interface); these fail to compile if they drift apart.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Assert<T extends true> = T;
export type _SchemaMatchesTypes = Assert<
  Same<Required<Static<typeof StorageSchema>>, StorageConfig> &
    Same<Required<Static<typeof ReplicationSchema>>, ReplicationConfig> &
    Same<Required<Static<typeof LimitsSchema>>, LimitsConfig>
>;

const validate = new Ajv({ allErrors: true, strict: true }).compile<ConfigInput>(ConfigSchema);

/** Reads, validates and resolves a region config file. Throws {@link ConfigError}. */
export function loadConfig(file: string): RegionConfig {
  return parseConfig(readConfigFile(file), path.dirname(path.resolve(file)), file);
}

/** Reads and parses a config file as JSON, unvalidated (see `config-env.ts`). Throws {@link ConfigError}. */
export function readConfigFile(file: string): unknown {
  let json: string;
  try {
    json = readFileSync(file, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : String(err);
    throw new ConfigError(file, [{ path: '', message: `cannot read config: ${reason}` }], { cause: err });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (err) {
    throw new ConfigError(file, [{ path: '', message: `invalid JSON: ${jsonErrorText(err, json)}` }], { cause: err });
  }
  return raw;
}

/**
 * Validates an already parsed config, fills defaults, resolves relative paths
 * against `baseDir` and returns a deeply frozen {@link RegionConfig}.
 * `source` names the config in error messages.
 */
export function parseConfig(raw: unknown, baseDir: string, source = 'config'): RegionConfig {
  if (!validate(raw)) {
    throw new ConfigError(source, (validate.errors ?? []).map(describeError));
  }
  const problems = crossCheck(raw, baseDir);
  if (problems.length > 0) throw new ConfigError(source, problems);
  return deepFreeze(resolve(raw, baseDir));
}

function resolve(c: ConfigInput, baseDir: string): RegionConfig {
  const abs = (p: string) => path.resolve(baseDir, p);
  return {
    region: c.region as RegionId,
    cluster: c.cluster ?? DEFAULTS.cluster,
    listen: { host: c.listen.host ?? DEFAULTS.listen.host, port: c.listen.port },
    dataDir: abs(c.dataDir),
    peers: (c.peers ?? []).map((p) => ({ region: p.region as RegionId, url: normalizeUrl(p.url) ?? p.url })),
    secret: c.secret,
    storage: { ...DEFAULTS.storage, ...c.storage },
    replication: resolveReplication(c),
    limits: resolveLimits(c.limits),
    auth: {
      tokens: (c.auth?.tokens ?? []).map((t, i) => ({
        token: t.token,
        scope: t.scope,
        collections: t.collections ?? ['*'],
        name: t.name ?? `auth.tokens[${i}]`,
        ...(t.quota === undefined ? {} : { quota: resolveQuota(t.quota) }),
      })),
      protectMetrics: c.auth?.protectMetrics ?? DEFAULTS.auth.protectMetrics,
    },
    tls: c.tls ? { ca: c.tls.ca === undefined ? null : abs(c.tls.ca), cert: abs(c.tls.cert), key: abs(c.tls.key) } : null,
    log: { level: c.log?.level ?? DEFAULTS.log.level },
    // Browsers send the origin without a trailing slash; compare like with like.
    cors: { origins: (c.cors?.origins ?? []).map((o) => o.replace(/\/$/, '')) },
    ui: {
      enabled: c.ui?.enabled ?? DEFAULTS.ui.enabled,
      simControl: c.ui?.simControl == null ? null : (normalizeUrl(c.ui.simControl) ?? c.ui.simControl),
    },
  };
}

/**
 * The frame bound a cluster of `regions` needs: each region lets a local
 * write grow a document to `maxDocumentBytes` as it sees it, so concurrent
 * writes in a partition can merge one to about `regions` times that, and a
 * document's whole state must still fit one frame to be repaired or rebuilt
 * by state. 1 MiB for the frame's own fields.
 */
export function frameBytesFor(regions: number, maxDocumentBytes: number): number {
  return regions * maxDocumentBytes + MIB;
}

/**
 * What merges from peers may grow a document to: what concurrent writes in
 * a partition can merge one to (see {@link frameBytesFor}), each region's
 * share with the 1/64 a local write may pass `maxDocumentBytes` by
 * (docs/size-guard.ts). Past it a peer's entry or state is refused, so that
 * a buggy or hostile peer cannot grow a document until its state no longer
 * fits a frame.
 */
export function mergedDocumentBytesFor(regions: number, maxDocumentBytes: number): number {
  return regions * (maxDocumentBytes + Math.floor(maxDocumentBytes / 64));
}

/**
 * What merges from peers may grow a document to in structs: each region
 * holds its own writes to `maxDocumentStructs` as it sees a document, so
 * concurrent writes in a partition merge one to about `regions` times that;
 * a 64th more for the items a merge splits where two regions' changes
 * meet. Past it a peer's entry or state is refused.
 */
export function mergedDocumentStructsFor(regions: number, maxDocumentStructs: number): number {
  return regions * (maxDocumentStructs + Math.floor(maxDocumentStructs / 64));
}

/** `replication.maxFrameBytes` defaults to what the cluster needs, and at least 16 MiB. */
function resolveReplication(c: ConfigInput): ReplicationConfig {
  const needed = frameBytesFor((c.peers ?? []).length + 1, resolveLimits(c.limits).maxDocumentBytes);
  return { ...DEFAULTS.replication, maxFrameBytes: Math.max(DEFAULTS.replication.maxFrameBytes, needed), ...c.replication };
}

/** Each per-caller cap is a quarter of the region's bound it shares unless set. */
function resolveLimits(given: ConfigInput['limits']): LimitsConfig {
  const quarter = (of: number): number => Math.min(of, Math.max(1, Math.floor(of / 4)));
  const shares = {
    maxConcurrentPerCaller: quarter(given?.maxConcurrentRequests ?? DEFAULTS.limits.maxConcurrentRequests),
    maxFeedSubscribersPerCaller: quarter(given?.maxFeedSubscribers ?? DEFAULTS.limits.maxFeedSubscribers),
    liveConnectionsPerCaller: quarter(given?.liveConnections ?? DEFAULTS.limits.liveConnections),
  };
  return { ...DEFAULTS.limits, ...shares, ...given };
}

function resolveQuota(q: Static<typeof QuotaSchema>): TokenQuotaConfig {
  const writesPerSecond = q.writesPerSecond ?? null;
  return {
    writesPerSecond,
    writeBurst: q.writeBurst ?? Math.max(1, Math.ceil(writesPerSecond ?? 1)),
    maxDocuments: q.maxDocuments ?? null,
  };
}

/** Checks that span several fields, run once the shape is known to be right. */
function crossCheck(c: ConfigInput, baseDir: string): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const order = (a: string, b: string, va: number, vb: number) => {
    if (va > vb) problems.push({ path: a, message: `must be <= ${b} (${vb})` });
  };
  const seen = new Map<string, number>();
  (c.peers ?? []).forEach((p, i) => {
    if (p.region === c.region) problems.push({ path: `peers[${i}].region`, message: `must differ from region '${c.region}'` });
    const first = seen.get(p.region);
    if (first !== undefined) problems.push({ path: `peers[${i}].region`, message: `duplicates peers[${first}].region '${p.region}'` });
    else seen.set(p.region, i);
    if (normalizeUrl(p.url) === null) {
      problems.push({ path: `peers[${i}].url`, message: 'must be an http:// or https:// URL without credentials, query or fragment' });
    }
  });
  const tokens = new Map<string, number>();
  (c.auth?.tokens ?? []).forEach((t, i) => {
    const first = tokens.get(t.token);
    // The value itself stays out of the message: error messages get logged.
    if (first !== undefined) problems.push({ path: `auth.tokens[${i}].token`, message: `duplicates auth.tokens[${first}].token` });
    else tokens.set(t.token, i);
  });
  for (const field of ['ca', 'cert', 'key'] as const) {
    const file = c.tls?.[field];
    if (file !== undefined && statSync(path.resolve(baseDir, file), { throwIfNoEntry: false })?.isFile() !== true) {
      problems.push({ path: `tls.${field}`, message: `file not found: ${path.resolve(baseDir, file)}` });
    }
  }
  if (c.ui?.simControl != null && normalizeUrl(c.ui.simControl) === null) {
    problems.push({ path: 'ui.simControl', message: 'must be an http:// or https:// URL without credentials, query or fragment' });
  }
  const r = resolveReplication(c);
  const l = resolveLimits(c.limits);
  order('replication.reconnectMinMs', 'replication.reconnectMaxMs', r.reconnectMinMs, r.reconnectMaxMs);
  order('replication.heartbeatMs', 'replication.deadAfterMs', r.heartbeatMs, r.deadAfterMs);
  order('replication.batchBytes', 'replication.maxFrameBytes', r.batchBytes, r.maxFrameBytes);
  order('limits.headersTimeoutMs', 'limits.requestTimeoutMs', l.headersTimeoutMs, l.requestTimeoutMs);
  order('limits.bodyTimeoutMs', 'limits.requestTimeoutMs', l.bodyTimeoutMs, l.requestTimeoutMs);
  order('limits.maxConcurrentPerCaller', 'limits.maxConcurrentRequests', l.maxConcurrentPerCaller, l.maxConcurrentRequests);
  order('limits.maxFeedSubscribersPerCaller', 'limits.maxFeedSubscribers', l.maxFeedSubscribersPerCaller, l.maxFeedSubscribers);
  order('limits.liveConnectionsPerCaller', 'limits.liveConnections', l.liveConnectionsPerCaller, l.liveConnections);
  order('limits.defaultWaitMs', 'limits.maxWaitMs', l.defaultWaitMs, l.maxWaitMs);
  return problems;
}

/** The peer base URL without a trailing slash, or null if it is not an acceptable http(s) URL. */
function normalizeUrl(s: string): string | null {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return null;
  }
  const ok = (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '' && !u.username && !u.password;
  if (!ok || u.search || u.hash || s.includes('?') || s.includes('#')) return null;
  return `${u.origin}${u.pathname.replace(/\/+$/, '')}`;
}

function describeError(e: ErrorObject): ConfigProblem {
  const at = fieldPath(e.instancePath);
  const p = e.params as Record<string, unknown>;
  const join = (name: unknown) => (at ? `${at}.${String(name)}` : String(name));
  switch (e.keyword) {
    case 'additionalProperties':
      return { path: at, message: `unknown field '${String(p.additionalProperty)}'` };
    case 'required':
      return { path: join(p.missingProperty), message: 'is required' };
    case 'type': {
      const type = String(p.type);
      return { path: at, message: `must be ${/^[aeiou]/.test(type) ? 'an' : 'a'} ${type}` };
    }
    case 'enum':
      return { path: at, message: `must be one of ${(p.allowedValues as unknown[]).join('|')}` };
    case 'pattern':
      return { path: at, message: PATTERN_HINTS[String(p.pattern)] ?? `must match ${String(p.pattern)}` };
    case 'minLength':
      return { path: at, message: `must be at least ${String(p.limit)} characters` };
    case 'maxLength':
      return { path: at, message: `must be at most ${String(p.limit)} characters` };
    case 'minimum':
    case 'maximum':
      return { path: at, message: `must be ${String(p.comparison)} ${String(p.limit)}` };
    default:
      return { path: at, message: e.message ?? `fails ${e.keyword}` };
  }
}

/** `/peers/0/url` -> `peers[0].url` */
function fieldPath(pointer: string): string {
  return pointer
    .split('/')
    .slice(1)
    .map((seg) => seg.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((acc, seg) => (/^\d+$/.test(seg) ? `${acc}[${seg}]` : acc ? `${acc}.${seg}` : seg), '');
}

/** V8's JSON errors give an offset; a line and column are easier to find in an editor. */
function jsonErrorText(err: unknown, json: string): string {
  const message = err instanceof Error ? err.message : String(err);
  const at = /at position (\d+)/.exec(message);
  if (!at || /line \d+/.test(message)) return message;
  const before = json.slice(0, Number(at[1])).split('\n');
  return `${message} (line ${before.length} column ${(before.at(-1)?.length ?? 0) + 1})`;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
