/**
 * One direction of one proxied connection: reads from a source socket and
 * writes to a destination socket, applying the proxy's current fault. Chunks
 * leave strictly in arrival order, whatever the fault does to their timing.
 */
import type { Socket } from 'node:net';
import { faultApplies, retransmitTimeoutMs, wanShape, type Fault, type StreamDirection, type WanShape } from './proxy-fault.js';

/** Above this many queued bytes the source is paused, so delay faults keep TCP backpressure. */
const QUEUE_HIGH_WATER = 1 << 20;
/** A bandwidth limit sends at most this fraction of a second's worth of bytes at once. */
const BANDWIDTH_SLICES_PER_SECOND = 20;

interface Chunk {
  data: Buffer;
  arrivedAt: number;
  /** Delay drawn for this chunk (latency, plus a retransmission timeout if "lost") when it reached the head of the queue. */
  delayMs?: number;
}

/** Counters a pipe reports to its proxy as bytes move. */
export interface PipeCounters {
  forwarded(stream: StreamDirection, bytes: number): void;
  dropped(bytes: number): void;
}

export interface PipeOptions {
  stream: StreamDirection;
  source: Socket;
  dest: Socket;
  fault: () => Fault;
  random: () => number;
  counters: PipeCounters;
}

export class Pipe {
  private readonly queue: Chunk[] = [];
  private queuedBytes = 0;
  /** The source has sent FIN; the destination is ended once the queue is empty. */
  private ended = false;
  private finished = false;
  private waitingDrain = false;
  private cancelScheduled: (() => void) | null = null;

  constructor(private readonly opts: PipeOptions) {
    opts.source.on('data', (data: Buffer) => this.push(data));
    opts.source.on('end', () => {
      this.ended = true;
      this.pump();
    });
    opts.dest.on('drain', () => {
      this.waitingDrain = false;
      this.pump();
    });
    this.refresh();
  }

  /** Re-reads the fault: re-times queued chunks, pauses or resumes the source, resumes delivery. */
  refresh(): void {
    this.cancelTimer();
    for (const chunk of this.queue) delete chunk.delayMs;
    const fault = this.current();
    if (fault.kind === 'blackhole') this.dropQueue();
    this.updateFlow();
    this.pump();
  }

  /** Stops all delivery; queued bytes count as dropped. Called when either socket is gone. */
  dispose(): void {
    this.finished = true;
    this.cancelTimer();
    this.dropQueue();
  }

  private current(): Fault {
    const fault = this.opts.fault();
    return faultApplies(fault, this.opts.stream) ? fault : { kind: 'none' };
  }

  private push(data: Buffer): void {
    if (this.finished || this.current().kind === 'blackhole') {
      this.opts.counters.dropped(data.length);
      return;
    }
    this.queue.push({ data, arrivedAt: performance.now() });
    this.queuedBytes += data.length;
    this.updateFlow();
    this.pump();
  }

  /** Reads from the source only while not stalled and the queue has room. */
  private updateFlow(): void {
    const { source } = this.opts;
    const hold = this.current().kind === 'stall' || this.queuedBytes > QUEUE_HIGH_WATER;
    if (hold && !source.isPaused()) source.pause();
    else if (!hold && source.isPaused() && !this.finished) source.resume();
  }

  private dropQueue(): void {
    if (this.queuedBytes > 0) this.opts.counters.dropped(this.queuedBytes);
    this.queue.length = 0;
    this.queuedBytes = 0;
  }

  /** Delivers what the fault allows now and schedules itself for the rest. */
  private pump(): void {
    while (!this.finished && !this.waitingDrain && this.cancelScheduled === null) {
      const fault = this.current();
      if (fault.kind === 'stall' || fault.kind === 'blackhole') return;
      const head = this.queue[0];
      if (head === undefined) {
        this.finishIfEnded();
        return;
      }
      const waitMs = this.step(fault, head);
      if (waitMs !== null) {
        this.schedule(waitMs);
        return;
      }
    }
  }

  /**
   * Handles the head chunk under `fault`: forwards all or part of it, or
   * returns how long to wait first. Returns null to keep going at once.
   */
  private step(fault: Fault, head: Chunk): number | null {
    const shape = wanShape(fault);
    if (shape) return this.stepWan(shape, head);
    if (fault.kind === 'slicer') {
      this.forward(1 + Math.floor(this.opts.random() * fault.maxBytes));
      return this.queue.length > 0 ? (fault.delayMs ?? 0) : null;
    }
    this.forward(head.data.length);
    return null;
  }

  /**
   * Holds the head chunk for its delay, then sends it at the allowed rate.
   * Chunks queue behind a held one, as bytes behind a lost TCP segment do.
   */
  private stepWan(shape: WanShape, head: Chunk): number | null {
    head.delayMs ??= this.drawDelay(shape);
    const wait = head.arrivedAt + head.delayMs - performance.now();
    if (wait > 0) return wait;
    if (shape.bytesPerSecond === Infinity) {
      this.forward(head.data.length);
      return null;
    }
    const slice = Math.max(1, Math.floor(shape.bytesPerSecond / BANDWIDTH_SLICES_PER_SECOND));
    return (this.forward(slice) * 1000) / shape.bytesPerSecond;
  }

  /** Latency ± jitter, plus a retransmission timeout ± jitter for a chunk drawn as lost. */
  private drawDelay(shape: WanShape): number {
    const jitter = (): number => (shape.jitterMs > 0 ? (2 * this.opts.random() - 1) * shape.jitterMs : 0);
    let delay = Math.max(0, shape.latencyMs + jitter());
    // The loss draw is made only under loss, so seeded runs of the other faults see the same numbers as before.
    if (shape.lossPercent > 0 && this.opts.random() * 100 < shape.lossPercent) {
      delay += Math.max(0, retransmitTimeoutMs(shape.latencyMs) + jitter());
    }
    return delay;
  }

  /** Writes up to `max` bytes from the head of the queue; returns how many. */
  private forward(max: number): number {
    const head = this.queue[0];
    if (head === undefined) return 0;
    const piece = head.data.length <= max ? head.data : head.data.subarray(0, max);
    if (piece === head.data) this.queue.shift();
    else head.data = head.data.subarray(max);
    this.queuedBytes -= piece.length;
    this.opts.counters.forwarded(this.opts.stream, piece.length);
    if (!this.opts.dest.write(piece)) this.waitingDrain = true;
    this.updateFlow();
    return piece.length;
  }

  private finishIfEnded(): void {
    if (this.ended && !this.opts.dest.writableEnded) this.opts.dest.end();
  }

  /** Zero waits yield to the event loop so that slices leave as separate writes. */
  private schedule(ms: number): void {
    const run = (): void => {
      this.cancelScheduled = null;
      this.pump();
    };
    if (ms <= 0) {
      const immediate = setImmediate(run);
      this.cancelScheduled = () => clearImmediate(immediate);
    } else {
      const timer = setTimeout(run, ms);
      this.cancelScheduled = () => clearTimeout(timer);
    }
  }

  private cancelTimer(): void {
    this.cancelScheduled?.();
    this.cancelScheduled = null;
  }
}
