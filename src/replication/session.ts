/**
 * The sync logic of one live link to one peer, independent of sockets:
 * it streams the log beyond what the peer holds (entries from every origin,
 * so that writes reach regions whose direct link is cut), applies what the
 * peer sends, acknowledges what is durable, and runs anti-entropy.
 *
 * Frames from the peer are processed strictly one after another, so a
 * round's `ae-done` is handled only after every `doc-state` before it.
 *
 * Threat model: the peer holds the cluster secret, but a frame from it is
 * still only a claim. The codec bounds every number (see MAX_SEQ); this
 * session bounds the claims: what the peer acknowledges is recorded only up
 * to what this region holds; no one may claim more of this region's current
 * writer than it holds, except once per link in a sync request (this region
 * was restored from a backup); a floor counts only up to what the peer
 * stated (see AntiEntropy). A claim beyond is a protocol error: the link
 * closes with 4400, the frame is counted and logged, and nothing changes.
 */
import type { Logger } from 'pino';
import { isWriterId, regionOfWriter, type RegionId, type VersionVector, type WriterId } from '../ids.js';
import type { Documents } from '../docs/types.js';
import type { DocumentStates, LogEntry, NewLogEntry, ReplicationLog } from '../storage/types.js';
import { AntiEntropy } from './antientropy.js';
import {
  decodeFrame, decodePingHead, encodeFrame, MAX_ENTRIES_PER_FRAME, MSG_AWARENESS, MSG_PING, MSG_PONG, ProtocolError,
  type Frame, type LinkReport, type PingFrame,
} from './protocol.js';
import type { DocKey } from '../ids.js';
import { MAX_WRITERS, MAX_WRITERS_FROM_PEERS, capped, covers, merged, newWriters } from '../vv.js';
import type { BackgroundPacer } from '../pacer.js';
import { createTokenBucket, type TokenBucket } from '../token-bucket.js';
import { CloseCode } from '../contract.js';

/** The socket side of a link, as the session needs it. */
export interface LinkTransport {
  /**
   * Sends a frame. A `batched` one may wait for the end of this event-loop
   * turn, to reach the socket with the others of the turn; any other goes at
   * once, after those before it.
   */
  send(bytes: Uint8Array, batched?: boolean): void;
  /** Bytes queued in user space and not yet handed to the kernel. */
  buffered(): number;
  close(code: number, reason: string): void;
  pause(): void;
  resume(): void;
}

export interface SessionOptions {
  peer: RegionId;
  documents: Documents;
  /** The log it streams to the peer; summaries for anti-entropy. */
  store: ReplicationLog & DocumentStates;
  logger: Logger;
  transport: LinkTransport;
  batchBytes: number;
  maxBufferedBytes: number;
  maxFrameBytes: number;
  /**
   * The peer (re)stated what it holds: its acknowledgements are exactly this
   * now, up to what this region holds. `vv` may hold more of this region's
   * own writer than it holds (restored from a backup); at most once per link.
   */
  onPeerRestarted: (vv: VersionVector) => void;
  /**
   * Whether a sync request holding more of this region's writer than it
   * holds may be believed now (see checkRestoreClaim); default yes.
   */
  mayFollowRestore?: () => boolean;
  /** Called for every frame from the peer (a sign of life). */
  onHeard: () => void;
  onPong: (rttMs: number) => void;
  /** The peer acknowledged storing `vv` (never beyond what this region holds). */
  onAck: (vv: VersionVector) => void;
  /** A frame failed to decode or apply (the link is being closed), or what it carried was refused (`doc_state_refused`: the link stays). */
  onRejected: (reason: string) => void;
  /**
   * A frame this region would send was not: larger than `maxFrameBytes`
   * (`too_large`; the link stays), or the peer leaves more than
   * {@link backlogBound} unread (`backlog`; the link is being closed).
   */
  onUnsent?: (reason: string, kind: 'too_large' | 'backlog') => void;
  /**
   * Entries sent on this link are sent again: the peer's heartbeats kept
   * coming for `resendAfterMs` without it stating it holds them (see
   * {@link Session.resendUnconfirmed}).
   */
  onResent?: (reason: string) => void;
  /** How long a live peer may leave entries sent to it unconfirmed before they are sent again, ms. */
  resendAfterMs?: number;
  /**
   * Whether to leave catching this peer up by state to another region, the
   * peer having needed it since `waitingSince` (ms since epoch; see Replicator).
   */
  leavesCatchUp: (waitingSince: number, now: number) => boolean;
  /** The peer announced ephemeral (awareness) frames in the handshake: they may be sent to it. */
  ephemeral?: boolean;
  /** The largest frame the peer accepts (announced in the handshake); frames above it or `maxFrameBytes` are not sent. */
  peerMaxFrameBytes?: number;
  /** A live client's presence relayed by the peer. */
  onAwareness?: (doc: DocKey, update: Uint8Array) => void;
  /** Presence from the peer beyond {@link PEER_AWARENESS_PER_SECOND} or its bytes was dropped. */
  onAwarenessDropped?: () => void;
  /** The peer's heartbeat said what its region digest is (null from a peer that does not send it) and how its links are. */
  onReport?: (digest: string | null, links: LinkReport[]) => void;
  /**
   * Whether `region`, over its link with this region, has shown it holds
   * `seq` of `writer`. Without it every entry the peer lacks is relayed.
   */
  holds?: (region: RegionId, writer: WriterId, seq: number) => boolean;
  /** Paces streaming a backlog to the peer and decoding what it sends while this region's clients write. */
  pacer?: BackgroundPacer;
  /** Documents this region lacks asked for in one anti-entropy round at most (see antientropy.ts MAX_ASKED_PER_ROUND). */
  maxAskedPerRound?: number;
  /** See AntiEntropyPort.heldBackStill. */
  heldBackStill?: (doc: DocKey, mark: string) => void;
  /** See AntiEntropyPort.heldBackAnswered. */
  heldBackAnswered?: (doc: DocKey, mark: string) => boolean;
}

const PROTOCOL_ERROR_CLOSE = CloseCode.ProtocolError;
/** Room beyond a full send buffer and one largest frame, for heartbeats and acknowledgements. */
const BACKLOG_SLACK_BYTES = 1 << 20;
const MAX_INBOUND_QUEUE = 64;
/**
 * Bytes of received frames waiting their turn past which the socket is no
 * longer read (or twice the largest frame, if more). Frames are counted too
 * ({@link MAX_INBOUND_QUEUE}), but 64 frames of up to `maxFrameBytes` each
 * (25 MiB for three regions) let one peer's link hold 1.6 GB.
 */
export const MAX_INBOUND_BYTES = 64 * 1024 * 1024;
/**
 * Longest wait for a peer to state the floor of a completed catch-up round
 * before catching it up by state again. It states it once it has applied
 * the round, in order on a live link; the bound only keeps a peer that drops
 * an ae-done from being left behind for as long as the link stays up.
 */
const FLOOR_WAIT_MS = 120_000;
/** Longest stretch of frame handling before timers and sockets get a turn, ms. */
const YIELD_AFTER_MS = 1;
/** Log pages (of 256 entries) read per event-loop turn at most. */
const PAGES_PER_TURN = 16;
/** Entries read from the log at once, and their bytes at most (past the first: entries may be a MiB each). */
const LOG_PAGE = 256;
const LOG_PAGE_BYTES = 1024 * 1024;
/** Shortest time between two re-reads of the log for links a peer lost, ms. */
const REREAD_MIN_MS = 1000;
/** Longest stretch of log streaming in one turn, ms: a catching-up peer must not hold this region's clients. */
const PUMP_TURN_MS = 1;
/**
 * Bytes of entries sent and not yet acknowledged at most: a backlog waits
 * here, not in socket buffers where the link's heartbeats would queue
 * behind it (its round-trip time would measure the backlog, not the link).
 */
export const UNACKED_WINDOW_BYTES = 512 * 1024;
/** A window that no acknowledgement moves for this long is let go (a peer that never acknowledges cannot stop the link), ms. */
const UNACKED_STALL_MS = 10_000;
/**
 * Presence frames and bytes a peer may send per second (bursts of twice
 * as many). Each frame is handled at once, beside nothing (see heartbeat),
 * and fanned out to every live client of its document: beyond these a
 * buggy peer would take the event loop. Dropped presence heals with the
 * client's next renewal.
 */
const PEER_AWARENESS_PER_SECOND = 2000;

/**
 * Pings and pongs a peer may send per second (bursts of twice as many): a
 * region sends one of each per heartbeat (`replication.heartbeatMs`, 1 s by
 * default). Each is handled at once, beside nothing, and a ping taken as an
 * acknowledgement wakes every request waiting for replicas or a version (a
 * one-off: a flood of 23-byte pings held a Session 1.6 s per 64 KiB read
 * with a thousand such waits). Beyond the rate a ping is still answered (a
 * peer that never reads its pongs is closed by the backlog bound), from its
 * id and time alone (the rest is not decoded), but not taken as anything
 * else, a pong is dropped, and both are counted (`heartbeat_rate`).
 * Answering still costs some 35 µs a ping, so a peer
 * that keeps sending more than {@link PEER_HEARTBEAT_FLOOD_PER_SECOND} (past
 * a burst of twice that) is closed: a flood would otherwise hold the event
 * loop. A region configured with `replication.heartbeatMs` of 5 or more
 * sends fewer (a ping and a pong per heartbeat).
 */
const PEER_HEARTBEATS_PER_SECOND = 50;
const PEER_HEARTBEAT_FLOOD_PER_SECOND = 1000;
const PEER_AWARENESS_BYTES_PER_SECOND = 4 * 1024 * 1024;
/**
 * Error frames from the peer logged per second (bursts of twice as many):
 * a peer says why it closes once, and a faulty one repeating itself would
 * otherwise fill the log. The rest are counted, and the count logged.
 */
const PEER_ERRORS_LOGGED_PER_SECOND = 5;
/**
 * Sync requests taken on one link: a peer sends one as the link opens; each
 * clears what this region knows the peer holds, rewinds the log stream and
 * sends the backlog again from there (up to a window of it), so a 20-byte
 * frame repeated costs this region a read and a send of the window each
 * time. A few are taken at once, then one per 10 s; a peer past that is
 * closed as `sync_request_flood`.
 */
const PEER_SYNC_REQUESTS_PER_SECOND = 0.1;
const PEER_SYNC_REQUEST_BURST = 4;

export class Session {
  /** What the peer is known to hold, per origin. */
  readonly peerHas: VersionVector = new Map();
  /** Highest seq per origin sent on this link. */
  private readonly sent: VersionVector = new Map();
  /** Frames of entries sent and not yet acknowledged, oldest first: their bytes and the seqs that acknowledge them. */
  private unacked: { bytes: number; upto: VersionVector }[] = [];
  private unackedBytes = 0;
  /** When the window last moved (performance.now()). */
  private unackedMovedAt = 0;
  /** When what the peer holds last rose, or nothing sent was unconfirmed (performance.now()). */
  private confirmedAt = performance.now();
  private cursor = 0;
  /**
   * The lsn of the last entry committed since this session opened (null
   * before one): every log entry is announced by its commit, one commit at
   * a time, so a cursor here has read everything the peer may be sent.
   */
  private logEnd: number | null = null;
  /** Regions the peer reported its link to as up in its last heartbeat. */
  private linkedUp = new Set<RegionId>();
  /** When the log was last read again for links the peer lost (performance.now()). */
  private rereadAt = -Infinity;
  /** This region's name. */
  private readonly region: RegionId;
  private started = false;
  private pumping = false;
  private drainTimer: NodeJS.Timeout | null = null;
  /** The next turn of streaming a backlog, put off by the pacer. */
  private pacedTimer: NodeJS.Timeout | null = null;
  /** Origins whose entries the stream skipped as beyond what the peer holds (see {@link stream}); a rewind clears it. */
  private readonly gapOrigins = new Set<WriterId>();
  private lastCatchUp = 0;
  /** Since when the peer has needed a catch-up by state that no round has started on yet (ms epoch). */
  private catchUpWantedSince: number | null = null;
  private closed = false;
  private inbound: Promise<void> = Promise.resolve();
  private queued = 0;
  private queuedBytes = 0;
  private paused = false;
  private readonly heartbeats: TokenBucket = createTokenBucket(PEER_HEARTBEATS_PER_SECOND, 2 * PEER_HEARTBEATS_PER_SECOND, () => performance.now());
  /** Heartbeats over the rate tolerated (see {@link PEER_HEARTBEATS_PER_SECOND}). */
  private readonly heartbeatsOverRate: TokenBucket = createTokenBucket(
    PEER_HEARTBEAT_FLOOD_PER_SECOND - PEER_HEARTBEATS_PER_SECOND, 2 * PEER_HEARTBEAT_FLOOD_PER_SECOND, () => performance.now(),
  );
  private readonly awarenessFrames: TokenBucket = createTokenBucket(PEER_AWARENESS_PER_SECOND, 2 * PEER_AWARENESS_PER_SECOND, () => performance.now());
  private readonly awarenessBytes: TokenBucket = createTokenBucket(PEER_AWARENESS_BYTES_PER_SECOND, 2 * PEER_AWARENESS_BYTES_PER_SECOND, () => performance.now());
  private readonly errorLogs: TokenBucket = createTokenBucket(PEER_ERRORS_LOGGED_PER_SECOND, 2 * PEER_ERRORS_LOGGED_PER_SECOND, () => performance.now());
  private readonly syncRequests: TokenBucket = createTokenBucket(PEER_SYNC_REQUESTS_PER_SECOND, PEER_SYNC_REQUEST_BURST, () => performance.now());
  /** Error frames from the peer over {@link PEER_ERRORS_LOGGED_PER_SECOND} since the last one logged. */
  private errorsNotLogged = 0;
  private lastYield = 0;
  private ackScheduled = false;
  /** Whether the peer already claimed more of this region's writer than it held (a restore) on this link. */
  private restoreClaimed = false;
  readonly ae: AntiEntropy;
  /** The peer's view of its own links, from its last ping. */
  peerLinks: LinkReport[] = [];
  /** When (Date.now()) the link came up. */
  readonly openedAt = Date.now();
  /** The peer's region digest and outbound lag toward us, from its last ping. */
  peerDigest: string | null = null;
  peerLagMs = 0;

  constructor(private readonly o: SessionOptions) {
    this.region = regionOfWriter(o.documents.writer);
    this.ae = new AntiEntropy({
      peer: o.peer, documents: o.documents, store: o.store, logger: o.logger,
      send: (frame) => this.sendWhenWritable(frame),
      fail: (reason) => {
        if (!this.closed) this.reject(reason);
      },
      refused: (reason) => this.o.onRejected(reason),
      peerStated: () => this.peerHas,
      ...(o.pacer ? { pacer: o.pacer } : {}),
      ...(o.maxAskedPerRound ? { maxAskedPerRound: o.maxAskedPerRound } : {}),
      ...(o.heldBackStill ? { heldBackStill: o.heldBackStill } : {}),
      ...(o.heldBackAnswered ? { heldBackAnswered: o.heldBackAnswered } : {}),
    });
  }

  /** Opens the exchange: tells the peer what this region holds. */
  start(): void {
    this.send({ type: 'sync-request', vv: this.o.documents.versionVector() });
  }

  /**
   * A commit was announced (`committed`, in lsn order) or there is news of
   * the peer: stream what it lacks. A peer whose cursor stood at the log's
   * end before the commit is sent the commit's entries from memory rather
   * than read back from the log.
   */
  wake(committed: readonly LogEntry[] = []): void {
    const end = this.logEnd;
    const last = committed[committed.length - 1];
    if (last !== undefined) this.logEnd = last.lsn;
    if (last !== undefined && end !== null && this.cursor === end && this.started && !this.pumping && !this.closed) {
      if (this.stream(committed, this.o.documents.versionVector())) return;
    }
    this.pump();
  }

  /** Did this side end the session (a refused frame, a peer that reads nothing) or the replicator? */
  isClosed(): boolean {
    return this.closed;
  }

  close(): void {
    if (!this.closed && this.errorsNotLogged > 0) {
      this.o.logger.warn({ peer: this.o.peer, notLogged: this.errorsNotLogged }, 'peer reported more errors than were logged');
      this.errorsNotLogged = 0;
    }
    this.closed = true;
    if (this.drainTimer) clearTimeout(this.drainTimer);
    if (this.pacedTimer) clearTimeout(this.pacedTimer);
    this.ae.close();
  }

  /** Is everything this region holds sent and acknowledged? */
  caughtUp(): boolean {
    for (const [origin, seq] of this.o.documents.versionVector()) {
      if ((this.peerHas.get(origin) ?? 0) < seq) return false;
    }
    return true;
  }

  /**
   * Is the peer still applying the states of the last round this region
   * completed with it (it has not stated the round's floor, for up to
   * FLOOR_WAIT_MS)? Another round meanwhile would send them all again: to a
   * peer being rebuilt, every document, as often as rounds are started.
   */
  peerApplyingRound(): boolean {
    return this.ae.floorUnstated(this.peerHas, Date.now(), FLOOR_WAIT_MS);
  }

  /** Did the peer's last heartbeat report its own link to `region` as `up`? */
  peerReaches(region: RegionId): boolean {
    return this.peerLinks.some((l) => l.region === region && l.state === 'up');
  }

  ping(frame: Omit<PingFrame, 'type'>): void {
    this.send({ type: 'ping', ...frame });
  }

  /** `batched`: anti-entropy's frames, sent by the thousand in a rebuild (see LinkTransport.send). */
  send(frame: Frame, batched = false): void {
    if (this.closed) return;
    const bytes = encodeFrame(frame);
    // The peer would close the link on it (1009) and the next round would
    // send it again: keep the link, and say what to change.
    const bound = Math.min(this.o.maxFrameBytes, this.o.peerMaxFrameBytes ?? Infinity);
    if (bytes.length > bound) {
      const what = 'doc' in frame ? `${frame.type} of ${frame.doc}` : frame.type;
      const whose = bound < this.o.maxFrameBytes ? `the peer's replication.maxFrameBytes` : 'replication.maxFrameBytes';
      this.o.onUnsent?.(`${what} is ${bytes.length} bytes, over ${whose} (${bound}): not sent; raise it above that at every region`, 'too_large');
      return;
    }
    // Entries and states wait for a full send buffer to drain; acks and pongs
    // answer the peer's frames at once. A peer that sends and never reads
    // would have them pile up here without end: the link goes instead, and
    // the peer resumes from what it acknowledged when it links again.
    const waiting = this.o.transport.buffered();
    if (waiting + bytes.length > backlogBound(this.o)) {
      const reason = `peer reads nothing: ${waiting} bytes wait to be sent to it`;
      this.o.onUnsent?.(reason, 'backlog');
      this.o.transport.close(CloseCode.Backlog, reason);
      this.close();
      return;
    }
    this.o.transport.send(bytes, batched);
  }

  /**
   * Sends a live client's presence, if the peer speaks it and the link has
   * room: presence is ephemeral, so a busy link drops it rather than queue it.
   */
  sendAwareness(doc: DocKey, update: Uint8Array): void {
    if (this.o.ephemeral !== true || this.o.transport.buffered() >= this.o.maxBufferedBytes) return;
    this.send({ type: 'awareness', doc, update });
  }

  /** Receives one binary message; decoding and applying happen in arrival order. */
  receive(bytes: Uint8Array): void {
    this.o.onHeard();
    // Heartbeats are decoded and answered at once, so that a busy apply queue
    // is not taken for a dead link. Every other frame is decoded in its turn
    // below: a burst of large frames from a peer catching this region up is
    // decoded between client requests, not all at once.
    if (bytes[2] === MSG_PING || bytes[2] === MSG_PONG || bytes[2] === MSG_AWARENESS) return this.heartbeat(bytes);
    const size = bytes.byteLength;
    this.queued++;
    this.queuedBytes += size;
    if ((this.queued > MAX_INBOUND_QUEUE || this.queuedBytes > this.inboundBytesBound()) && !this.paused) {
      this.paused = true;
      this.o.transport.pause();
    }
    this.inbound = this.inbound.then(async () => {
      // Let timers and sockets run now and then: a long queue of frames
      // must not starve heartbeats (the link would be taken for dead).
      const wait = this.o.pacer?.wait() ?? 0;
      if (wait > 0 || performance.now() - this.lastYield > YIELD_AFTER_MS) {
        await new Promise<void>((resolve) => (wait > 0 ? setTimeout(resolve, wait) : setImmediate(resolve)));
        this.lastYield = performance.now();
      }
      if (this.closed) return this.frameDone(size);
      let frame: Frame;
      const decoding = performance.now();
      try {
        frame = decodeFrame(bytes, this.o.maxFrameBytes);
        this.o.pacer?.spent(performance.now() - decoding);
      } catch (err) {
        this.frameDone(size);
        return this.reject(err instanceof ProtocolError ? err.reason : 'undecodable frame');
      }
      // Entries are handed to the write path at once and committed with
      // whatever else arrives in this turn; only their acknowledgement waits
      // for the commit. Every other frame is handled to the end, in order.
      const handled = frame.type === 'entries' ? this.onEntries(frame.entries) : this.handle(frame);
      const settled = handled.then(
        () => this.frameDone(size),
        (err: unknown) => {
          this.frameDone(size);
          this.o.logger.warn({ err, peer: this.o.peer, frame: frame.type }, 'frame from peer rejected');
          this.reject(`${frame.type} rejected: ${err instanceof Error ? err.message : String(err)}`);
        },
      );
      if (frame.type !== 'entries') await settled;
    });
  }

  private heartbeat(bytes: Uint8Array): void {
    // The rest of a read after the link was closed (its last error stays what closed it).
    if (this.closed) return;
    // Over its rate, presence is dropped before it costs a decode.
    if (bytes[2] === MSG_AWARENESS && (this.awarenessFrames.take() > 0 || this.awarenessBytes.take(bytes.byteLength) > 0)) {
      return this.o.onAwarenessDropped?.();
    }
    const overRate = bytes[2] !== MSG_AWARENESS && this.heartbeats.take() > 0;
    if (overRate && this.heartbeatsOverRate.take() > 0) {
      return this.reject(`heartbeat_flood: more than ${PEER_HEARTBEAT_FLOOD_PER_SECOND} pings and pongs a second from the peer, for seconds`);
    }
    if (overRate) this.o.onRejected(`heartbeat_rate: more than ${PEER_HEARTBEATS_PER_SECOND} pings and pongs a second from the peer`);
    if (overRate && bytes[2] === MSG_PONG) return;
    // Over the rate a ping is only answered: what else it says (a vector of
    // thousands of writers, a thousand links) is not even decoded.
    if (overRate) {
      let head: Pick<PingFrame, 'id' | 'sentAt'>;
      try {
        head = decodePingHead(bytes, this.o.maxFrameBytes);
      } catch (err) {
        return this.reject(err instanceof ProtocolError ? err.reason : 'undecodable frame');
      }
      return this.send({ type: 'pong', ...head });
    }
    let frame: Frame;
    try {
      frame = decodeFrame(bytes, this.o.maxFrameBytes);
    } catch (err) {
      return this.reject(err instanceof ProtocolError ? err.reason : 'undecodable frame');
    }
    if (frame.type === 'ping') return this.onPing(frame);
    // Presence waits behind nothing: it is relayed at once, never stored.
    if (frame.type === 'awareness') return this.o.onAwareness?.(frame.doc, frame.update);
    // A pong echoes our clock; one from the future was not an answer to us.
    if (frame.type === 'pong' && frame.sentAt <= performance.now()) this.o.onPong(performance.now() - frame.sentAt);
  }

  private inboundBytesBound(): number {
    return Math.max(MAX_INBOUND_BYTES, 2 * this.o.maxFrameBytes);
  }

  /** One received frame of `size` bytes is finished with (its entries committed); resumes a paused socket. */
  private frameDone(size: number): void {
    this.queued--;
    this.queuedBytes -= size;
    // While this side does not read the socket, the peer's heartbeats wait
    // in it: the silence is this region's backlog, not the peer's. Each frame
    // worked off counts as heard, so only silence after the resume counts.
    if (this.paused) this.o.onHeard();
    if (this.paused && this.queued < MAX_INBOUND_QUEUE / 4 && this.queuedBytes <= this.inboundBytesBound() / 2) {
      this.paused = false;
      this.o.transport.resume();
    }
  }

  private reject(reason: string): void {
    this.o.onRejected(reason);
    this.o.transport.close(PROTOCOL_ERROR_CLOSE, reason.slice(0, 120));
    this.close();
  }

  /** Handles every frame but entries (see {@link receive}) and heartbeats. */
  private async handle(frame: Frame): Promise<void> {
    switch (frame.type) {
      case 'sync-request':
        if (this.syncRequests.take() > 0) {
          return this.reject(`sync_request_flood: more than ${PEER_SYNC_REQUEST_BURST} sync requests on the link, and more than one per ${1 / PEER_SYNC_REQUESTS_PER_SECOND} s since`);
        }
        this.checkRestoreClaim(frame.vv);
        // The peer's truth replaces our guesses: resend from there.
        this.peerHas.clear();
        this.sent.clear();
        this.confirmedAt = performance.now();
        raise(this.peerHas, frame.vv);
        raise(this.sent, frame.vv);
        this.unacked = [];
        this.unackedBytes = 0;
        this.rewind();
        this.started = true;
        this.o.onPeerRestarted(frame.vv);
        if (this.lacksLoggedEntries()) this.catchUpByState();
        return this.pump();
      case 'ack':
        return this.onAckFrame(frame.vv);
      case 'ae-buckets':
        return this.ae.onBuckets(frame);
      case 'ae-docs':
        return this.ae.onDocs(frame);
      case 'doc-sv':
        return this.ae.onDocSv(frame);
      case 'doc-state':
        return this.ae.onDocState(frame);
      case 'doc-replace':
        return this.ae.onDocReplace(frame);
      case 'ae-done':
        await this.ae.onDone(frame);
        this.send({ type: 'ack', vv: this.o.documents.versionVector() });
        return;
      case 'error':
        if (this.errorLogs.take() > 0) {
          this.errorsNotLogged++;
          return;
        }
        this.o.logger.warn(
          { peer: this.o.peer, code: frame.code, message: frame.message, ...(this.errorsNotLogged > 0 ? { notLogged: this.errorsNotLogged } : {}) },
          'peer reported an error',
        );
        this.errorsNotLogged = 0;
        return;
      default:
        return;
    }
  }

  private async onEntries(entries: NewLogEntry[]): Promise<void> {
    const held = this.o.documents.versionVector();
    let origins: Set<WriterId> | null = null;
    for (const e of entries) {
      if (!isWriterId(e.origin)) throw new ProtocolError(`entries: an origin of ${e.origin.length} characters is not a writer id (<region>~<hex>)`);
      if (!held.has(e.origin)) (origins ??= new Set()).add(e.origin);
    }
    // Refused whole here; the write path refuses what frames in flight together would add.
    if (origins !== null && held.size + origins.size > MAX_WRITERS_FROM_PEERS) {
      throw new ProtocolError(`entries from ${origins.size} writers this region has not seen, beyond the ${MAX_WRITERS_FROM_PEERS} it takes from peers`);
    }
    const writer = this.o.documents.writer;
    let own = 0;
    for (const e of entries) if (e.origin === writer && e.seq > own) own = e.seq;
    if (own > 0) this.checkOwnClaim(new Map([[writer, own]]), 'entries');
    // Whatever the peer sends, it holds: never send it back. Entries
    // beyond a gap are skipped, not applied, so the bound on this region's
    // writers does not hold what the peer is known to hold: its own does.
    const sent = new Map<WriterId, number>();
    for (const e of entries) if (e.seq > (sent.get(e.origin) ?? 0)) sent.set(e.origin, e.seq);
    this.raisePeerHas(sent, 'entries');
    const result = await this.o.documents.applyRemote(entries, this.o.peer);
    this.ackSoon();
    // Entries beyond a gap were skipped: ask the peer to resend from what we hold.
    if (result.gaps > 0) this.start();
  }

  /**
   * One ack for every frame committed in the same turn, sent once the turn
   * is over: after the answers to this region's own callers of that commit.
   */
  private ackSoon(): void {
    if (this.ackScheduled) return;
    this.ackScheduled = true;
    setImmediate(() => {
      this.ackScheduled = false;
      this.send({ type: 'ack', vv: this.o.documents.versionVector() });
    });
  }

  private onAckFrame(vv: VersionVector): void {
    this.checkOwnClaim(vv, 'ack');
    this.raisePeerHas(vv, 'ack');
    raise(this.sent, vv);
    this.o.onAck(this.acknowledged(vv));
    this.settleUnacked();
    // Entries skipped as beyond a gap may follow on from what the peer now
    // holds (caught up by state, or via another region): read the log again.
    // Without a skipped gap nothing behind the cursor is needed.
    if (this.gapOrigins.size > 0) this.rewind();
    this.pump();
  }

  private onPing(frame: PingFrame): void {
    this.send({ type: 'pong', id: frame.id, sentAt: frame.sentAt });
    // Until the peer's sync request is handled, what it holds is not known
    // (a restored region learns from it that it must change writer).
    if (this.started) {
      let bridged: boolean;
      try {
        this.checkOwnClaim(frame.vv, 'ping');
        bridged = this.bridgesGap(frame.vv);
        this.raisePeerHas(frame.vv, 'ping');
      } catch (err) {
        this.o.logger.warn({ err, peer: this.o.peer }, 'frame from peer rejected');
        return this.reject(`ping rejected: ${err instanceof Error ? err.message : String(err)}`);
      }
      // A region only reports what it has durably applied: as good as an ack.
      this.o.onAck(this.acknowledged(frame.vv));
      this.settleUnacked();
      const resend = this.resendUnconfirmed();
      if (bridged || resend) this.rewind();
      // Also how a window that no acknowledgement moves is found and let go (see sendFull).
      if (bridged || resend || this.unacked.length > 0) this.pump();
    }
    this.peerLinks = frame.links;
    this.followLinks(frame.links);
    this.peerLagMs = frame.lagMs;
    this.peerDigest = frame.digest ?? null;
    this.o.onReport?.(this.peerDigest, frame.links);
  }

  /**
   * What of `vv` counts as an acknowledgement: only what this region holds
   * (and so may have sent). A peer may hold more (its own writes, a third
   * region's); that is what it holds, not what it acknowledges.
   */
  private acknowledged(vv: VersionVector): VersionVector {
    return capped(vv, this.o.documents.versionVector());
  }

  /**
   * No peer can hold more of this region's current writer than it holds:
   * entries are numbered here, and this region's vector rises before any is
   * sent. Throws {@link ProtocolError} for a claim beyond.
   */
  private checkOwnClaim(vv: VersionVector, what: string): void {
    const writer = this.o.documents.writer;
    const claimed = vv.get(writer) ?? 0;
    const held = this.o.documents.versionVector().get(writer) ?? 0;
    if (claimed > held) throw new ProtocolError(`${what} claims ${claimed} of this region's writer, which holds ${held}`);
  }

  /**
   * A sync request that holds more of this region's writer than it does is
   * how a data directory restored from a backup learns to change writer
   * (Replicator.checkOwnWrites). It is believed once per link, and only
   * when the replicator allows it (once at once, then once per
   * `writerChangeIntervalMs`). A data directory goes back in time only
   * before the process starts, so a later claim comes from a faulty peer,
   * or from one a faulty peer told it holds more (a floor or entries of this
   * writer it relayed): believed on every new link, it would make the region
   * change writer on every redial until its version vector no longer fit a
   * frame; refused for good, it would keep that peer's link closed for good
   * (the claim is stored there), and this region's next writes under the
   * same sequence numbers would be dropped there as already held.
   */
  private checkRestoreClaim(vv: VersionVector): void {
    const writer = this.o.documents.writer;
    if ((vv.get(writer) ?? 0) <= (this.o.documents.versionVector().get(writer) ?? 0)) return;
    if (this.restoreClaimed) this.checkOwnClaim(vv, 'second sync-request');
    if (this.o.mayFollowRestore?.() === false) {
      this.checkOwnClaim(vv, 'sync-request (writer changed within writerChangeIntervalMs)');
    }
    this.restoreClaimed = true;
  }

  /** Streams log entries the peer lacks, while the send buffer has room. */
  private pump(): void {
    if (!this.started || this.pumping || this.closed || this.pacedTimer !== null) return;
    // Commits and acks wake the pump too: a backlog waits its paced turn whoever wakes it.
    const wait = this.cursor === this.logEnd ? 0 : (this.o.pacer?.wait() ?? 0);
    if (wait > 0) {
      this.pacedTimer = setTimeout(() => {
        this.pacedTimer = null;
        this.pump();
      }, wait);
      return;
    }
    this.pumping = true;
    let pages = 0;
    let more = false;
    const started = performance.now();
    // A commit on the writer thread is readable in the log before this
    // thread counts it as held; sent then, it could come back from a third
    // region as a claim of more of this region's writes than it holds.
    // Commits are one at a time, so such entries are the log's tail: they
    // are sent when their commit is announced (which wakes this pump).
    const held = this.o.documents.versionVector();
    try {
      // At the log's end (most acks and pings find it there), nothing to read.
      while (this.cursor !== this.logEnd && !this.sendFull()) {
        // Yield now and then: a long log the peer mostly holds is skipped, not
        // sent, and a long one it lacks is sent in short turns.
        if (++pages > PAGES_PER_TURN || (pages > 1 && performance.now() - started > PUMP_TURN_MS)) {
          more = true;
          break;
        }
        // A short page is not the log's end: its bytes may have cut it, or entries that failed their checksum
        // been left out of it; only an empty one is (or the cursor at the end, above).
        const page = this.o.store.readLog(this.cursor, LOG_PAGE, LOG_PAGE_BYTES);
        if (!this.stream(page, held) || page.length === 0) break;
      }
    } finally {
      this.pumping = false;
    }
    // Reading a backlog is catch-up work: paced while this region's clients write.
    if (pages > 0) this.o.pacer?.spent(performance.now() - started);
    if (more) setImmediate(() => this.pump());
    else if (this.o.transport.buffered() >= this.o.maxBufferedBytes) this.waitForDrain();
    else if (this.gapOrigins.size > 0 && !this.ae.running) this.catchUpByState();
  }

  /**
   * Sends what the peer lacks of `page` (log entries in lsn order) and moves
   * the cursor past what it covered; false when it stopped early, at a full
   * send buffer or at an entry this region does not count as held yet.
   */
  private stream(page: readonly LogEntry[], held: VersionVector): boolean {
    let out: NewLogEntry[] = [];
    let bytes = 0;
    let whole = true;
    for (const e of page) {
      // A full send buffer stops the page here; the rest is read again later.
      if ((out.length === 0 && this.sendFull()) || e.seq > (held.get(e.origin) ?? 0)) {
        whole = false;
        break;
      }
      this.cursor = e.lsn;
      // What the peer sent or stated it holds is never sent to it.
      const have = Math.max(this.sent.get(e.origin) ?? 0, this.peerHas.get(e.origin) ?? 0);
      if (e.seq <= have) continue;
      if (e.seq > have + 1) {
        this.gapOrigins.add(e.origin);
        continue;
      }
      this.sent.set(e.origin, e.seq);
      if (this.sentByItsRegion(e)) continue;
      out.push({ origin: e.origin, seq: e.seq, doc: e.doc, ts: e.ts, update: e.update });
      bytes += e.update.byteLength + 64;
      // The peer refuses a frame of more entries (a commit may hold more, and batchBytes may be a frame).
      if (bytes >= this.o.batchBytes || out.length >= MAX_ENTRIES_PER_FRAME) {
        this.sendEntries(out, bytes);
        out = [];
        bytes = 0;
      }
    }
    if (out.length > 0) this.sendEntries(out, bytes);
    return whole;
  }

  private sendEntries(entries: NewLogEntry[], bytes: number): void {
    const upto: VersionVector = new Map();
    for (const e of entries) if (e.seq > (upto.get(e.origin) ?? 0)) upto.set(e.origin, e.seq);
    if (this.unacked.length === 0) this.unackedMovedAt = performance.now();
    this.unacked.push({ bytes, upto });
    this.unackedBytes += bytes;
    this.send({ type: 'entries', entries });
  }

  /** No more entries now: the send buffer is full, or the window of unacknowledged entries is. */
  private sendFull(): boolean {
    if (this.o.transport.buffered() >= this.o.maxBufferedBytes) return true;
    if (this.unackedBytes < UNACKED_WINDOW_BYTES) return false;
    if (performance.now() - this.unackedMovedAt < UNACKED_STALL_MS) return true;
    this.o.logger.warn({ peer: this.o.peer, unackedBytes: this.unackedBytes }, 'peer acknowledges nothing; sending on');
    this.unacked = [];
    this.unackedBytes = 0;
    return false;
  }

  /** Drops the frames the peer now holds; streams on if that opened the window. */
  private settleUnacked(): void {
    if (this.unacked.length === 0) return;
    const wasFull = this.unackedBytes >= UNACKED_WINDOW_BYTES;
    while (this.unacked.length > 0 && covers(this.peerHas, this.unacked[0]!.upto)) {
      this.unackedBytes -= this.unacked.shift()!.bytes;
      this.unackedMovedAt = performance.now();
    }
    if (wasFull && this.unackedBytes < UNACKED_WINDOW_BYTES) this.pump();
  }

  /**
   * In a full mesh each region sends its own writes to every peer: an entry
   * is not relayed to a peer whose link to the entry's region is up when
   * that region holds it (it sends it), so that no region receives a write
   * once per path. It counts as sent; should that link go down, see
   * {@link followLinks}.
   */
  private sentByItsRegion(e: LogEntry): boolean {
    if (this.o.holds === undefined) return false;
    const region = regionOfWriter(e.origin);
    return region !== this.o.peer && region !== this.region && this.linkedUp.has(region) && this.o.holds(region, e.origin, e.seq);
  }

  /**
   * The peer's links from its heartbeat. When one that was up is not any
   * more, what this region left to that link's far end is relayed after
   * all: the log is read again from what the peer holds of that region.
   */
  private followLinks(links: readonly LinkReport[]): void {
    const up = new Set(links.filter((l) => l.state === 'up').map((l) => l.region));
    const lost = new Set([...this.linkedUp].filter((r) => !up.has(r)));
    // At most one re-read per REREAD_MIN_MS, however often a peer's links
    // flap: until then the lost ones count as up, and a later heartbeat
    // finds them lost again.
    const now = performance.now();
    if (lost.size > 0 && now - this.rereadAt < REREAD_MIN_MS) for (const r of lost) up.add(r);
    this.linkedUp = up;
    if (lost.size === 0 || now - this.rereadAt < REREAD_MIN_MS) return;
    let rewind = false;
    for (const [writer, seq] of this.sent) {
      if (!lost.has(regionOfWriter(writer))) continue;
      const has = this.peerHas.get(writer) ?? 0;
      if (seq <= has) continue;
      this.sent.set(writer, has);
      rewind = true;
    }
    if (!rewind) return;
    this.rereadAt = now;
    this.rewind();
    this.pump();
  }

  /**
   * Moves the cursor back to just before the first logged entry that is
   * neither sent nor held by the peer: a peer that holds most of a long log
   * (a link back after a cut, a gap) costs no read of what it holds.
   */
  private rewind(): void {
    this.gapOrigins.clear();
    this.cursor = this.o.store.heldThrough(merged(this.sent, this.peerHas));
  }

  /**
   * Raises what the peer is known to hold by `vv`, noting when it rose.
   * Throws {@link ProtocolError}, changing nothing, when the peer would be
   * known to hold more writers than a version vector may name (MAX_WRITERS):
   * each statement could otherwise add thousands more for as long as the link lasts.
   */
  private raisePeerHas(vv: VersionVector, what: string): void {
    const added = newWriters(this.peerHas, vv);
    if (this.peerHas.size + added > MAX_WRITERS) {
      throw new ProtocolError(`${what} states ${this.peerHas.size + added} writers in all, beyond the ${MAX_WRITERS} a version vector may name`);
    }
    if (raise(this.peerHas, vv)) this.confirmedAt = performance.now();
  }

  /**
   * Called on each of the peer's heartbeats. Entries sent that the peer has
   * not stated it holds, while its heartbeats keep coming and nothing it
   * holds rises for `resendAfterMs`, did not reach its store (a bug at either
   * end, a frame lost): forgets them as sent, so that the stream sends them
   * again from what the peer holds, and says so. Without it such entries
   * would stay pending for as long as the link stays up, and anti-entropy,
   * which waits for nothing pending, would never repair them. Not while a
   * round runs or the peer is applying one this region sent (states queue
   * before entries and hold its vector still).
   */
  private resendUnconfirmed(): boolean {
    const now = performance.now();
    const after = this.o.resendAfterMs;
    if (after === undefined || this.ae.running || this.peerApplyingRound()) {
      this.confirmedAt = now;
      return false;
    }
    const unconfirmed = [...this.sent].filter(([origin, seq]) => seq > (this.peerHas.get(origin) ?? 0));
    if (unconfirmed.length === 0) this.confirmedAt = now;
    if (now - this.confirmedAt < after) return false;
    const waited = Math.round(now - this.confirmedAt);
    this.confirmedAt = now;
    for (const [origin] of unconfirmed) this.sent.set(origin, this.peerHas.get(origin) ?? 0);
    this.unacked = [];
    this.unackedBytes = 0;
    const entries = unconfirmed.reduce((n, [origin, seq]) => n + seq - (this.peerHas.get(origin) ?? 0), 0);
    this.o.onResent?.(`peer did not confirm ${entries} entries sent to it in ${waited} ms of heartbeats; sending them again`);
    return true;
  }

  /**
   * Does `vv` raise what the peer holds of an origin whose entries the
   * stream skipped? Then they may follow on from it now: a peer caught up by
   * state by a third region learns the round's floor from it, and this link
   * carries no acknowledgement that would say so, only its heartbeats.
   */
  private bridgesGap(vv: VersionVector): boolean {
    for (const origin of this.gapOrigins) if ((vv.get(origin) ?? 0) > (this.peerHas.get(origin) ?? 0)) return true;
    return false;
  }

  /** Does the peer lack entries that are no longer in this region's log? */
  private lacksLoggedEntries(): boolean {
    for (const [origin, seq] of this.o.documents.versionVector()) {
      const has = this.peerHas.get(origin) ?? 0;
      if (has < seq && !this.o.store.hasEntry(origin, has + 1)) return true;
    }
    return false;
  }

  /**
   * Called every heartbeat: a peer that needs entries no longer in the log
   * is caught up by state, whether it needed them since its link opened (and
   * the catch-up was left to another region that has not done it) or since
   * this region received them by state from a third one.
   */
  retryCatchUp(): void {
    if (!this.started || this.ae.running || this.closed) return;
    if (this.lacksLoggedEntries()) this.catchUpByState();
    else this.catchUpWantedSince = null;
  }

  /** Entries the peer needs were garbage-collected here: send state instead. */
  private catchUpByState(): void {
    // A peer's sync requests (one per link, a link per redial) would otherwise start a round each, side by side.
    if (this.ae.running) return;
    const now = Date.now();
    this.catchUpWantedSince ??= now;
    if (now - this.lastCatchUp < 2000) return;
    if (this.peerApplyingRound()) return;
    if (this.o.leavesCatchUp(this.catchUpWantedSince, now)) return;
    this.catchUpWantedSince = null;
    this.lastCatchUp = now;
    this.o.logger.info({ peer: this.o.peer }, 'peer lacks entries no longer in the log; catching it up by state');
    this.ae.start().catch((err: unknown) => this.o.logger.warn({ err }, 'anti-entropy round failed'));
  }

  private waitForDrain(): void {
    if (this.drainTimer || this.closed) return;
    this.drainTimer = setTimeout(() => {
      this.drainTimer = null;
      this.pump();
    }, 10);
  }

  private async sendWhenWritable(frame: Frame): Promise<void> {
    while (!this.closed && this.o.transport.buffered() >= this.o.maxBufferedBytes) {
      await new Promise((r) => setTimeout(r, 10));
    }
    if (this.closed) throw new Error('link closed');
    this.send(frame, true);
  }
}

/**
 * Most bytes a link may hold unsent: a full send buffer (beyond which entries
 * and states wait), one largest frame sent just below it, and room for
 * heartbeats and acknowledgements.
 */
function backlogBound(o: { maxBufferedBytes: number; maxFrameBytes: number }): number {
  return o.maxBufferedBytes + o.maxFrameBytes + BACKLOG_SLACK_BYTES;
}

/** Raises `target` to `by` origin by origin; whether anything rose. */
function raise(target: VersionVector, by: VersionVector): boolean {
  let rose = false;
  for (const [origin, seq] of by) {
    if (seq <= (target.get(origin) ?? 0)) continue;
    target.set(origin as WriterId, seq);
    rose = true;
  }
  return rose;
}
