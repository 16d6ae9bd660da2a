/**
 * Replication between this region and its configured peers: one link per
 * pair (the region whose name sorts first dials, the other accepts),
 * heartbeats and failure detection, reconnects with backoff, acknowledgement
 * bookkeeping, log garbage collection, periodic anti-entropy, and the
 * status and session-guarantee queries of the HTTP API.
 */
import type { Logger } from 'pino';
import type { PeerConfig, ReplicationConfig, StorageConfig } from '../config.js';
import type { DocKey, RegionId, VersionVector, WriterId } from '../ids.js';
import type { CommittedEntry, Documents } from '../docs/types.js';
import type { DocHead, DocumentStates, Incidents, Maintenance, PeerProgress, PendingEntries, ReplicationLog } from '../storage/types.js';
import { MeridianError } from '../errors.js';
import type { Metrics } from '../metrics.js';
import { isolatedOf, type AwarenessRelay, type DocRegionSync, type DocSyncStatus, type PeerState, type PeerStatus, type ReplicationView, type SyncStatus } from './types.js';
import { createDetector } from './detector.js';
import { backoffDelay } from './backoff.js';
import { CloseCode, dialsTo } from './handshake.js';
import { createLogLimiter, type LogLimiter } from '../log-limiter.js';
import { Session } from './session.js';
import type { Link } from './transport.js';
import type { Peer } from './peer.js';
import { capped, covers, missingCount } from '../vv.js';
import type { LinkReport, PingFrame } from './protocol.js';
import type { BackgroundPacer } from '../pacer.js';
import { leavesCatchUp } from './catch-up-turn.js';
import { HeldBack } from './held-back.js';

/**
 * How long (in dead timeouts) a silent peer is still redialled several times
 * a heartbeat: five minutes by default, longer than most partitions, so a
 * healed one is used within a fraction of a heartbeat; a dial of a peer that
 * is down costs it one refused connection.
 */
const PROBE_WINDOW_DEAD_TIMES = 60;
/**
 * Dials per heartbeat of such a peer, at most. A healed link waits on
 * average half the gap between two dials before it is used; everything
 * written during the partition waits with it.
 */
const PROBES_PER_HEARTBEAT = 4;
/**
 * How long (in dead timeouts) a peer whose heartbeats keep coming may leave
 * entries sent to it unconfirmed before they are sent again: a live link
 * that loses entries must not leave them pending for as long as it stays up.
 */
const RESEND_AFTER_DEAD_TIMEOUTS = 3;
/** How long a read of a peer's unacknowledged entries is reused, ms. */
const PENDING_REFRESH_MS = 500;
/** Unacknowledged entries beyond which reading them again waits for PENDING_REFRESH_MS. */
const LARGE_BACKLOG = 1000;
/** Entries of one document from one origin counted for a peer that lacks them (`GET /v1/docs/{collection}/{id}/sync`). */
const MISSING_COUNT_LIMIT = 10_000;
/** Shortest time between two early dials of one peer (see `dialPeersOthersReach`), ms. */
const HINTED_DIAL_MS = 2000;
/** Documents holding back updates asked about in one anti-entropy round (see held-back.ts); the next ones at the next round. */
const MAX_HELD_BACK_ASKED = 64;

/**
 * What replication needs of the configuration: who this region and its peers
 * are, the link and timing settings, and when the log may be collected.
 * Neither the cluster secret (links hold it) nor the API's tokens.
 */
export interface ReplicationOptions {
  readonly region: RegionId;
  readonly peers: readonly PeerConfig[];
  readonly replication: ReplicationConfig;
  readonly storage: Pick<StorageConfig, 'gcIntervalMs' | 'logRetentionMs'>;
}

export interface ReplicatorOptions {
  /** This part's slice of the region's configuration. */
  config: ReplicationOptions;
  documents: Documents;
  /** The log it streams, the summaries and progress it compares, log GC, and quarantine counts it reports. */
  store: ReplicationLog & DocumentStates & PeerProgress & Pick<Maintenance, 'collectGarbage'> & Pick<Incidents, 'quarantine'>;
  logger: Logger;
  metrics: Metrics;
  /** Opens a link to a peer; resolves once authenticated, rejects with the reason otherwise. */
  dial: (peer: Peer) => Promise<Link>;
  /** Shared with the write path (see BackgroundPacer); none: catch-up is not paced. */
  pacer?: BackgroundPacer;
}

export class Replicator implements ReplicationView, AwarenessRelay {
  readonly peers = new Map<RegionId, Peer>();
  private readonly log: Logger;
  /** One line a minute per peer: anti-entropy finds the same document every round. */
  private readonly perPeerLog: LogLimiter;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly waiters = new Set<() => void>();
  private readonly awarenessListeners = new Set<(doc: DocKey, update: Uint8Array, from: RegionId) => void>();
  /** The last read of each peer's unacknowledged entries (see pendingFor). */
  private readonly pendingCache = new Map<RegionId, { at: number; value: PendingEntries | null }>();
  /** What each peer's last heartbeat said (digest, links), kept after its link drops: `/v1/sync` shows it with its age. */
  private readonly reports = new Map<RegionId, { digest: string | null; links: LinkReport[]; at: number }>();
  /** Per peer wanting a catch-up by state: when this region began to wait for another to do it, and what it held then. */
  private readonly catchUpFrom = new Map<RegionId, { since: number; held: VersionVector }>();
  private pingId = 0;
  /** Whether documents had pending updates at the last anti-entropy tick. */
  private pendingSeen = false;
  private readonly heldBack: HeldBack;
  private stopped = false;
  private readonly unsubscribe: () => void;

  /**
   * When this region last changed writer for a claim of more of its writes
   * than it held (see Session.checkRestoreClaim); null: never, in this process.
   */
  private writerChangedAt: number | null = null;

  constructor(private readonly o: ReplicatorOptions) {
    this.log = o.logger.child({ module: 'replication' });
    this.perPeerLog = createLogLimiter({ logger: this.log });
    this.heldBack = new HeldBack({
      peers: () => this.peers.keys(), documents: o.documents, logger: this.log, dropped: () => o.metrics.pendingDropped.inc(),
    });
    const r = o.config.replication;
    for (const p of o.config.peers) {
      const region = p.region;
      this.peers.set(region, {
        region, url: p.url,
        detector: createDetector({ heartbeatMs: r.heartbeatMs, suspectAfterMisses: r.suspectAfterMisses, deadAfterMs: r.deadAfterMs }),
        session: null, closeLink: null, acks: o.store.peerAcks(region), acksDirty: false, heldAtConnect: null,
        attempts: 0, reconnectTimer: null, hintedDialAt: 0, lastError: null, connects: 0, comparedAt: Date.now(),
      });
    }
    this.unsubscribe = o.documents.onCommitted((entries) => {
      const remote = entries.filter((e) => e.from !== null).length;
      if (remote > 0) o.metrics.writes.inc({ kind: 'remote' }, remote);
      if (remote > 0) this.ackWhatPeersHold(entries);
      // Before the commit's callers are answered: a linked peer that is up to date is sent the write before its
      // client sees the answer, so a client that fails over once this region dies finds it there.
      for (const peer of this.peers.values()) peer.session?.wake(entries);
      this.notify();
    });
  }

  /**
   * A peer that stated it holds a third region's entries before this region
   * did (at link-up, or in a heartbeat) acknowledges them once this region
   * holds them too. Otherwise, after catching up from one peer, this region
   * would count everything it received as pending at the others until their
   * next heartbeat, and report the cluster unconverged for that long.
   */
  private ackWhatPeersHold(entries: readonly CommittedEntry[]): void {
    const origins = new Set<WriterId>();
    for (const e of entries) if (e.from !== null) origins.add(e.origin);
    const mine = this.o.documents.versionVector();
    for (const peer of this.peers.values()) {
      const stated = peer.session?.peerHas;
      if (stated === undefined) continue;
      for (const origin of origins) {
        const held = Math.min(stated.get(origin) ?? 0, mine.get(origin) ?? 0);
        if (held > (peer.acks.get(origin) ?? 0)) {
          peer.acks.set(origin, held);
          peer.acksDirty = true;
        }
      }
    }
  }

  get region(): RegionId {
    return this.o.config.region;
  }

  /** Starts dialing, heartbeats, garbage collection and anti-entropy. */
  start(): void {
    const { replication: r, storage: s } = this.o.config;
    for (const peer of this.peers.values()) if (this.dials(peer)) this.connect(peer);
    this.every(r.heartbeatMs, () => this.heartbeat());
    this.every(s.gcIntervalMs, () => this.collectGarbage());
    this.every(r.antiEntropyMs, () => this.antiEntropy());
    this.every(250, () => this.notify());
  }

  async close(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.unsubscribe();
    for (const peer of this.peers.values()) {
      if (peer.reconnectTimer) clearTimeout(peer.reconnectTimer);
      this.persistAcks(peer);
      peer.closeLink?.(CloseCode.ShuttingDown, 'region shutting down');
      this.detach(peer);
    }
    this.notify();
  }

  /** Whether this region dials `peer` (else it waits to be dialled). */
  dials(peer: Peer): boolean {
    return dialsTo(this.region, peer.region);
  }

  /** Wires an authenticated link (dialled or accepted) to its peer. */
  attach(region: RegionId, link: Link): void {
    const peer = this.peers.get(region);
    if (!peer || this.stopped) {
      link.close(CloseCode.ShuttingDown, 'not accepting links');
      return;
    }
    if (peer.closeLink) peer.closeLink(CloseCode.Superseded, 'superseded by a newer link');
    this.detach(peer);
    const r = this.o.config.replication;
    const session = new Session({
      peer: region, documents: this.o.documents, store: this.o.store, logger: this.log, transport: link,
      batchBytes: r.batchBytes, maxBufferedBytes: r.maxBufferedBytes, maxFrameBytes: r.maxFrameBytes,
      ...(this.o.pacer ? { pacer: this.o.pacer } : {}),
      onHeard: () => peer.detector.heard(Date.now()),
      onPong: (ms) => {
        peer.detector.rtt(ms);
        this.o.metrics.heartbeatRttMs.set({ peer: region }, ms);
      },
      onAck: (vv) => this.onAck(peer, vv),
      heldBackStill: (doc, mark) => this.heldBack.stillHeldBack(doc, mark, region),
      heldBackAnswered: (doc, mark) => this.heldBack.answeredBy(doc, mark, region),
      // One change at once, then one per interval (counted once made: a change that failed is tried again).
      mayFollowRestore: () => this.writerChangedAt === null || performance.now() - this.writerChangedAt >= r.writerChangeIntervalMs,
      onPeerRestarted: (vv) => {
        this.checkOwnWrites(region, vv);
        // What the peer holds beyond this region (its own writes, a third region's) is no acknowledgement.
        peer.acks = capped(vv, this.o.documents.versionVector());
        peer.acksDirty = true;
        peer.heldAtConnect = new Map(vv);
        this.notify();
      },
      leavesCatchUp: (since, now) => this.leavesCatchUp(region, since, now),
      ephemeral: link.ephemeral,
      peerMaxFrameBytes: link.peerMaxFrameBytes,
      onAwareness: (doc, update) => {
        for (const listener of this.awarenessListeners) listener(doc, update, region);
      },
      onAwarenessDropped: () => this.o.metrics.framesRejected.inc({ peer: region, reason: 'awareness_rate' }),
      onReport: (digest, links) => this.reports.set(region, { digest, links: this.knownLinks(links), at: Date.now() }),
      holds: (other, writer, seq) => (this.peers.get(other)?.session?.peerHas.get(writer) ?? 0) >= seq,
      onRejected: (reason) => {
        peer.lastError = reason;
        const kind = reason.split(':')[0] ?? 'frame';
        this.o.metrics.framesRejected.inc({ peer: region, reason: kind });
        if (kind === 'doc_state_refused') this.perPeerLog.warn(kind, region, { peer: region, reason }, 'a document state from the peer was refused; the link stays');
        if (kind === 'doc_unbuilt') this.perPeerLog.warn(kind, region, { peer: region, reason }, 'a document this region cannot build was left out of anti-entropy with the peer; the link stays');
      },
      onUnsent: (reason, kind) => {
        peer.lastError = reason;
        this.o.metrics.framesUnsent.inc({ peer: region, reason: kind });
        if (kind === 'too_large') this.perPeerLog.warn('frame_too_large', region, { peer: region, reason }, 'frame too large for the link; not sent');
        else this.log.warn({ peer: region, reason }, 'peer reads nothing; closing the link');
      },
      resendAfterMs: RESEND_AFTER_DEAD_TIMEOUTS * r.deadAfterMs,
      onResent: (reason) => {
        peer.lastError = reason;
        this.o.metrics.entriesResent.inc({ peer: region });
        this.log.warn({ peer: region, reason }, 'entries sent to the peer were not confirmed; sending them again');
      },
    });
    peer.session = session;
    peer.closeLink = (code, reason) => link.close(code, reason);
    peer.attempts = 0;
    peer.lastError = null;
    if (peer.connects++ > 0) this.o.metrics.reconnects.inc({ peer: region });
    peer.detector.connected(true);
    peer.detector.heard(Date.now());
    link.onMessage((bytes) => session.receive(bytes));
    link.onClose((code, reason) => {
      if (peer.session !== session) return;
      this.log.info({ peer: region, code, reason }, 'link closed');
      // A session that ended itself has said why (a refused frame, a peer that reads nothing).
      if (code !== CloseCode.Superseded && code !== 1000 && !session.isClosed()) peer.lastError = `closed ${code}${reason ? `: ${reason}` : ''}`;
      this.detach(peer);
      if (this.dials(peer)) this.scheduleReconnect(peer);
      this.reportLinks();
    });
    this.log.info({ peer: region }, 'link up');
    session.start();
    this.reportLinks();
  }

  /**
   * A heartbeat to every peer now, out of turn, when a link came up or went
   * down: peers leave relaying this region's other peers' writes to them
   * (or take it up) by the links heartbeats report, so they should not wait
   * a heartbeat interval to learn of the change (after a heal, that is when
   * each region's backlog is streamed).
   */
  private reportLinks(): void {
    const now = Date.now();
    const ping = this.pings(now);
    for (const peer of this.peers.values()) {
      const s = this.observe(peer, now);
      if (!peer.session || peer.detector.state(now) === 'down') continue;
      peer.session.ping(ping(s.outbound.lagMs));
    }
  }

  /** The peer's status, also set in its gauges (so they exist once a ping has gone out, before any pong). */
  private observe(peer: Peer, now: number): PeerStatus {
    const s = this.peerStatus(peer, now);
    this.o.metrics.peerLagMs.set({ peer: peer.region, direction: 'outbound' }, s.outbound.lagMs);
    this.o.metrics.peerLagMs.set({ peer: peer.region, direction: 'inbound' }, s.inbound.lagMs);
    this.o.metrics.peerPendingUpdates.set({ peer: peer.region }, s.outbound.pendingUpdates);
    this.o.metrics.peerPendingBytes.set({ peer: peer.region }, s.outbound.pendingBytes);
    return s;
  }

  /** What this region's heartbeats say now: the same to every peer but for the lag toward it. */
  private pings(now: number): (lagMs: number) => Omit<PingFrame, 'type'> {
    const vv = this.o.documents.versionVector();
    // Null (unknown to peers) while many digests wait to be computed, after a catch-up, and while a large document
    // written often rests between its digests: walked at every heartbeat, one of 95,000 nested maps held the region
    // 110-170 ms each time.
    const digest = this.o.documents.digests.heartbeatDigest();
    const links: LinkReport[] = [...this.peers.values()].map((p) => ({ region: p.region, state: p.session ? p.detector.state(now) : 'down' }));
    return (lagMs) => ({ id: ++this.pingId, sentAt: performance.now(), vv, links, lagMs, ...(digest === null ? {} : { digest }) });
  }

  /**
   * A peer holding more of this region's own writes than this region does
   * means the data directory went back in time (restored from a backup).
   * Writing on under the same writer id would reuse sequence numbers and Yjs
   * clocks the peers have already seen, so continue under a new one; the
   * peers stream the missing writes back.
   */
  private checkOwnWrites(peer: RegionId, peerHolds: VersionVector): void {
    const writer = this.o.documents.writer;
    const theirs = peerHolds.get(writer) ?? 0;
    const mine = this.o.documents.versionVector().get(writer) ?? 0;
    if (theirs <= mine) return;
    const next = this.o.documents.rotateWriter();
    this.writerChangedAt = performance.now();
    this.log.warn({ peer, writer, held: mine, peerHolds: theirs, next },
      'peer holds writes of this region that its data directory lacks (restored from a backup?): writing on as a new writer');
  }

  /** An inbound dial was refused; shown in the status of the peer it claimed to be. */
  refused(claimed: string | null, reason: string): void {
    const peer = claimed ? this.peers.get(claimed as RegionId) : undefined;
    if (peer) peer.lastError = `inbound link refused: ${reason}`;
  }

  // ---- AwarenessRelay ---------------------------------------------------------

  relayAwareness(doc: DocKey, update: Uint8Array): void {
    for (const peer of this.peers.values()) peer.session?.sendAwareness(doc, update);
  }

  onAwareness(listener: (doc: DocKey, update: Uint8Array, from: RegionId) => void): () => void {
    this.awarenessListeners.add(listener);
    return () => this.awarenessListeners.delete(listener);
  }

  // ---- ReplicationView --------------------------------------------------------

  settled(): Promise<void> {
    return this.o.documents.digests.settled();
  }

  /** Each link's state and lag, as {@link status} reports them, without the region digest (which may cost document walks). */
  peerStatuses(): PeerStatus[] {
    const now = Date.now();
    return [...this.peers.values()].map((p) => this.peerStatus(p, now));
  }

  status(): SyncStatus {
    const peers = this.peerStatuses();
    const { digest, exact } = this.o.documents.digests.statusDigest();
    const pendingDocs = this.o.documents.pendingDocs();
    return {
      region: this.region,
      writer: this.o.documents.writer,
      digest,
      isolated: isolatedOf(peers),
      pendingDocs,
      conflicts: this.o.documents.conflictCount(),
      agree: exact && pendingDocs === 0 && peers.every((p) => agreesWith(p, digest)),
      peers,
    };
  }

  /**
   * Which regions hold every update of `doc` that this region knows of: the
   * document's newest entry per origin in the log, against each peer's
   * acknowledgements. One index read of the document's entries, plus one
   * per (peer, origin) that lags.
   */
  docStatus(doc: DocKey): DocSyncStatus {
    const summary = this.o.store.summary(doc);
    if (summary === null) throw new MeridianError('not_found', `document ${doc} does not exist`);
    const now = Date.now();
    const heads = this.o.store.docHeads(doc);
    const self = { region: this.region, hasLatest: true, missingUpdates: 0, missingUpdatesCapped: false, lagMs: 0 };
    const peers = [...this.peers.values()].map((p) => ({ region: p.region, ...this.docLag(doc, heads, p.acks, now) }));
    return {
      doc,
      deleted: summary.deleted,
      latestLocal: this.o.store.latestEntry(doc, this.o.documents.writer),
      latest: heads.map((h) => ({ origin: h.origin, seq: h.seq, ts: h.ts })),
      regions: [self, ...peers],
    };
  }

  /**
   * What of the document's entries in `heads` a peer that acknowledged
   * `acks` lacks, counted up to {@link MISSING_COUNT_LIMIT} per origin so
   * that the answer costs the same whatever the backlog.
   */
  private docLag(doc: DocKey, heads: DocHead[], acks: VersionVector, now: number): Omit<DocRegionSync, 'region'> {
    let missingUpdates = 0;
    let missingUpdatesCapped = false;
    let oldest = Infinity;
    for (const head of heads) {
      const acked = acks.get(head.origin) ?? 0;
      if (acked >= head.seq) continue;
      const beyond = this.o.store.docEntriesBeyond(doc, head.origin, acked, MISSING_COUNT_LIMIT);
      if (beyond === null) continue;
      missingUpdates += beyond.count;
      missingUpdatesCapped ||= beyond.count >= MISSING_COUNT_LIMIT;
      oldest = Math.min(oldest, beyond.ts);
    }
    return {
      hasLatest: missingUpdates === 0, missingUpdates, missingUpdatesCapped,
      lagMs: missingUpdates === 0 ? 0 : Math.max(0, now - oldest),
    };
  }

  /**
   * Resolves once this region holds everything each linked peer held when
   * its link opened (a rebuilt region has caught up), one of them holding
   * anything, or every peer linked when none does (a new cluster); false
   * after `timeoutMs`, so that a region alone still takes writes. A peer
   * that holds nothing tells nothing: two regions wiped together linked
   * first, or a faulty peer said so, and each took writes at once that were
   * concurrent with the older values it could not yet see, and lost to them.
   */
  async caughtUpWithPeers(timeoutMs: number): Promise<boolean> {
    return this.waitUntil(() => this.holdsWhatPeersHeld(), timeoutMs);
  }

  /**
   * Whether this region holds what its peers held, as {@link caughtUpWithPeers}
   * waits for; with `now`, or what each linked peer states it holds now (one
   * holding anything): a new cluster whose regions held nothing when they
   * linked, one peer never up, is told so once writes have begun.
   */
  holdsWhatPeersHeld(now = false): boolean {
    const mine = this.o.documents.versionVector();
    const linked = [...this.peers.values()].filter((p) => p.session !== null && p.heldAtConnect !== null);
    const holds = (vectors: VersionVector[]) => vectors.length > 0 && vectors.every((held) => covers(mine, held)) && vectors.some((held) => held.size > 0);
    const atConnect = linked.map((p) => p.heldAtConnect!);
    if (holds(atConnect) || (atConnect.length === this.peers.size && atConnect.every((held) => held.size === 0))) return true;
    return now && holds(linked.map((p) => p.session!.peerHas));
  }

  /** Resolves once some peer has said what it holds (own writes checked), or false after `timeoutMs`. */
  heardFromAPeer(timeoutMs: number): Promise<boolean> {
    return this.waitUntil(() => [...this.peers.values()].some((p) => p.heldAtConnect !== null), timeoutMs);
  }

  waitForVersion(vv: VersionVector, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    return this.waitUntil(() => covers(this.o.documents.versionVector(), vv), timeoutMs, signal);
  }

  waitForReplicas(held: VersionVector, replicas: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    const count = () => 1 + [...this.peers.values()].filter((p) => covers(p.acks, held)).length;
    return this.waitUntil(() => count() >= replicas, timeoutMs, signal);
  }

  // ---- internals --------------------------------------------------------------

  /**
   * The entries a peer has not acknowledged: none when its acks cover this
   * region's vector. Status is asked for every heartbeat and by every
   * `/v1/sync`, and the store reads up to a thousand entries per origin to
   * answer: a large backlog (a peer cut off or catching up) is read again at
   * most every {@link PENDING_REFRESH_MS}.
   */
  private pendingFor(p: Peer, mine: VersionVector, now: number): PendingEntries | null {
    if (missingCount(mine, p.acks) === 0) return null;
    const cached = this.pendingCache.get(p.region);
    const large = (cached?.value?.count ?? 0) >= LARGE_BACKLOG;
    if (cached && large && now - cached.at < PENDING_REFRESH_MS) return cached.value;
    const value = this.o.store.oldestBeyond(p.acks);
    this.pendingCache.set(p.region, { at: now, value });
    return value;
  }

  private peerStatus(p: Peer, now: number): PeerStatus {
    const state: PeerState = p.session ? p.detector.state(now) : 'down';
    const mine = this.o.documents.versionVector();
    const pending = this.pendingFor(p, mine, now);
    const report = this.reports.get(p.region);
    return {
      region: p.region,
      url: p.url,
      state,
      rttMs: p.detector.rttMs(),
      lastSeenMs: p.detector.lastSeenMs(now),
      route: this.route(p, state),
      lastError: p.lastError,
      outbound: {
        // Entries already collected from the log count too (a rebuilt peer lacks them).
        pendingUpdates: Math.max(pending?.count ?? 0, missingCount(mine, p.acks)),
        pendingBytes: pending?.bytes ?? 0,
        lagMs: pending ? Math.max(0, now - pending.ts) : 0,
      },
      inbound: {
        pendingUpdates: p.session ? missingCount(p.session.peerHas, mine) : 0,
        lagMs: p.session && state !== 'down' ? p.session.peerLagMs : 0,
        quarantined: this.o.store.quarantine.counts().get(p.region) ?? 0,
      },
      digest: report?.digest ?? null,
      links: report?.links ?? [],
      reportAgeMs: report ? Math.max(0, now - report.at) : null,
    };
  }

  /** A peer's link reports about configured regions, one each: a peer cannot fill `/v1/sync` with names of its own. */
  private knownLinks(links: LinkReport[]): LinkReport[] {
    const known = new Map<RegionId, LinkReport>();
    for (const { region, state } of links) {
      if ((region === this.region || this.peers.has(region)) && !known.has(region)) known.set(region, { region, state });
    }
    return [...known.values()];
  }

  private route(p: Peer, state: PeerState): string {
    if (state !== 'down') return 'direct';
    for (const other of this.peers.values()) {
      if (other === p || !other.session || other.detector.state(Date.now()) === 'down') continue;
      if (other.session.peerLinks.some((l) => l.region === p.region && l.state !== 'down')) return `via ${other.region}`;
    }
    return 'none';
  }

  private onAck(peer: Peer, vv: VersionVector): void {
    for (const [origin, seq] of vv) {
      if (seq > (peer.acks.get(origin) ?? 0)) {
        peer.acks.set(origin, seq);
        peer.acksDirty = true;
      }
    }
    this.notify();
  }

  /** On the store's writer thread when it has one: the heartbeat never waits for the disk. */
  private persistAcks(peer: Peer): void {
    if (!peer.acksDirty) return;
    peer.acksDirty = false;
    const failed = (err: unknown): void => {
      peer.acksDirty = true;
      this.log.error({ err, peer: peer.region }, 'could not store peer acknowledgements');
    };
    try {
      void this.o.store.setPeerAcks(peer.region, peer.acks)?.catch(failed);
    } catch (err) {
      failed(err);
    }
  }

  private heartbeat(): void {
    const now = Date.now();
    // Made for the first link that takes one: its digest may cost a document walk.
    let ping: ReturnType<Replicator['pings']> | null = null;
    for (const peer of this.peers.values()) {
      this.persistAcks(peer);
      const s = this.observe(peer, now);
      if (!peer.session) continue;
      if (peer.detector.state(now) === 'down') {
        // Silent for deadAfterMs: a black-holed link that TCP will not notice.
        this.log.warn({ peer: peer.region, lastSeenMs: peer.detector.lastSeenMs(now) }, 'peer silent; closing link');
        peer.lastError = 'heartbeat timeout';
        peer.closeLink?.(CloseCode.HeartbeatTimeout, 'heartbeat timeout');
        this.detach(peer);
        if (this.dials(peer)) this.scheduleReconnect(peer);
        continue;
      }
      ping ??= this.pings(now);
      peer.session.ping(ping(s.outbound.lagMs));
      peer.session.wake();
      peer.session.retryCatchUp();
    }
    this.dialPeersOthersReach(now);
  }

  /**
   * A peer that another region reports reaching again is probably reachable
   * from here too (the partition healed): dial it now rather than when the
   * backoff, grown long during the outage, runs out. At most once per
   * {@link HINTED_DIAL_MS} per peer, so a cut that isolates only this link
   * costs an extra dial now and then.
   */
  private dialPeersOthersReach(now: number): void {
    for (const peer of this.peers.values()) {
      if (!peer.reconnectTimer || now - peer.hintedDialAt < HINTED_DIAL_MS) continue;
      const reached = [...this.peers.values()].some((other) => other.session?.peerReaches(peer.region) === true);
      if (!reached) continue;
      this.log.debug({ peer: peer.region }, 'another region reaches this peer; dialling it now');
      clearTimeout(peer.reconnectTimer);
      peer.hintedDialAt = now;
      this.connect(peer);
    }
  }

  /** Whether to leave catching `target` up by state to another region (see catch-up-turn.ts). */
  private leavesCatchUp(target: RegionId, since: number, now: number): boolean {
    let from = this.catchUpFrom.get(target);
    if (from?.since !== since) this.catchUpFrom.set(target, (from = { since, held: this.o.documents.versionVector() }));
    return leavesCatchUp({
      self: this.region, target, peers: this.peers.values(), held: from.held, since, now, heartbeatMs: this.o.config.replication.heartbeatMs,
    });
  }

  private antiEntropy(): void {
    // While many digests wait to be computed the stream is busy anyway: compare at the next interval.
    const digest = this.o.documents.digests.regionDigestIfCheap();
    // Updates held back for missing dependencies over a whole interval: ask
    // every peer for the documents' full state, whichever side usually starts.
    const stuck = this.o.documents.pendingDocs() > 0 && this.pendingSeen;
    this.pendingSeen = this.o.documents.pendingDocs() > 0;
    const idleMs = Math.max(10_000, 4 * this.o.config.replication.deadAfterMs);
    // The same documents asked of every peer, so that their answers can all count at once (see held-back.ts);
    // taken once a round starts, so that rounds skipped do not pass over them.
    let heldBack: DocKey[] | null = null;
    for (const peer of this.peers.values()) {
      const s = peer.session;
      s?.ae.abortIdle(Date.now(), idleMs);
      if (!s || s.ae.running || s.peerApplyingRound()) continue;
      if (stuck) {
        // A round the peer runs here repairs them as well as one of ours would.
        if (s.ae.peerRunning(Date.now(), this.o.config.replication.deadAfterMs)) continue;
        this.perPeerLog.warn('held_back', peer.region, { peer: peer.region, pendingDocs: this.o.documents.pendingDocs() }, 'updates still wait for dependencies; repairing by anti-entropy');
        s.ae.start((heldBack ??= this.o.documents.pendingKeys(MAX_HELD_BACK_ASKED))).catch((err: unknown) => this.log.warn({ err }, 'anti-entropy round failed'));
        continue;
      }
      if (!this.dials(peer)) continue;
      const now = Date.now();
      const vv = this.o.documents.versionVector();
      const call = callsForRound({
        mine: digest, theirs: s.peerDigest, comparedAt: peer.comparedAt, linkOpenedAt: s.openedAt, now, intervalMs: this.o.config.replication.antiEntropyMs,
        // Entries either side holds that the other has not stated it holds: still on their way by the log stream.
        inFlight: missingCount(vv, s.peerHas) + missingCount(s.peerHas, vv),
      });
      if (call === 'agree') peer.comparedAt = now;
      if (call !== 'differ' && call !== 'overdue') continue;
      peer.comparedAt = now;
      // Overdue rounds are routine under steady writes (one every two intervals): not worth a line each by default.
      if (call === 'differ') this.log.info({ peer: peer.region }, 'digests differ with nothing pending; running anti-entropy');
      else this.log.debug({ peer: peer.region }, 'digests not seen equal for two intervals; running anti-entropy');
      // From its end too: a round longer than the intervals would otherwise be followed by the next at once.
      s.ae.start().then(() => (peer.comparedAt = Date.now()), (err: unknown) => this.log.warn({ err }, 'anti-entropy round failed'));
    }
  }

  /** One GC step; on the store's writer thread when it has one, so the event loop never waits for it. */
  private collectGarbage(): void {
    const counted = (n: number): void => {
      if (n > 0) this.o.metrics.entriesCollected.inc(n);
    };
    const failed = (err: unknown): void => this.log.error({ err }, 'log garbage collection failed; will retry');
    try {
      const cutoff = Date.now() - this.o.config.storage.logRetentionMs;
      const n = this.o.store.collectGarbage([...this.peers.keys()], cutoff);
      if (typeof n === 'number') counted(n);
      else n.then(counted, failed);
    } catch (err) {
      failed(err);
    }
  }

  private connect(peer: Peer): void {
    if (this.stopped) return;
    peer.reconnectTimer = null;
    this.o.dial(peer).then(
      (link) => this.attach(peer.region, link),
      (err: unknown) => {
        peer.lastError = err instanceof Error ? err.message : String(err);
        this.log.debug({ peer: peer.region, err: peer.lastError }, 'dial failed');
        this.scheduleReconnect(peer);
      },
    );
  }

  /**
   * A peer heard from within {@link PROBE_WINDOW_DEAD_TIMES} dead timeouts is
   * probably only cut off: it is redialled {@link PROBES_PER_HEARTBEAT} times
   * a heartbeat, so that a healed link is used within a fraction of one. A
   * peer silent for longer backs off up to `reconnectMaxMs`, so a region
   * that is really down is not hammered.
   */
  private scheduleReconnect(peer: Peer): void {
    if (this.stopped || peer.reconnectTimer) return;
    const r = this.o.config.replication;
    const silentMs = peer.detector.lastSeenMs(Date.now());
    const recent = silentMs !== null && silentMs < PROBE_WINDOW_DEAD_TIMES * r.deadAfterMs;
    const maxMs = recent ? Math.min(r.reconnectMaxMs, Math.max(r.reconnectMinMs, r.heartbeatMs / PROBES_PER_HEARTBEAT)) : r.reconnectMaxMs;
    const delay = backoffDelay(peer.attempts++, { minMs: r.reconnectMinMs, maxMs });
    peer.reconnectTimer = setTimeout(() => this.connect(peer), delay);
  }

  private detach(peer: Peer): void {
    peer.session?.close();
    peer.session = null;
    peer.closeLink = null;
    peer.detector.connected(false);
  }

  private every(ms: number, fn: () => void): void {
    const t = setInterval(() => {
      try {
        fn();
      } catch (err) {
        this.log.error({ err }, 'replication timer failed');
      }
    }, ms);
    t.unref();
    this.timers.push(t);
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Waits for `ok`; a waiter whose `signal` aborts (its client left) is dropped at once, not at its timeout. */
  private waitUntil(ok: () => boolean, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (ok()) return Promise.resolve(true);
    if (signal?.aborted === true) return Promise.resolve(false);
    return new Promise((resolve) => {
      const check = () => {
        if (!ok()) return;
        finish(true);
      };
      const abandon = () => finish(false);
      const finish = (value: boolean) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        signal?.removeEventListener('abort', abandon);
        resolve(value);
      };
      const timer = setTimeout(() => finish(ok()), timeoutMs);
      this.waiters.add(check);
      signal?.addEventListener('abort', abandon, { once: true });
    });
  }
}

/**
 * What region digests say about an anti-entropy round with a peer this
 * region dials, at an interval's tick:
 * - `agree`: its last heartbeat carried this region's digest;
 * - `wait`: this region's digest is not known yet (`mine` null: many
 *   being computed, after a catch-up);
 * - `differ`: the digests differ with nothing in flight either way, so
 *   the log stream will not make them equal: compare now;
 * - `overdue`: neither equal digests nor a round since `comparedAt`, two
 *   intervals ago or more, and at most a few entries in flight: compare all
 *   the same. Under steady writes over a link of ordinary latency an entry
 *   is in flight at every tick, and while a large document written often
 *   rests between digests heartbeats carry none (see pings): either kept a
 *   content conflict or a quarantined entry on any other document from being
 *   repaired for as long as the writes went on. A round compares state
 *   vectors, so entries in flight cost it nothing but their own documents;
 *   a backlog (more in flight) is left to the log stream, and so is a link
 *   up for less than half an interval (a healed link catches up by its stream,
 *   or by state where the log no longer holds what the peer lacks);
 * - `none`: otherwise.
 */
export function callsForRound(o: {
  mine: string | null; theirs: string | null; inFlight: number; comparedAt: number; linkOpenedAt: number; now: number; intervalMs: number;
}): 'agree' | 'wait' | 'differ' | 'overdue' | 'none' {
  if (o.mine === null) return 'wait';
  if (o.theirs === o.mine) return 'agree';
  if (o.theirs !== null && o.inFlight === 0) return 'differ';
  if (o.inFlight > MAX_IN_FLIGHT_OVERDUE || o.now - o.linkOpenedAt < 0.5 * o.intervalMs) return 'none';
  // At the second tick after `comparedAt`, early or late as the timer fires.
  return o.now - o.comparedAt >= 1.5 * o.intervalMs ? 'overdue' : 'none';
}

/** Entries in flight beyond which an overdue round waits for the log stream (see {@link callsForRound}). */
const MAX_IN_FLIGHT_OVERDUE = 1024;

/** Whether a peer holds what this region holds, as its last heartbeat shows: up, same digest, nothing pending. */
function agreesWith(p: PeerStatus, digest: string): boolean {
  return p.state === 'up' && p.digest === digest && p.outbound.pendingUpdates === 0 && p.inbound.pendingUpdates === 0;
}
