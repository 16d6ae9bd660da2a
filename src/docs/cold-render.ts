/**
 * Reads of large documents not held decoded, built and rendered on a thread
 * of their own, as JSON or as one Yjs update. Building a document costs
 * time per Yjs struct: a cold read of one of 285,000 structs (three regions each writing a third of
 * the per-document bound into it at once) held the event loop 3.6-4.9 s, and
 * with it every request and the links' heartbeats. On this thread the same
 * read waits for it, and the region goes on serving meanwhile.
 *
 * One thread, one render at a time, in the order asked. Renders waiting are
 * bounded, in all and per caller: beyond, a read is refused (503, retry)
 * rather than wait behind many others. The same thread judges content
 * conflicts of large documents (see {@link ColdRenderer.judge}).
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { MeridianError } from '../errors.js';
import { costlyLoad } from '../crdt/index.js';
import type { Verdict } from './replace.js';

/** What a read renders: the document as JSON, as a Yjs update (only what `sv`, checked already, lacks), or its state vector. */
export type RenderKind = { kind: 'json' } | { kind: 'yjs'; sv?: Uint8Array } | { kind: 'sv' };

type Work = (RenderKind | JudgeRequest) & {
  /** A document's stored updates, in the order they load (snapshot, then entries). */
  updates: Uint8Array[];
};

export type RenderRequest = Work & { id: number };

/** The document of `updates` (this region's) against a peer's whole state `theirs`, under the conflict rule (replace.ts). */
interface JudgeRequest {
  kind: 'judge';
  theirs: Uint8Array;
  /** Past this many structs `theirs` is not built: it conflicts with nothing. */
  maxStructs: number;
}

/**
 * What a conflict comes to, decided on the thread. `winner`: when the
 * peer's state wins, it as its document encodes it (else null), and
 * `holdsContent` whether that document holds any. `invalid`: why the
 * peer's state is not a valid update (crdt/validate.ts), else null.
 */
export interface Judged {
  verdict: Verdict;
  winner: Uint8Array | null;
  holdsContent: boolean;
  invalid: string | null;
}

export type RenderReply =
  | { id: number; outcome: 'rendered'; body: Uint8Array }
  | ({ id: number; outcome: 'judged' } & Judged)
  | { id: number; outcome: 'absent' }
  /** Not built within the bound on placement work (crdt/load.ts CostlyLoad): refused as the event loop would refuse it. */
  | { id: number; outcome: 'costly' }
  /** Not rendered there (an update Yjs refuses): the event loop reads it, as it reads any other, skipping and repairing. */
  | { id: number; outcome: 'unbuilt'; error?: string };

/** A render's outcome: the JSON, null for a document that holds nothing, undefined when it is to be read as any other. */
export type Rendered = Buffer | null | undefined;

/**
 * Longest a render may take, ms: past it the thread is stopped (its renders
 * fail with 503) and the next render starts one anew. A render of a document
 * at several times the struct bound takes seconds.
 */
const RENDER_TIMEOUT_MS = 30_000;

/** Renders waiting or running at once, at most; beyond, 503. */
const MAX_WAITING = 32;
/** Of those, for one caller (an application server reading several large documents at once behind one token). */
const MAX_WAITING_PER_CALLER = 8;

/** The compiled thread beside this module; absent when running from TypeScript sources (tests of single modules). */
const THREAD_FILE = fileURLToPath(new URL('./render-thread.js', import.meta.url));

interface Waiting {
  caller: string;
  settle: (reply: RenderReply) => void;
  reject: (err: Error) => void;
}

/**
 * The caller the change feeds' renders count under (src/api/feed-hub.ts).
 * They bound themselves (two at a time at most: one for live changes, one
 * for the resumes), so reads of clients that fill the queue do not refuse
 * them: a feed refused its render would end, and resume.
 */
export const FEED_RENDERS = 'change-feeds';

/**
 * The caller conflict verdicts count under. They are bounded by the links
 * (each resolves one conflict at a time), and a verdict refused would leave
 * the conflict to the next round: reads that fill the queue do not refuse them.
 */
const CONFLICT_VERDICTS = 'conflicts';

export class ColdRenderer {
  private worker: Worker | null = null;
  private readonly waiting = new Map<number, Waiting>();
  private nextId = 1;
  private closed = false;
  private watchdog: NodeJS.Timeout | null = null;

  /** `file`: the thread's script; null renders nothing (every read is left to the event loop). */
  constructor(private readonly file: string | null = existsSync(THREAD_FILE) ? THREAD_FILE : null) {}

  /** Whether renders can run on the thread at all. */
  get available(): boolean {
    return this.file !== null && !this.closed;
  }

  /**
   * The document of `updates` rendered as `what` asks. Throws
   * `unavailable` when too many renders wait (in all, or of `caller`).
   */
  render(updates: Uint8Array[], what: RenderKind, caller: string): Promise<Rendered> {
    if (!this.available) return Promise.resolve(undefined);
    this.refuseFull(caller);
    return this.post({ ...what, updates }, caller).then((reply) => {
      if (reply.outcome === 'rendered') return Buffer.from(reply.body.buffer, reply.body.byteOffset, reply.body.byteLength);
      if (reply.outcome === 'costly') throw costlyLoad();
      return reply.outcome === 'absent' ? null : undefined;
    });
  }

  /**
   * How this region's state `mine` and a peer's `theirs` of a document
   * compare under the conflict rule (replace.ts), each built on the thread;
   * undefined when the thread cannot run it or could not build `mine`
   * (the event loop decides it then). Throws `unavailable` when the thread
   * failed or was stopped.
   */
  async judge(mine: Uint8Array, theirs: Uint8Array, maxStructs: number): Promise<Judged | undefined> {
    if (!this.available) return undefined;
    const reply = await this.post({ kind: 'judge', updates: [mine], theirs, maxStructs }, CONFLICT_VERDICTS);
    return reply.outcome === 'judged' ? reply : undefined;
  }

  private post(request: Work, caller: string): Promise<RenderReply> {
    const worker = this.thread();
    const id = this.nextId++;
    return new Promise<RenderReply>((settle, reject) => {
      this.waiting.set(id, { caller, settle, reject });
      worker.postMessage({ ...request, id } satisfies RenderRequest);
      this.armWatchdog();
    });
  }

  /** Throws `unavailable` when `caller` could not queue a render now (see {@link render}): checked before reading the store. */
  refuseFull(caller: string): void {
    if (this.waiting.size >= MAX_WAITING && caller !== FEED_RENDERS && caller !== CONFLICT_VERDICTS) {
      throw new MeridianError('unavailable', `${MAX_WAITING} reads of large documents not held in memory wait for their turn: retry shortly`);
    }
    let mine = 0;
    for (const w of this.waiting.values()) if (w.caller === caller) mine++;
    if (mine >= MAX_WAITING_PER_CALLER) {
      throw new MeridianError('unavailable', `this caller already waits for ${mine} reads of large documents not held in memory: retry once they are answered`);
    }
  }

  /**
   * Renders run one at a time in the order posted: the oldest waiting is the
   * one running, and the watchdog stops the thread when it has run too long.
   */
  private armWatchdog(): void {
    if (this.watchdog !== null) return;
    const oldest = this.waiting.keys().next().value;
    if (oldest === undefined) return;
    this.watchdog = setTimeout(() => {
      this.watchdog = null;
      const worker = this.worker;
      if (!this.waiting.has(oldest) || !worker) return this.armWatchdog();
      this.worker = null;
      this.failAll(`a read of a large document took longer than ${RENDER_TIMEOUT_MS / 1000} s to render, and its thread was stopped`);
      void worker.terminate();
    }, RENDER_TIMEOUT_MS);
    this.watchdog.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    this.worker = null;
    this.failAll('the region is stopping');
    if (worker) await worker.terminate();
  }

  private thread(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(this.file!);
    worker.on('message', (reply: RenderReply) => {
      const waiting = this.waiting.get(reply.id);
      if (!waiting) return;
      this.waiting.delete(reply.id);
      // The next one runs from now.
      if (this.watchdog) clearTimeout(this.watchdog);
      this.watchdog = null;
      this.armWatchdog();
      waiting.settle(reply);
    });
    // A thread that dies (out of memory on a huge document) fails its renders, which the event loop
    // would likely not survive either; the next render starts a thread anew.
    const lost = (reason: string): void => {
      if (this.worker !== worker) return;
      this.worker = null;
      this.failAll(`the thread rendering large documents stopped (${reason})`);
    };
    worker.on('error', (err) => lost(err.message));
    worker.on('exit', (code) => lost(`exit code ${code}`));
    // The region's own work keeps the process alive, not this thread.
    worker.unref();
    this.worker = worker;
    return worker;
  }

  private failAll(why: string): void {
    if (this.watchdog) clearTimeout(this.watchdog);
    this.watchdog = null;
    const err = new MeridianError('unavailable', `${why}: retry the read`);
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
  }
}
