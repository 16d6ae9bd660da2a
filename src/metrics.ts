/**
 * The metrics of one region node. Each node has its own prom-client registry
 * (never the global one), so several regions can run in one process, as they
 * do in tests. Modules update the typed fields; `/metrics` renders them.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type LabelValues } from 'prom-client';

/**
 * A render of the registry (about 1.3 ms with its collect hooks) waits after
 * the one before for this many times as long: `/metrics` is never capped, and
 * 16 clients scraping it without pause held a region's writes 8 times as long
 * (p50 38 ms against 4.7 polling `/healthz`).
 */
const RENDER_SPACING = 10;
/** ... but never longer than this, ms (a render slowed by a collection pause). */
const MAX_RENDER_WAIT_MS = 1000;

/** Work run before each scrape, to copy values that live elsewhere into gauges. */
export type CollectHook = () => void | Promise<void>;

/**
 * A gauge set in milliseconds, the unit its callers measure in, and exposed
 * in seconds, the base unit Prometheus expects (its name ends in `_seconds`).
 */
export interface MillisecondsGauge<L extends string> {
  set(labels: LabelValues<L>, ms: number): void;
}

/** Kinds of committed writes, for {@link Metrics.writes} and {@link Metrics.writeLatencySeconds}. */
export type WriteKind = 'put' | 'patch' | 'ops' | 'delete' | 'yjs' | 'remote';

export interface Metrics {
  readonly registry: Registry;
  /** HTTP request duration in seconds, by method, route pattern and status. */
  readonly httpRequestSeconds: Histogram<'method' | 'route' | 'status'>;
  /**
   * Time from a write entering the write path to its durable commit, in
   * seconds. The API records local writes; whoever applies peers' entries records `remote`.
   */
  readonly writeLatencySeconds: Histogram<'kind'>;
  /** Committed writes (local ones counted by the API, `remote` by replication). */
  readonly writes: Counter<'kind'>;
  /** Documents held in memory. */
  readonly documentsLoaded: Gauge;
  /** About the heap the documents held in memory take (bounded by `storage.cacheBytes`). */
  readonly documentsHeldBytes: Gauge;
  /** Documents decoded again from the encoded form the cache held them in (see `storage.decodedDocs`). */
  readonly documentsDecodedAgain: Counter;
  /** Size of the SQLite database in bytes. */
  readonly databaseBytes: Gauge;
  /** Replication lag to or from a peer (direction `outbound` or `inbound`); set in ms, exposed in seconds. */
  readonly peerLagMs: MillisecondsGauge<'peer' | 'direction'>;
  /** Updates not yet acknowledged by a peer. */
  readonly peerPendingUpdates: Gauge<'peer'>;
  /** Bytes of updates not yet acknowledged by a peer. */
  readonly peerPendingBytes: Gauge<'peer'>;
  /** Last heartbeat round-trip time to a peer; set in ms, exposed in seconds. */
  readonly heartbeatRttMs: MillisecondsGauge<'peer'>;
  /** Connections to a peer re-established after a loss. */
  readonly reconnects: Counter<'peer'>;
  /** Frames from a peer refused: invalid ones (the link is closed) and presence over a bound (dropped). */
  readonly framesRejected: Counter<'peer' | 'reason'>;
  /** Frames not sent to a peer: a state over maxFrameBytes (the link stays), or a peer that reads nothing (the link is closed). */
  readonly framesUnsent: Counter<'peer' | 'reason'>;
  /** Times entries sent to a live peer went unconfirmed too long and were sent again. */
  readonly entriesResent: Counter<'peer'>;
  /** Log entries removed by garbage collection. */
  readonly entriesCollected: Counter;
  /** Stored entries or snapshots whose checksum did not match. */
  readonly corruptEntries: Counter;
  /** Documents holding updates whose dependencies have not arrived. */
  readonly pendingDocs: Gauge;
  /** Documents whose held-back updates were let go of: no region holds what they wait for (replication/held-back.ts). */
  readonly pendingDropped: Counter;
  /** Entries from a peer that this region could not apply and kept in quarantine. */
  readonly quarantinedEntries: Counter<'peer'>;
  readonly commitsRefused: Counter;
  readonly conflicts: Counter;
  /** Documents replaced by their reloaded state (after a splice, or before a content conflict was resolved). */
  readonly documentsReloaded: Counter;
  readonly reloadChecks: Counter<'check'>;
  /** Reads of large documents built and rendered off the event loop (docs/cold-render.ts). */
  readonly coldRenders: Counter;
  readonly conflictsJudgedOffLoop: Counter;
  /** Documents built anew to take updates Yjs would have scanned too long to place one by one (see crdt/load.ts `appliedWithinBound`). */
  readonly mergesRebuilt: Counter;
  readonly loadsRefused: Counter;
  readonly snapshotsWithheld: Counter;
  /** Requests holding for a version or for replicas (`meridian-after`, `meridian-replicas`). */
  readonly waitingRequests: Gauge;
  /**
   * Requests refused by a load or quota limit, by reason: `busy`, `caller_busy`,
   * `body_timeout`, `write_rate`, `document_quota`, `waiters`.
   */
  readonly requestsRefused: Counter<'reason'>;
  /** Repeated log lines left out by the per-source log limiter, by event. */
  readonly logSuppressed: Counter<'event'>;
  /** Change-feed streams open now. */
  readonly feedSubscribers: Gauge;
  /**
   * Change-feed streams cut off (`slow_consumer`, `resume_too_large`, `region_busy`) or
   * refused at the region's stream limit (`subscriber_limit`) or the caller's (`caller_limit`), by reason.
   */
  readonly feedCutoffs: Counter<'reason'>;

  /** Registers work to run before every scrape; returns a function that removes it. */
  onCollect(hook: CollectHook): () => void;
  /** Runs the collect hooks, then renders the registry in the Prometheus text format. */
  scrape(): Promise<string>;
  /** The content type of {@link Metrics.scrape}'s output. */
  readonly contentType: string;
}

export interface MetricsOptions {
  /**
   * Also collect prom-client's default process and Node.js metrics (CPU,
   * memory, event loop lag), under their stock names (`process_*`, `nodejs_*`)
   * so that standard Node.js dashboards work. Off by default.
   */
  processMetrics?: boolean;
}

function inSeconds<L extends string>(gauge: Gauge<L>): MillisecondsGauge<L> {
  return { set: (labels, ms) => gauge.set(labels, ms / 1000) };
}

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Creates the metrics of one region, labelled with `region` on every series. */
export function createMetrics(region: string, options: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  registry.setDefaultLabels({ region });
  if (options.processMetrics === true) collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const hooks = new Set<CollectHook>();

  return {
    registry,
    httpRequestSeconds: new Histogram({
      name: 'meridian_http_request_duration_seconds',
      help: 'HTTP request duration in seconds.',
      labelNames: ['method', 'route', 'status'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    writeLatencySeconds: new Histogram({
      name: 'meridian_write_commit_seconds',
      help: 'Time from a write entering the write path to its durable commit.',
      labelNames: ['kind'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    writes: new Counter({
      name: 'meridian_writes_total',
      help: 'Committed writes.',
      labelNames: ['kind'] as const,
      registers,
    }),
    documentsLoaded: new Gauge({ name: 'meridian_documents_loaded', help: 'Documents held in memory.', registers }),
    documentsHeldBytes: new Gauge({
      name: 'meridian_documents_held_bytes',
      help: 'About the heap the documents held in memory take: decoded ones weighed by their structs and size, encoded ones by their bytes (at most storage.cacheBytes, or the one most recently used).',
      registers,
    }),
    documentsDecodedAgain: new Counter({
      name: 'meridian_documents_decoded_again_total',
      help: 'Documents decoded again from the encoded form held in memory (read or changed after a while held encoded); near the write rate, most changes find their document held encoded: each changed less than once in 30 s, or more in use than storage.decodedDocs.',
      registers,
    }),
    databaseBytes: new Gauge({ name: 'meridian_database_bytes', help: 'Size of the SQLite database in bytes.', registers }),
    peerLagMs: inSeconds(new Gauge({
      name: 'meridian_peer_lag_seconds',
      help: 'Replication lag to (outbound) or from (inbound) a peer, in seconds.',
      labelNames: ['peer', 'direction'] as const,
      registers,
    })),
    peerPendingUpdates: new Gauge({
      name: 'meridian_peer_pending_updates',
      help: 'Updates not yet acknowledged by a peer.',
      labelNames: ['peer'] as const,
      registers,
    }),
    peerPendingBytes: new Gauge({
      name: 'meridian_peer_pending_bytes',
      help: 'Bytes of updates not yet acknowledged by a peer.',
      labelNames: ['peer'] as const,
      registers,
    }),
    heartbeatRttMs: inSeconds(new Gauge({
      name: 'meridian_heartbeat_rtt_seconds',
      help: 'Last heartbeat round-trip time to a peer, in seconds.',
      labelNames: ['peer'] as const,
      registers,
    })),
    reconnects: new Counter({
      name: 'meridian_peer_reconnects_total',
      help: 'Connections to a peer re-established after a loss.',
      labelNames: ['peer'] as const,
      registers,
    }),
    framesRejected: new Counter({
      name: 'meridian_frames_rejected_total',
      help: 'Frames from a peer refused: invalid ones (the link is closed), and presence over the link\'s rate or a room\'s bound (dropped).',
      labelNames: ['peer', 'reason'] as const,
      registers,
    }),
    framesUnsent: new Counter({
      name: 'meridian_frames_unsent_total',
      help: 'Frames this region did not send to a peer: a document state larger than replication.maxFrameBytes (too_large; the link stays), or one to a peer that leaves too much unread (backlog; the link is closed).',
      labelNames: ['peer', 'reason'] as const,
      registers,
    }),
    entriesResent: new Counter({
      name: 'meridian_entries_resent_total',
      help: 'Times entries sent to a peer were sent again: its heartbeats kept coming for 3 × replication.deadAfterMs while it stated it held none of them (the peer\'s lastError says how many).',
      labelNames: ['peer'] as const,
      registers,
    }),
    entriesCollected: new Counter({
      name: 'meridian_log_entries_collected_total',
      help: 'Log entries removed by garbage collection.',
      registers,
    }),
    corruptEntries: new Counter({
      name: 'meridian_corrupt_entries_total',
      help: 'Stored entries or snapshots whose checksum did not match.',
      registers,
    }),
    pendingDocs: new Gauge({
      name: 'meridian_pending_docs',
      help: 'Documents holding updates whose dependencies have not arrived.',
      registers,
    }),
    pendingDropped: new Counter({
      name: 'meridian_pending_dropped_total',
      help: 'Documents whose updates held back for missing dependencies were let go of: every peer\'s anti-entropy answer left them waiting, so no region holds what they wait for (a faulty peer\'s entry).',
      registers,
    }),
    commitsRefused: new Counter({
      name: 'meridian_commits_refused_total',
      help: 'Group commits the store refused (disk full, database locked, I/O error); their writes were answered 503.',
      registers,
    }),
    conflicts: new Counter({
      name: 'meridian_conflicts_total',
      help: 'Documents whose replicas held different content under the same Yjs ids; the losing state is kept as a conflict.',
      registers,
    }),
    documentsReloaded: new Counter({
      name: 'meridian_documents_reloaded_total',
      help: 'Documents replaced by what their own state reloads to, after an update spliced other content under held Yjs ids or before a content conflict was resolved (clients wrote under one Yjs id at two regions).',
      registers,
    }),
    reloadChecks: new Counter({
      name: 'meridian_reload_checks_total',
      help: 'Checks whether a document peers\' entries changed is still what its own state reloads to (a build and two digests): made, put off while the document rests after its last check (made at its next entry after that), or made and finding a document that took entries unchecked meanwhile unsettled (kept as it is, no entry refused).',
      labelNames: ['check'] as const,
      registers,
    }),
    coldRenders: new Counter({
      name: 'meridian_cold_renders_total',
      help: 'Reads of large documents (JSON and binary reads, live sync steps, change-feed values) built and rendered on the render thread, so that the event loop goes on serving.',
      registers,
    }),
    conflictsJudgedOffLoop: new Counter({
      name: 'meridian_conflicts_judged_off_loop_total',
      help: 'Content conflicts of large documents (clients wrote under one Yjs id at two regions) decided on the render thread, both states built and digested there, so that the event loop goes on serving.',
      registers,
    }),
    mergesRebuilt: new Counter({
      name: 'meridian_merges_rebuilt_total',
      help: 'Documents built from their updates merged into one (stored ones, and a peer\'s update being applied), because Yjs would have scanned too many items inserted concurrently at the same place to place the items one by one (clients inserting at one place at several regions at once). Counted by the process.',
      registers,
    }),
    loadsRefused: new Counter({
      name: 'meridian_document_loads_refused_total',
      help: 'Documents not built because neither their updates in the order stored nor their merge place their items within the cap on Yjs placement work (updates crafted so that every load of their merge is quadratic): the request that needed one got 503 unavailable, a peer\'s entry was quarantined or its state refused. Counted by the process.',
      registers,
    }),
    snapshotsWithheld: new Counter({
      name: 'meridian_snapshots_withheld_total',
      help: 'Compactions not done because the document\'s merged state would load beyond the bound on Yjs placement work, unlike its updates in the order taken, which are kept as they are.',
      registers,
    }),
    quarantinedEntries: new Counter({
      name: 'meridian_quarantined_entries_total',
      help: 'Entries from a peer that this region could not apply, kept in quarantine.',
      labelNames: ['peer'] as const,
      registers,
    }),
    waitingRequests: new Gauge({
      name: 'meridian_waiting_requests',
      help: 'Requests holding for a version or for replicas.',
      registers,
    }),
    requestsRefused: new Counter({
      name: 'meridian_requests_refused_total',
      help: 'Requests refused by a load or quota limit.',
      labelNames: ['reason'] as const,
      registers,
    }),
    logSuppressed: new Counter({
      name: 'meridian_log_suppressed_total',
      help: 'Repeated log lines left out by the per-source log limiter.',
      labelNames: ['event'] as const,
      registers,
    }),
    feedSubscribers: new Gauge({ name: 'meridian_feed_subscribers', help: 'Change-feed streams open.', registers }),
    feedCutoffs: new Counter({
      name: 'meridian_feed_cutoffs_total',
      help: 'Change-feed streams cut off or refused, by reason.',
      labelNames: ['reason'] as const,
      registers,
    }),
    onCollect(hook) {
      hooks.add(hook);
      return () => hooks.delete(hook);
    },
    scrape: spacedRenders(async () => {
      for (const hook of hooks) await hook();
      return registry.metrics();
    }),
    contentType: registry.contentType,
  };
}

/**
 * `render`, run for callers in turn: callers that arrive before a render
 * starts share it, so each gets a render begun after it asked (never an
 * older one), and a render starts {@link RENDER_SPACING} times the last
 * one's time after that one ended.
 */
function spacedRenders(render: () => Promise<string>): () => Promise<string> {
  let next: Promise<string> | null = null;
  let ended = 0;
  let took = 0;
  return () => {
    next ??= new Promise<void>((resolve) => {
      const wait = ended + Math.min(took * RENDER_SPACING, MAX_RENDER_WAIT_MS) - performance.now();
      if (wait > 0) setTimeout(resolve, wait);
      else resolve();
    }).then(async () => {
      next = null;
      const started = performance.now();
      try {
        return await render();
      } finally {
        ended = performance.now();
        took = ended - started;
      }
    });
    return next;
  };
}
