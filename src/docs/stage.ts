/**
 * Staging: applying one queued job to in-memory documents and recording
 * what the group commit must write. Nothing here touches the disk; the
 * write path commits the batch and only then answers the jobs.
 */
import * as Y from 'yjs';
import { MeridianError } from '../errors.js';
import type { DocKey, RegionId, VersionVector, WriterId } from '../ids.js';
import { applyUpdateSafely, docDigest, validateUpdate } from '../crdt/index.js';
import type { DocSummary, NewLogEntry } from '../storage/types.js';
import type { LiveDoc } from './cache.js';
import type { RemoteApplyResult, WriteAck } from './types.js';

/** Transaction origin of writes made through this region's API. */
export const LOCAL_ORIGIN = Symbol('local');

export type Settle<T> = { resolve: (v: T) => void; reject: (e: unknown) => void };

export type Job =
  | ({ kind: 'local'; doc: DocKey; mutate: (ydoc: Y.Doc) => boolean; raw?: Uint8Array } & Settle<WriteAck | null>)
  | ({ kind: 'remote'; entries: NewLogEntry[]; from: RegionId } & Settle<RemoteApplyResult>)
  | ({ kind: 'state'; doc: DocKey; update: Uint8Array; from: RegionId } & Settle<void>)
  | ({ kind: 'raise'; vv: VersionVector } & Settle<void>);

/** What one flush is about to commit. */
export interface Batch {
  entries: NewLogEntry[];
  from: (RegionId | null)[];
  summaries: Map<DocKey, DocSummary>;
  /** Documents changed by the batch, summarized once before the commit. */
  changed: Map<DocKey, LiveDoc>;
  /** Docs merged by state (no log entry): persisted as snapshots after the commit. */
  snapshots: Set<DocKey>;
  touched: Map<DocKey, LiveDoc>;
  /** Each touched document's stored digest before this batch. */
  before: Map<DocKey, Uint8Array | null>;
  vv: VersionVector;
  done: (() => void)[];
}

/** What staging may ask of the write path. */
export interface StageHost {
  /** The writer id local writes are made under now. */
  writer(): WriterId;
  readonly yjsUpdateBytes: number;
  now(): number;
  /** This region's own highest committed sequence number. */
  appliedSeq(): number;
  /** The live doc to change in this batch, created when the region has never seen it. */
  touch(doc: DocKey, batch: Batch): LiveDoc;
  /** Drops a live doc that may be half-changed; it is reloaded from disk. */
  evict(doc: DocKey): void;
  notePending(doc: DocKey, live: LiveDoc): void;
}

export function emptyBatch(vv: VersionVector): Batch {
  return { entries: [], from: [], summaries: new Map(), changed: new Map(), snapshots: new Set(), touched: new Map(), before: new Map(), vv: new Map(vv), done: [] };
}

/** Applies one job to in-memory documents and adds what it writes to the batch. */
export function stageJob(host: StageHost, job: Job, batch: Batch): void {
  switch (job.kind) {
    case 'local':
      return stageLocal(host, job, batch);
    case 'remote':
      return stageRemote(host, job, batch);
    case 'state': {
      const live = host.touch(job.doc, batch);
      applyGuarded(host, job.doc, live, job.update, { peer: job.from });
      batch.snapshots.add(job.doc);
      summarize(job.doc, live, batch);
      batch.done.push(() => job.resolve());
      return;
    }
    case 'raise':
      for (const [w, s] of job.vv) if (s > (batch.vv.get(w) ?? 0)) batch.vv.set(w, s);
      batch.done.push(() => job.resolve());
      return;
  }
}

function stageLocal(host: StageHost, job: Extract<Job, { kind: 'local' }>, batch: Batch): void {
  const live = host.touch(job.doc, batch);
  const before = live.ydoc.store.pendingStructs;
  let update: Uint8Array | null = null;
  const capture = (u: Uint8Array, origin: unknown) => {
    if (origin === LOCAL_ORIGIN) update = update ? Y.mergeUpdates([update, u]) : u;
  };
  live.ydoc.on('update', capture);
  let changed: boolean;
  try {
    changed = job.mutate(live.ydoc);
  } catch (err) {
    // A rejected op changes nothing; anything else may have half-applied.
    if (!(err instanceof MeridianError) || err.code === 'invalid_update') host.evict(job.doc);
    throw err;
  } finally {
    live.ydoc.off('update', capture);
  }
  host.notePending(job.doc, live);
  // Parts of a client's update that wait for missing dependencies are not in
  // the update event; log the raw update so that they are not lost.
  const logged = job.raw && live.ydoc.store.pendingStructs !== before ? job.raw : update;
  if (!changed || !logged) {
    batch.done.push(() => job.resolve(changed ? ackOf(host, host.appliedSeq(), batch.vv) : null));
    return;
  }
  const seq = (batch.vv.get(host.writer()) ?? 0) + 1;
  batch.vv.set(host.writer(), seq);
  batch.entries.push({ origin: host.writer(), seq, doc: job.doc, ts: host.now(), update: logged });
  batch.from.push(null);
  summarize(job.doc, live, batch);
  const vv = new Map(batch.vv);
  batch.done.push(() => job.resolve(ackOf(host, seq, vv)));
}

function stageRemote(host: StageHost, job: Extract<Job, { kind: 'remote' }>, batch: Batch): void {
  const result: RemoteApplyResult = { applied: 0, duplicates: 0, gaps: 0 };
  for (const entry of job.entries) {
    const held = batch.vv.get(entry.origin) ?? 0;
    if (entry.seq <= held) {
      result.duplicates++;
      continue;
    }
    if (entry.seq > held + 1) {
      result.gaps++;
      continue;
    }
    validateUpdate(entry.update, host.yjsUpdateBytes);
    const live = host.touch(entry.doc, batch);
    applyGuarded(host, entry.doc, live, entry.update, { peer: job.from });
    batch.vv.set(entry.origin, entry.seq);
    batch.entries.push(entry);
    batch.from.push(job.from);
    summarize(entry.doc, live, batch);
    result.applied++;
  }
  batch.done.push(() => job.resolve(result));
}

function applyGuarded(host: StageHost, doc: DocKey, live: LiveDoc, update: Uint8Array, origin: unknown): void {
  try {
    applyUpdateSafely(live.ydoc, update, origin);
  } catch (err) {
    host.evict(doc);
    throw err;
  }
  host.notePending(doc, live);
}

function ackOf(host: StageHost, seq: number, vv: VersionVector): WriteAck {
  return { origin: host.writer(), seq, version: vv };
}

function summarize(doc: DocKey, live: LiveDoc, batch: Batch): void {
  // Marked only: the digest walks the whole document, so it is computed once
  // per document per batch, by {@link summarizeBatch}, not once per write.
  batch.changed.set(doc, live);
}

/** Digests of every document the batch changed, as the commit stores them. */
export function summarizeBatch(batch: Batch): void {
  for (const [doc, live] of batch.changed) {
    const root = live.ydoc.getMap('root');
    batch.summaries.set(doc, { doc, digest: docDigest(live.ydoc), deleted: root.size === 0 });
  }
}
