/**
 * The main thread's side of the writer thread (./writer-thread.ts): posts
 * the store's writes to it (group commits, snapshot batches, GC steps, peer
 * acknowledgements, digests) and
 * resolves each once the thread has done it. Requests run one at a time in
 * the order they were posted.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { CommitResult } from './batch.js';
import type { GcResult } from './gc.js';
import type { SyncMode } from './sqlite-options.js';
import type { RegionId, VersionVector } from '../ids.js';
import type { CommitBatch, DocDigest } from './types.js';

export type WriterRequest =
  | { type: 'commit'; id: number; batch: CommitBatch }
  | { type: 'gc'; id: number; peers: string[]; olderThanTs: number; budget: number }
  | { type: 'acks'; id: number; peer: RegionId; vv: VersionVector }
  | { type: 'digests'; id: number; digests: DocDigest[] }
  | { type: 'close' };
export type WriterReply =
  | { type: 'committed'; id: number; result: CommitResult }
  | { type: 'collected'; id: number; result: GcResult }
  | { type: 'stored'; id: number; result: null }
  | { type: 'failed'; id: number; message: string }
  | { type: 'closed' };

interface Waiting {
  resolve: (result: CommitResult | GcResult | null) => void;
  reject: (err: Error) => void;
}

/** The compiled worker beside this module; absent when running from TypeScript sources (tests). */
const WORKER_FILE = fileURLToPath(new URL('./writer-thread.js', import.meta.url));

/** The writer thread's script, if it exists: `file`, or the compiled one beside this module. */
export function writerThreadFile(file?: string): string | null {
  const candidate = file ?? WORKER_FILE;
  return existsSync(candidate) ? candidate : null;
}

export class CommitWriter {
  private readonly worker: Worker;
  private readonly waiting = new Map<number, Waiting>();
  private nextId = 1;
  private closed: Promise<void> | null = null;
  private failure: Error | null = null;

  private readonly onLost: ((err: Error) => void) | undefined;

  /** `onLost` is called once if the thread ends before {@link close}. */
  constructor(file: string, options: { path: string; synchronous: SyncMode; busyTimeoutMs: number; maxConflictBytes: number; onLost?: (err: Error) => void }) {
    const { onLost, ...workerData } = options;
    this.onLost = onLost;
    this.worker = new Worker(file, { workerData });
    this.worker.on('message', (reply: WriterReply) => this.onReply(reply));
    // A writer thread that dies takes every pending request with it: fail them, and every later one.
    this.worker.on('error', (err) => this.fail(err));
    this.worker.on('exit', (code) => {
      if (this.closed === null) this.fail(new Error(`writer thread exited (code ${code})`));
    });
  }

  /** Commits a batch (entries, summaries, snapshots) in one transaction. */
  commit(batch: CommitBatch): Promise<CommitResult> {
    const packed = packBinary(batch);
    return this.post((id) => ({ type: 'commit', id, batch: packed.batch }), [packed.buffer]) as Promise<CommitResult>;
  }

  /** One GC step over at most `budget` lsns on the thread's connection (see `GarbageCollector.collect`). */
  collect(peers: string[], olderThanTs: number, budget: number): Promise<GcResult> {
    return this.post((id) => ({ type: 'gc', id, peers, olderThanTs, budget })) as Promise<GcResult>;
  }

  /** Replaces what is recorded for `peer`, in turn with the commits and GC steps (which reads it). */
  setPeerAcks(peer: RegionId, vv: VersionVector): Promise<void> {
    return this.post((id) => ({ type: 'acks', id, peer, vv })).then(() => undefined);
  }

  /** Stores document digests that no commit carried. */
  setDigests(digests: DocDigest[]): Promise<void> {
    return this.post((id) => ({ type: 'digests', id, digests })).then(() => undefined);
  }

  private post(request: (id: number) => WriterRequest, transfer: ArrayBuffer[] = []): Promise<CommitResult | GcResult | null> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage(request(id), transfer);
    });
  }

  /** Lets posted requests finish, closes the thread's connection, and ends the thread. */
  close(): Promise<void> {
    this.closed ??= new Promise<void>((resolve) => {
      if (this.failure) {
        void this.worker.terminate().then(() => resolve());
        return;
      }
      this.worker.once('exit', () => resolve());
      this.worker.postMessage({ type: 'close' } satisfies WriterRequest);
    });
    return this.closed;
  }

  private onReply(reply: WriterReply): void {
    if (reply.type === 'closed') {
      void this.worker.terminate();
      return;
    }
    const waiting = this.waiting.get(reply.id);
    this.waiting.delete(reply.id);
    if (reply.type === 'failed') waiting?.reject(new Error(reply.message));
    else waiting?.resolve(reply.result);
  }

  private fail(err: Error): void {
    if (this.failure === null && this.closed === null) this.onLost?.(err);
    this.failure ??= err;
    for (const waiting of this.waiting.values()) waiting.reject(err);
    this.waiting.clear();
  }
}

/**
 * The batch with every byte array of its records (updates, digests,
 * snapshots, conflict states) copied into one buffer and replaced by a view
 * of it, so that posting the batch transfers one buffer instead of cloning
 * each array: about half the cost of posting a commit (a few µs per entry),
 * and the views of a frame's entries no longer carry their whole frame
 * along. The caller's batch is left as it is.
 */
function packBinary(batch: CommitBatch): { batch: CommitBatch; buffer: ArrayBuffer } {
  const packed: Record<string, unknown> = { ...batch };
  const arrays: { record: Record<string, unknown>; key: string; value: Uint8Array }[] = [];
  let bytes = 0;
  for (const [field, records] of Object.entries(batch)) {
    if (!Array.isArray(records)) continue;
    packed[field] = records.map((record: Record<string, unknown>) => {
      const copy: Record<string, unknown> = { ...record };
      for (const [key, value] of Object.entries(record)) {
        if (!(value instanceof Uint8Array)) continue;
        arrays.push({ record: copy, key, value });
        bytes += value.byteLength;
      }
      return copy;
    });
  }
  const buffer = new ArrayBuffer(bytes);
  const all = new Uint8Array(buffer);
  let at = 0;
  for (const { record, key, value } of arrays) {
    all.set(value, at);
    record[key] = new Uint8Array(buffer, at, value.byteLength);
    at += value.byteLength;
  }
  return { batch: packed as unknown as CommitBatch, buffer };
}
