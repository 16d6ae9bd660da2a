/**
 * The Server-Sent Events side of one change-feed subscriber: formatting,
 * the bound on what may wait unsent, heartbeats, and the final event.
 *
 * Threat model: a subscriber is a caller with a read token; after its
 * request it sends nothing, but it may read slowly or not at all. What it
 * has not read waits in the response's buffer (ours and the socket's); once
 * that passes `queueBytes` the stream is cut off with a last event naming
 * the position to resume from, and a socket that still does not drain is
 * destroyed after a grace period. Nothing else grows per subscriber.
 */
import type { ServerResponse } from 'node:http';

/** One event as SSE carries it; without `id` the consumer's last event id stays as it was. */
export interface SseEvent {
  id?: string;
  event: string;
  data: unknown;
  /** `data` rendered as JSON already (shared by many streams); written instead of rendering it again. */
  dataText?: string;
}

export interface SseStreamOptions {
  /** Bytes that may wait unsent before the stream is cut off. */
  queueBytes: number;
  /** Shared by a region's streams: what their events larger than `queueBytes` may hold unsent, in all. */
  oversized?: OversizedSends;
  /** Interval of `: ping` comments, so proxies keep an idle stream open. */
  heartbeatMs: number;
  /** Headers to send beside the stream's own (CORS headers set by hooks, for instance). */
  headers?: Record<string, string | number | string[]>;
}

/**
 * Bytes of events larger than a stream's bound, unsent, across a region's
 * streams. Such an event goes out alone (nothing else may wait before it);
 * but one change to a large document reaches every feed of its collection at
 * once, and a caller's 250 feeds that never read would each hold its copy.
 */
export class OversizedSends {
  private held = 0;

  constructor(readonly maxBytes: number) {}

  /** Takes `bytes` if they fit beside what is held (a first one always does); false otherwise. */
  take(bytes: number): boolean {
    if (this.held > 0 && this.held + bytes > this.maxBytes) return false;
    this.held += bytes;
    return true;
  }

  give(bytes: number): void {
    this.held -= bytes;
  }

  /** Whether `bytes` would fit now. */
  fits(bytes: number): boolean {
    return this.held === 0 || this.held + bytes <= this.maxBytes;
  }
}

/** Time a cut-off stream is given to drain its final event before its socket is destroyed. */
const CUTOFF_GRACE_MS = 10_000;
/** How often a resume waiting for its consumer looks again. */
const DRAIN_POLL_MS = 10;

/** Renders an event; `data` is JSON on one line, so it never needs splitting. */
export function formatEvent(e: SseEvent): string {
  const id = e.id === undefined ? '' : `id: ${e.id}\n`;
  return `${id}event: ${e.event}\ndata: ${e.dataText ?? JSON.stringify(e.data)}\n\n`;
}

/** An open event stream on a hijacked response. */
export class SseStream {
  private open = true;
  /** Bytes of the last send, refused for want of room among the region's oversized sends (see {@link drained}); 0: none. */
  private roomWanted = 0;
  /** Bytes of an event larger than the bound written and not yet handed to the socket; 0: none. */
  private oversizedWaiting = 0;
  private readonly heartbeat: ReturnType<typeof setInterval>;
  private readonly closeListeners = new Set<() => void>();

  constructor(
    private readonly res: ServerResponse,
    private readonly options: SseStreamOptions,
  ) {
    res.writeHead(200, {
      ...options.headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      // Proxies that buffer responses (nginx) would hold events back.
      'x-accel-buffering': 'no',
    });
    // The first bytes, so that the client's fetch resolves before the first event.
    res.write(': open\n\n');
    this.heartbeat = setInterval(() => this.ping(), options.heartbeatMs);
    this.heartbeat.unref();
    res.once('close', () => this.closed());
    // A client gone while the feed waited to open: 'close' has fired already.
    if (res.socket?.destroyed !== false) this.closed();
  }

  get isOpen(): boolean {
    return this.open;
  }

  /** Called once when the stream ends, whoever ended it. */
  onClose(listener: () => void): void {
    if (this.open) this.closeListeners.add(listener);
    else listener();
  }

  /**
   * Writes an event; false (nothing written) when closed or when it would
   * pass the bound. What waits is thus at most `queueBytes`, and one event
   * larger than it before them (plus `small` events, of which a stream sends
   * one).
   */
  send(event: SseEvent, small = false): boolean {
    if (!this.open) return false;
    const text = formatEvent(event);
    const waiting = this.res.writableLength;
    const bytes = Buffer.byteLength(text);
    const oversize = bytes > this.options.queueBytes;
    // An event larger than the bound still goes out when nothing waits before
    // it, and the region's oversized sends have room for it; events within
    // the bound may wait behind it (the changes committed after a large
    // document's, delivered once it is rendered); a small control event
    // (`ready`) always goes out, once per stream.
    if (!small && oversize && waiting > 0) return false;
    const behind = Math.max(0, waiting - this.oversizedWaiting);
    if (!small && behind > 0 && behind + bytes > this.options.queueBytes) return false;
    const { oversized } = this.options;
    if (!small && oversized !== undefined && oversize) {
      if (!oversized.take(bytes)) {
        this.roomWanted = bytes;
        return false;
      }
      this.oversizedWaiting = bytes;
      // Called once it is handed to the socket, or with an error when the socket is destroyed first.
      this.res.write(text, () => {
        oversized.give(bytes);
        this.oversizedWaiting = 0;
      });
      this.roomWanted = 0;
      return true;
    }
    this.res.write(text);
    this.roomWanted = 0;
    return true;
  }

  /**
   * Resolves once nothing waits unsent (or the stream closed). Polled: the
   * response emits 'drain' only after a write that passed its own mark.
   */
  drained(): Promise<void> {
    return new Promise((resolve) => {
      const check = (): void => {
        // Refused for want of room among the region's oversized sends: try
        // again once there is room for it, not at each poll (the caller
        // renders the event again, a whole document, every time it tries).
        const room = this.options.oversized;
        if (this.open && (this.res.writableLength > 0 || (this.roomWanted > 0 && room !== undefined && !room.fits(this.roomWanted)))) return;
        this.roomWanted = 0;
        clearInterval(timer);
        resolve();
      };
      const timer = setInterval(check, DRAIN_POLL_MS);
      check();
    });
  }

  /** Writes a last event (past the bound: it is small) and ends the stream. */
  finish(event: SseEvent): void {
    if (!this.open) return;
    this.res.end(formatEvent(event));
    // A consumer that never reads again must not keep the socket and its buffer.
    const timer = setTimeout(() => this.res.destroy(), CUTOFF_GRACE_MS);
    timer.unref();
    this.res.once('close', () => clearTimeout(timer));
    this.closed();
  }

  /** Ends the stream without a last event (the node is closing). */
  end(): void {
    if (!this.open) return;
    this.res.end();
    this.closed();
  }

  private ping(): void {
    // A full buffer needs no ping: the connection is busy, and the bound is not to be passed.
    if (this.open && this.res.writableLength === 0) this.res.write(': ping\n\n');
  }

  private closed(): void {
    if (!this.open) return;
    this.open = false;
    clearInterval(this.heartbeat);
    for (const listener of this.closeListeners) listener();
    this.closeListeners.clear();
  }
}
