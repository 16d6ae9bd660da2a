/**
 * One live client's WebSocket: the y-websocket protocol as the region
 * speaks it (see messages.ts), with the bounds that keep one client from
 * hurting the others.
 *
 * Threat model: anyone holding a token with read scope may open a
 * connection (the route checks it before the upgrade) and send any bytes.
 * Updates need write scope and take the one write path of HTTP Yjs writes
 * (`Documents.applyYjs`: size, format and admission checks); a refused
 * update closes the connection with a code that names the refusal, and
 * nothing of it reaches anyone. Messages are handled one at a time, in
 * order, and a client sending faster than they are handled is paused (TCP
 * pushes back). A message longer than the largest update or awareness
 * message is refused from its frame header, before it is buffered (ws
 * closes with 1009). Awareness messages are rate-limited per connection
 * ({@link AWARENESS_PER_SECOND}), queries of the room's presence more
 * tightly ({@link QUERY_AWARENESS_PER_SECOND}); the excess is dropped and counted. A
 * client that reads slower than its document changes is dropped once its
 * send buffer passes its bound, never slowing the others.
 */
import type { WebSocket } from 'ws';
import { MeridianError } from '../errors.js';
import type { DocKey } from '../ids.js';
import type { Documents } from '../docs/types.js';
import { KEEP_ALIVE_MESSAGE, decodeClientMessage, isEmptyUpdate, syncStep1, syncStep2, type ClientMessage } from './messages.js';
import type { PresenceRefusal, Room } from './room.js';
import type { LiveMember, Rooms } from './rooms.js';
import { closeCodeOf, MAX_AWARENESS_BYTES } from './close-codes.js';
import { createTokenBucket, type TokenBucket } from '../token-bucket.js';

export interface ConnectionOptions {
  doc: DocKey;
  socket: WebSocket;
  documents: Documents;
  rooms: Rooms;
  /**
   * What of the document's durable state the client lacks (sync step 2);
   * null for an unknown document. Shared with other reads of it at once.
   */
  stateFor: (stateVector: Uint8Array) => Promise<Uint8Array | null>;
  /** The document's state vector (sync step 1); null for an unknown document. */
  stateVector: () => Promise<Uint8Array | null>;
  /** Whether the client's token may write. */
  canWrite: boolean;
  wantsVersions: boolean;
  /** Largest update accepted (`limits.yjsUpdateBytes`). */
  maxUpdateBytes: number;
  /** Bytes queued for the client beyond which it is dropped (`limits.liveSendBufferBytes`). */
  sendBufferBytes: number;
  /** Interval of pings and keep-alive messages (`limits.liveKeepAliveMs`). */
  keepAliveMs: number;
  /**
   * Charges one update to the token's write rate (shared with HTTP writes):
   * 0 when charged, else the seconds until the rate allows one.
   */
  takeWrite: () => number;
  /**
   * Before an update that may create the document: reserves it against the
   * token's `quota.maxDocuments` (throws `quota_exceeded`) and returns what to
   * call once the update is applied or refused.
   */
  reserveCreation: () => () => void;
  /** A refusal, for the metric and the rate-limited log. */
  onRefused: (reason: string, err?: MeridianError) => void;
}

/**
 * Awareness messages a connection may send per second, and in a burst;
 * beyond, they are dropped (presence is renewed every 15 s, so a dropped
 * state heals) and counted as `live_awareness_dropped`.
 */
export const AWARENESS_PER_SECOND = 30;
export const AWARENESS_BURST = 60;
/**
 * Presence queries a connection may send per second, and in a burst. Each
 * is two bytes answered with every state of the room, up to
 * `MAX_ROOM_PRESENCE_BYTES`: at the awareness rate, 120 MiB a second for
 * one connection. y-websocket asks only over its BroadcastChannel, never
 * its socket (a joiner is sent the states unasked). The excess is dropped
 * and counted as `live_awareness_dropped`.
 */
export const QUERY_AWARENESS_PER_SECOND = 2;
export const QUERY_AWARENESS_BURST = 4;
/** Bytes of message framing (type, sub-type, length) allowed beyond the largest update. */
const MESSAGE_SLACK_BYTES = 1024;
/**
 * Messages waiting to be handled beyond which the socket is paused, and
 * their bytes: a message may be as large as an update (1 MiB by default),
 * and updates held for the token's write rate wait here, so a count alone
 * let each connection hold 32 MiB (a few thousand connections, the heap).
 */
const MAX_INBOUND_QUEUE = 32;
const MAX_INBOUND_QUEUE_UPDATES = 2;
/** An empty Yjs update and state vector, for a document this region has never seen. */
const EMPTY_UPDATE = new Uint8Array([0, 0]);
const EMPTY_STATE_VECTOR = new Uint8Array([0]);

export class LiveConnection implements LiveMember {
  readonly wantsVersions: boolean;
  private readonly room: Room<LiveMember>;
  private inbound: Promise<void> = Promise.resolve();
  private queued = 0;
  private queuedBytes = 0;
  private paused = false;
  private closed = false;
  private awaitingPong = false;
  private readonly timer: NodeJS.Timeout;
  private readonly awarenessBudget: TokenBucket = createTokenBucket(AWARENESS_PER_SECOND, AWARENESS_BURST, () => performance.now());
  private readonly queryBudget: TokenBucket = createTokenBucket(QUERY_AWARENESS_PER_SECOND, QUERY_AWARENESS_BURST, () => performance.now());

  constructor(private readonly o: ConnectionOptions) {
    this.wantsVersions = o.wantsVersions;
    this.room = o.rooms.join(o.doc, this);
    const { socket } = o;
    limitMessageBytes(socket, Math.max(o.maxUpdateBytes, MAX_AWARENESS_BYTES) + MESSAGE_SLACK_BYTES);
    socket.on('message', (data, isBinary) => this.receive(data, isBinary));
    socket.on('pong', () => (this.awaitingPong = false));
    socket.on('close', () => this.closeDown());
    socket.on('error', (err) => this.failed(err));
    this.timer = setInterval(() => this.keepAlive(), o.keepAliveMs);
    this.timer.unref();
    // Found off the event loop for a large document not held in memory (docs/cold-render.ts); the client's
    // messages are handled after it is sent.
    this.inbound = o.stateVector().then(
      (sv) => this.send(syncStep1(sv ?? EMPTY_STATE_VECTOR)),
      (err: unknown) => this.close(err instanceof MeridianError ? err : new MeridianError('internal', 'the document could not be read', undefined, { cause: err })),
    );
    const states = this.room.statesMessage();
    if (states) this.send(states);
  }

  /** Queues bytes for the client, or drops the client if it is not reading. */
  send(bytes: Uint8Array): void {
    const { socket } = this.o;
    if (this.closed || socket.readyState !== socket.OPEN) return;
    // One message always goes out, however large (a big document's first sync); beyond that the bound holds.
    if (socket.bufferedAmount > 0 && socket.bufferedAmount + bytes.length > this.o.sendBufferBytes) {
      this.o.onRefused('live_slow_client');
      // A close frame would wait behind the full buffer: cut the connection. The client reconnects and resyncs.
      socket.terminate();
      this.closeDown();
      return;
    }
    socket.send(bytes, { binary: true });
  }

  /** Closes with a refusal's code and reason (a `MeridianError` code), e.g. while the region stops. */
  close(err: MeridianError): void {
    if (this.closed) return;
    const { socket } = this.o;
    socket.close(closeCodeOf(err), err.code);
    this.closeDown();
    // A client that never answers the closing handshake is cut after a while.
    setTimeout(() => socket.terminate(), 2000).unref();
  }

  private receive(data: unknown, isBinary: boolean): void {
    if (this.closed) return;
    const bytes = toBytes(data);
    if (!isBinary || bytes === null) return this.refuse(new MeridianError('bad_request', 'live messages are binary'));
    this.queued++;
    this.queuedBytes += bytes.byteLength;
    const maxBytes = MAX_INBOUND_QUEUE_UPDATES * (this.o.maxUpdateBytes + MESSAGE_SLACK_BYTES);
    if ((this.queued > MAX_INBOUND_QUEUE || this.queuedBytes > maxBytes) && !this.paused) {
      this.paused = true;
      this.o.socket.pause();
    }
    this.inbound = this.inbound.then(async () => {
      try {
        if (!this.closed) await this.handle(bytes);
      } catch (err) {
        this.refuse(err instanceof MeridianError ? err : new MeridianError('internal', 'the message could not be handled', undefined, { cause: err }));
      } finally {
        this.queued--;
        this.queuedBytes -= bytes.byteLength;
        if (this.paused && this.queued < MAX_INBOUND_QUEUE / 4 && this.queuedBytes <= maxBytes / 2) {
          this.paused = false;
          this.o.socket.resume();
        }
      }
    });
  }

  private async handle(bytes: Uint8Array): Promise<void> {
    let message: ClientMessage;
    try {
      message = decodeClientMessage(bytes);
    } catch (err) {
      throw new MeridianError('bad_request', 'the message is not a y-websocket message', undefined, { cause: err });
    }
    switch (message.type) {
      case 'sync-step-1':
        return this.send(syncStep2((await this.o.stateFor(message.stateVector)) ?? EMPTY_UPDATE));
      case 'update':
        return this.applyUpdate(message.update);
      case 'awareness':
        if (message.update.length > MAX_AWARENESS_BYTES) {
          throw new MeridianError('body_too_large', `awareness updates are at most ${MAX_AWARENESS_BYTES} bytes`);
        }
        if (this.awarenessBudget.take() > 0) return this.o.onRefused('live_awareness_dropped');
        return this.applyAwareness(message.update);
      case 'query-awareness': {
        // A two-byte question whose answer is every state in the room: held to a rate of its own.
        if (this.queryBudget.take() > 0) return this.o.onRefused('live_awareness_dropped');
        const states = this.room.statesMessage();
        if (states) this.send(states);
        return;
      }
      case 'ignored':
        return;
    }
  }

  private async applyUpdate(update: Uint8Array): Promise<void> {
    // A client answering sync step 1 with nothing new sends an empty update, read-only or not.
    if (isEmptyUpdate(update)) return;
    if (!this.o.canWrite) throw new MeridianError('forbidden', 'this token may only read: its updates are refused');
    if (update.length > this.o.maxUpdateBytes) {
      throw new MeridianError('body_too_large', `updates are at most ${this.o.maxUpdateBytes} bytes (limits.yjsUpdateBytes)`);
    }
    await this.writeRate();
    if (this.closed) return;
    const settle = this.o.reserveCreation();
    try {
      // Sent on to the room's clients by Rooms.committed once durable, like every other write.
      await this.o.documents.applyYjs(this.o.doc, update, this);
    } finally {
      settle();
    }
  }

  /**
   * Waits until the token's write rate allows this update. Unlike HTTP (429),
   * a live update is held, not refused: y-websocket has no way to resend one
   * refused, and holding it pauses the client's socket (TCP pushes back)
   * once its queue is full.
   */
  private async writeRate(): Promise<void> {
    let wait = this.o.takeWrite();
    if (wait === 0) return;
    this.o.onRefused('live_write_rate');
    while (wait > 0 && !this.closed) {
      await new Promise((resolve) => setTimeout(resolve, Math.ceil(wait * 1000)));
      wait = this.o.takeWrite();
    }
  }

  private applyAwareness(update: Uint8Array): void {
    let refused: PresenceRefusal | null;
    try {
      refused = this.room.applyFromMember(this, update);
    } catch (err) {
      throw new MeridianError('bad_request', 'the awareness update does not decode', undefined, { cause: err });
    }
    if (refused !== null) this.o.onRefused(refused === 'ids' ? 'live_presence_ids' : 'live_presence_bytes');
  }

  private refuse(err: MeridianError): void {
    this.o.onRefused('live_update_refused', err);
    this.close(err);
  }

  private keepAlive(): void {
    const { socket } = this.o;
    // Paused by this region (its messages wait, for the write rate perhaps), the socket's pong is not read yet.
    if (this.paused) return;
    if (this.awaitingPong) {
      // No pong for a whole interval: the path is dead; free the slot.
      socket.terminate();
      return this.closeDown();
    }
    this.awaitingPong = true;
    socket.ping();
    // y-websocket reconnects after 30 s without a message; pings are not messages to a browser.
    this.send(KEEP_ALIVE_MESSAGE);
  }

  /** A socket error; a message over the size bound is counted as a refusal (ws has closed with 1009). */
  private failed(err: Error & { code?: string }): void {
    if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
      this.o.onRefused('live_update_refused', new MeridianError('body_too_large', 'the message is longer than the largest update (limits.yjsUpdateBytes)'));
    }
    this.closeDown();
  }

  private closeDown(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.o.rooms.leave(this.room, this);
  }
}

/**
 * Lowers the socket's message bound below the WebSocket server's (which is
 * the peer links' `replication.maxFrameBytes`): ws then refuses a longer
 * message from its frame header, before buffering it. ws has no per-socket
 * option for it; its receiver reads the bound for every frame.
 */
function limitMessageBytes(socket: WebSocket, maxBytes: number): void {
  const receiver = (socket as unknown as { _receiver?: { _maxPayload?: number } })._receiver;
  if (receiver?._maxPayload !== undefined && (receiver._maxPayload === 0 || receiver._maxPayload > maxBytes)) receiver._maxPayload = maxBytes;
}

function toBytes(data: unknown): Uint8Array | null {
  if (Buffer.isBuffer(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (Array.isArray(data)) return toBytes(Buffer.concat(data as Buffer[]));
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return null;
}


