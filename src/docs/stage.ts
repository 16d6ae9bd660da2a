/**
 * Staging: applying one queued job to in-memory documents and recording
 * what the group commit must write. Nothing here touches the disk; the
 * write path commits the batch and only then answers the jobs.
 */
import * as Y from 'yjs';
import { MeridianError } from '../errors.js';
import { regionOfWriter, type DocKey, type RegionId, type VersionVector, type WriterId } from '../ids.js';
import { CostlyLoad, appliedWithinBound, applyValidated, mayHaveDiverged, placedOf, buildMsOf, documentHoldsContent, loadDoc, mayCollide, pendingMark, reloadedIfDiverged, reloadedSettled, splitsMapEntry, structsHeld, validateUpdate, type DecodedUpdate } from '../crdt/index.js';
import type { DocChange, NewConflict, NewLogEntry, QuarantinedEntry } from '../storage/types.js';
import { swapYDoc, type LiveDoc } from './cache.js';
import type { PeerReloadChecks } from './reload-checks.js';
import { conflictOf, resolveConflict, type ReplaceResult } from './replace.js';
import type { Judged } from './cold-render.js';
import type { SizeGuard } from './size-guard.js';
import type { RemoteApplyResult, StateChange, WriteAck } from './types.js';
import { MAX_WRITERS_FROM_PEERS, newWriters } from '../vv.js';
import { setNewest } from '../newest.js';

/** Transaction origin of writes made through this region's API. */
export const LOCAL_ORIGIN = Symbol('local');

/** Most entries applied as one update (see {@link runOf}). */
const MAX_RUN = 256;

export type Settle<T> = { resolve: (v: T) => void; reject: (e: unknown) => void };

export type Job =
  | ({
    kind: 'local'; doc: DocKey; mutate: (ydoc: Y.Doc) => boolean; nodes: number; source?: object;
    /**
     * The write can only take content away (besides the marker every JSON
     * write sets): a full document still takes it, unmeasured (size-guard.ts).
     */
    deletesOnly?: boolean;
  } & Settle<WriteAck | null>)
  | ({ kind: 'remote'; entries: NewLogEntry[]; from: RegionId } & Settle<RemoteApplyResult>)
  | ({ kind: 'state'; doc: DocKey; update: Uint8Array; from: RegionId } & Settle<{ refused: string | null }>)
  | ({ kind: 'raise'; vv: VersionVector } & Settle<void>)
  | ({ kind: 'drop-pending'; doc: DocKey; mark: string } & Settle<boolean>)
  | ({ kind: 'replace'; doc: DocKey; state: Uint8Array; from: RegionId } & Settle<ReplaceResult>)
  /** Resolves with null when the document changed after it was judged (see {@link JudgedConflict}). */
  | ({ kind: 'replace-judged'; doc: DocKey; state: Uint8Array; from: RegionId; judged: JudgedConflict } & Settle<ReplaceResult | null>);

/**
 * A conflict decided on the render thread (see Documents.replaceState):
 * this region's state `mine` as it was then, and whether the document has
 * changed since (`watch`, set by the write path).
 */
export interface JudgedConflict extends Judged {
  mine: Uint8Array;
  watch: DocWatch;
}

/** Set once a batch changes the document watched: a verdict on its earlier state no longer holds. */
export interface DocWatch {
  changed: boolean;
}

/**
 * A document whose state a peer's won a conflict decided off the event
 * loop (see {@link stageJudged}): stored as that state, not built here.
 */
export interface ReplacedState {
  state: Uint8Array;
  digest: Uint8Array;
  deleted: boolean;
  uptoLsn: number;
}

/** What one flush is about to commit. */
export interface Batch {
  entries: NewLogEntry[];
  /** Per entry: the peer it came from (null for this region's own writes). */
  from: (RegionId | null)[];
  /** Per entry: the local connection it came from (`Documents.applyYjs`), if any. */
  sources: (object | null)[];
  summaries: Map<DocKey, DocChange>;
  /** Documents changed by the batch, summarized once before the commit. */
  changed: Map<DocKey, LiveDoc>;
  /**
   * Peer entries of documents held encoded, validated and stored but not
   * applied: held beside the encoded state once committed (see
   * `StageHost.defer`), in order. A document in it is not in `touched`.
   */
  deferred: Map<DocKey, Uint8Array[]>;
  /** Bytes of the updates in `deferred`. */
  deferredBytes: number;
  /** Docs merged by state (no log entry): persisted as snapshots after the commit. */
  snapshots: Set<DocKey>;
  /** Docs whose content a state merge or replace changed, announced after the commit. */
  stateChanges: Map<DocKey, StateChange>;
  touched: Map<DocKey, LiveDoc>;
  /** Each touched document's stored digest before this batch. */
  before: Map<DocKey, Uint8Array | null>;
  /**
   * Touched documents not in use before this batch: new, loaded from the
   * store, or held encoded for a while (see IN_USE_MS in documents.ts).
   */
  cold: Set<DocKey>;
  /** Touched documents this region never held before this batch. */
  created: Set<DocKey>;
  /**
   * Documents dropped after a refused change that could not be built again
   * (crdt/load.ts CostlyLoad): not touched again in this batch; what it
   * staged for them is stored all the same (see Documents.discard).
   */
  dropped: Set<DocKey>;
  vv: VersionVector;
  /** Entries from peers this region could not apply: kept aside, their seqs counted as held. */
  quarantined: QuarantinedEntry[];
  /** States that lost a content conflict in this batch (see replace.ts). */
  conflicts: NewConflict[];
  /** Documents replaced by what their own state reloads to before a conflict was resolved (see replace.ts). */
  reloaded: DocKey[];
  /** Documents built anew to take a peer's update whose items Yjs would have scanned too long to place (see crdt/load.ts `appliedWithinBound`). */
  rebuilt: DocKey[];
  /**
   * Documents replaced by a peer's state decided off the event loop: its
   * snapshot and summary are stored, and the document is read from the
   * store after the commit. One a later job of the batch touches is built
   * from it then (see `StageHost.touch`).
   */
  replacedStates: Map<DocKey, ReplacedState>;
  done: (() => void)[];
}

/** What staging may ask of the write path. */
export interface StageHost {
  /** The writer id local writes are made under now. */
  writer(): WriterId;
  readonly yjsUpdateBytes: number;
  /** Holds local writes to `limits.maxDocumentBytes`. */
  readonly sizes: SizeGuard;
  /** Holds what peers' entries and states merge a document to (config.ts, `mergedDocumentBytesFor`). */
  readonly mergedSizes: SizeGuard;
  /** Holds local writes to `limits.maxDocumentStructs` (its full marks only: a count of structs is exact and cheap). */
  readonly structs: SizeGuard;
  /** Holds what peers' entries and states merge a document to in structs (config.ts, `mergedDocumentStructsFor`). */
  readonly mergedStructs: SizeGuard;
  now(): number;
  /** The live doc, as this batch has it so far; null when the region has never seen it. */
  existing(doc: DocKey, batch: Batch): LiveDoc | null;
  /** The live doc to change in this batch, created when the region has never seen it. */
  touch(doc: DocKey, batch: Batch): LiveDoc;
  /**
   * Drops a live doc that a refused job may have half-changed; what the
   * batch already staged for it is kept, and `later` updates are applied
   * after it.
   */
  discard(doc: DocKey, batch: Batch, later?: readonly Uint8Array[]): void;
  notePending(doc: DocKey, live: LiveDoc): void;
  /**
   * What documents held back when this region let go of it (see
   * {@link stageDropPending}), the latest {@link MAX_DROPPED_REMEMBERED}.
   */
  readonly droppedPending: Map<DocKey, string>;
  /**
   * Whether a peer's entry of `doc` may be stored without building the
   * document; if so, it has joined `batch.deferred`. While a backlog is
   * applied, for a document held encoded that this batch has not touched.
   * Only an update that adds an item it does not delete itself, of a
   * document listed as live (see {@link addsLiveItem}).
   */
  defer(doc: DocKey, update: Uint8Array, batch: Batch): boolean;
  /** Spreads out the reload checks peers' entries ask for (see reload-checks.ts). */
  readonly peerReloadChecks: PeerReloadChecks;
  /** Stores `doc` as a peer's state that won a conflict (see {@link ReplacedState}); false when this region no longer holds it. */
  replaceStored(doc: DocKey, winner: Omit<ReplacedState, 'uptoLsn'>, batch: Batch): boolean;
}

export function emptyBatch(vv: VersionVector): Batch {
  return { entries: [], from: [], sources: [], summaries: new Map(), changed: new Map(), deferred: new Map(), deferredBytes: 0, snapshots: new Set(), stateChanges: new Map(), touched: new Map(), before: new Map(), cold: new Set(), created: new Set(), dropped: new Set(), vv: new Map(vv), quarantined: [], conflicts: [], reloaded: [], rebuilt: [], replacedStates: new Map(), done: [] };
}

/** Applies one job to in-memory documents and adds what it writes to the batch. */
export function stageJob(host: StageHost, job: Job, batch: Batch): void {
  switch (job.kind) {
    case 'local':
      return stageLocal(host, job, batch);
    case 'remote':
      return stageRemote(host, job, batch);
    case 'state': {
      let live: LiveDoc;
      try {
        live = host.touch(job.doc, batch);
      } catch (err) {
        if (!(err instanceof CostlyLoad)) throw err;
        batch.done.push(() => job.resolve({ refused: err.message }));
        return;
      }
      // Yjs emits `update` only when the merge added structs or deletions, with what it added.
      const added: Uint8Array[] = [];
      const mark = (update: Uint8Array): void => void added.push(update);
      live.ydoc.on('update', mark);
      const ydoc = live.ydoc;
      const heldBefore = pendingMark(ydoc);
      // Decoded only for a document that holds something to collide with (a rebuild's are new).
      const parts = ydoc.store.clients.size === 0 ? [job.update] : [Y.decodeUpdate(job.update)];
      try {
        const before = sizeBeforeMerge(host, job.doc, live, addsStructs(parts[0]!));
        live = applyGuarded(host, job.doc, live, job.update, { peer: job.from }, batch, parts);
        refuseMergedGrowth(host, job.doc, live, before, batch);
        // Sent again by a peer that has not let go of them yet: let go of at once, or the regions would hand them back and forth.
        const dropped = host.droppedPending.get(job.doc);
        if (dropped !== undefined && pendingMark(live.ydoc) === dropped) {
          letGoOfPending(live);
          host.notePending(job.doc, live);
        }
      } catch (err) {
        // One Yjs could not apply (two writers under one client id can make such states): the document was reloaded as
        // it was, and the state refused, the link kept; its merge failing closed the link at every round.
        const unapplied = err instanceof MeridianError && err.code === 'invalid_update';
        if (!(err instanceof GrowthRefused || err instanceof CostlyLoad || unapplied)) throw err;
        const cause = unapplied && err.cause !== undefined ? ` (${String(err.cause)})` : '';
        batch.done.push(() => job.resolve({ refused: unapplied ? `${job.doc}: ${err.message}${cause}` : err.message }));
        return;
      } finally {
        ydoc.off('update', mark);
      }
      // Nothing taken (the peer held nothing this region lacks): nothing to store. A snapshot would be the
      // document's merged state, where its entries may hold it in an order that loads far more cheaply (compactor.ts).
      // Yjs changes what waits for missing dependencies in place, and emits nothing for it: compared before and after.
      const unchanged = live.ydoc === ydoc && added.length === 0 && pendingMark(live.ydoc) === heldBefore;
      // A document marked corrupt (its digest zeros) is stored anew all the same: that is its repair.
      const sound = live.digest !== null && live.digest.some((b) => b !== 0);
      if (unchanged && sound && !batch.created.has(job.doc)) {
        batch.done.push(() => job.resolve({ refused: null }));
        return;
      }
      // Built anew (see applyGuarded), the document emitted only part of what it took: clients get the whole state.
      if (batch.rebuilt.includes(job.doc)) noteMerged(batch, job.doc, null);
      else if (added.length > 0) noteMerged(batch, job.doc, holdsPending(live) ? null : added);
      batch.snapshots.add(job.doc);
      summarize(job.doc, live, batch);
      batch.done.push(() => job.resolve({ refused: null }));
      return;
    }
    case 'raise':
      checkWriters(batch.vv, newWriters(batch.vv, job.vv), 'a floor');
      for (const [w, s] of job.vv) if (s > (batch.vv.get(w) ?? 0)) batch.vv.set(w, s);
      batch.done.push(() => job.resolve());
      return;
    case 'replace':
      return stageReplace(host, job, batch);
    case 'replace-judged':
      return stageJudged(host, job, batch);
    case 'drop-pending':
      return stageDropPending(host, job, batch);
  }
}

/**
 * Lets go of what the document holds back for missing dependencies, if it
 * is still exactly `mark` (see Documents.dropPending). Its content and
 * digest stay as they are (digests never cover it); the snapshot stored
 * without it covers the entries that brought it, so a restart does not
 * hold it back again.
 */
function stageDropPending(host: StageHost, job: Extract<Job, { kind: 'drop-pending' }>, batch: Batch): void {
  let live: LiveDoc | null;
  try {
    live = host.existing(job.doc, batch);
  } catch (err) {
    if (!(err instanceof CostlyLoad)) throw err;
    live = null;
  }
  if (live === null || pendingMark(live.ydoc) !== job.mark) {
    batch.done.push(() => job.resolve(false));
    return;
  }
  live = host.touch(job.doc, batch);
  letGoOfPending(live);
  host.notePending(job.doc, live);
  setNewest(host.droppedPending, job.doc, job.mark, MAX_DROPPED_REMEMBERED);
  batch.snapshots.add(job.doc);
  batch.done.push(() => job.resolve(true));
}

/** Documents whose dropped held-back updates are remembered (a string each). */
const MAX_DROPPED_REMEMBERED = 1024;

function letGoOfPending(live: LiveDoc): void {
  live.ydoc.store.pendingStructs = null;
  live.ydoc.store.pendingDs = null;
}

/** A peer's whole state that may win a content conflict (see replace.ts). */
function stageReplace(host: StageHost, job: Extract<Job, { kind: 'replace' }>, batch: Batch): void {
  let existing: LiveDoc | null;
  let mine: Uint8Array | null;
  let reloaded: Y.Doc | null;
  try {
    existing = host.existing(job.doc, batch);
    // Sent back to a peer that offered its state, whatever the outcome, so
    // that it too resolves against states as they reload (see replace.ts).
    mine = existing ? Y.encodeStateAsUpdate(existing.ydoc) : null;
    reloaded = existing && mine ? reloadedIfDiverged(existing.ydoc, mine) : null;
  } catch (err) {
    // Not built within the bound here, as it is or as it reloads: no conflict can be resolved against it.
    if (!(err instanceof CostlyLoad)) throw err;
    batch.done.push(() => job.resolve({ outcome: 'unrelated', mine: null }));
    return;
  }
  if (reloaded) {
    existing = replaceLive(host, job.doc, reloaded, batch);
    batch.reloaded.push(job.doc);
  }
  const resolution = existing
    ? resolveConflict(job.doc, existing, job.state, { self: regionOfWriter(host.writer()), peer: job.from }, existing.ydoc.clientID, host.now())
    : ({ outcome: 'unrelated' } as const);
  if (resolution.outcome !== 'unrelated') batch.conflicts.push(resolution.conflict);
  if (resolution.outcome === 'replaced') replaceLive(host, job.doc, resolution.ydoc, batch);
  batch.done.push(() => job.resolve({ outcome: resolution.outcome, mine }));
}

/**
 * A conflict decided on the render thread against this region's state as
 * it was then: taken as decided unless the document changed since (then
 * resolved with null, and left to the next round). When the peer's state
 * wins, it is stored as the document without being built here.
 */
function stageJudged(host: StageHost, job: Extract<Job, { kind: 'replace-judged' }>, batch: Batch): void {
  const { verdict, mine, winner, holdsContent, watch } = job.judged;
  // Changed by a batch before this one, or by a job of this one before this job.
  if (watch.changed || changesOf(batch).some((docs) => docs.has(job.doc))) {
    batch.done.push(() => job.resolve(null));
    return;
  }
  if (verdict.outcome === 'unrelated') {
    batch.done.push(() => job.resolve({ outcome: 'unrelated', mine }));
    return;
  }
  if (verdict.outcome === 'replaced' && !host.replaceStored(job.doc, { state: winner!, digest: verdict.theirs, deleted: !holdsContent }, batch)) {
    batch.done.push(() => job.resolve({ outcome: 'unrelated', mine: null }));
    return;
  }
  batch.conflicts.push(conflictOf(job.doc, verdict, mine, job.state, { self: regionOfWriter(host.writer()), peer: job.from }, host.now()));
  batch.done.push(() => job.resolve({ outcome: verdict.outcome, mine }));
}

/** The documents a batch changes, as far as staged: what a verdict judged before on their state no longer holds. */
export function changesOf(batch: Batch): (ReadonlySet<DocKey> | ReadonlyMap<DocKey, unknown>)[] {
  return [batch.changed, batch.deferred, batch.replacedStates, batch.snapshots, batch.dropped];
}

/** Puts `ydoc` in place of the document's live one; its content counts as replaced (live clients reopen it). */
export function replaceLive(host: StageHost, doc: DocKey, ydoc: Y.Doc, batch: Batch): LiveDoc {
  // Counted anew by the next write (the replacement may hold fewer structs).
  host.structs.clear(doc);
  const live = host.touch(doc, batch);
  swapYDoc(live, ydoc);
  host.notePending(doc, live);
  batch.snapshots.add(doc);
  batch.stateChanges.set(doc, { doc, replaced: true, added: null });
  summarize(doc, live, batch);
  return live;
}

function stageLocal(host: StageHost, job: Extract<Job, { kind: 'local' }>, batch: Batch): void {
  const full = job.deletesOnly === true ? null : host.sizes.fullSize(job.doc);
  if (full !== null) {
    throw new MeridianError(
      'body_too_large',
      `the document is at its size bound (limits.maxDocumentBytes = ${host.sizes.limit}; a write measured it at ${full} bytes of state moments ago): writes that could grow it are refused for a second or so after that; retry then, delete content (writes that only delete are taken), or spread the data over more documents`,
      { documentBytes: full, limit: host.sizes.limit },
    );
  }
  // Before the document is built: one over the struct bound costs a build (seconds, at several times the bound) to find so.
  if (job.deletesOnly !== true) refuseStructsFull(host, job.doc, 0);
  const live = host.touch(job.doc, batch);
  let update: Uint8Array | null = null;
  const capture = (u: Uint8Array, origin: unknown) => {
    if (origin === LOCAL_ORIGIN) update = update ? Y.mergeUpdates([update, u]) : u;
  };
  // Measured once per load, for the first local write; raised by updates after.
  if (live.sizeBound === null) live.sizeBound = live.measuredSize = Y.encodeStateAsUpdate(live.ydoc).byteLength;
  const sizeBefore = live.sizeBound;
  const structsBefore = structsHeld(live.ydoc);
  if (job.deletesOnly !== true) refuseStructsFull(host, job.doc, structsBefore);
  live.ydoc.on('update', capture);
  let changed: boolean;
  try {
    changed = job.mutate(live.ydoc);
  } catch (err) {
    // A rejected op changes nothing; anything else may have half-applied
    // (an update refused for the work of placing its items, half way).
    // `unavailable`: a client's update refused after it was applied, for the cost of checking it (docs/reload-checks.ts).
    if (!(err instanceof MeridianError) || err.code === 'invalid_update' || err.code === 'too_complex' || err.code === 'unavailable') host.discard(job.doc, batch);
    throw err;
  } finally {
    live.ydoc.off('update', capture);
  }
  // Client updates that would wait for missing dependencies are refused
  // before they get here (crdt/admit.ts), so the update event holds it all.
  const logged: Uint8Array | null = update;
  if (changed && logged) {
    refuseOversized(host, job.doc, logged, batch);
    const structsAfter = structsHeld(live.ydoc);
    refuseTooManyStructs(host, job.doc, structsBefore, structsAfter, batch);
    // Under the bound after all (a delete let Yjs drop what nested values held): no longer counted full.
    if (structsAfter < host.structs.limit) host.structs.clear(job.doc);
    refuseTooLarge(host, job.doc, live, sizeBefore, grownBy(logged, structsAfter - structsBefore), batch, job.deletesOnly === true);
  }
  host.notePending(job.doc, live);
  if (!changed || !logged) {
    batch.done.push(() => job.resolve(changed ? ackOf(host, 0, batch.vv) : null));
    return;
  }
  const seq = (batch.vv.get(host.writer()) ?? 0) + 1;
  batch.vv.set(host.writer(), seq);
  batch.entries.push({ origin: host.writer(), seq, doc: job.doc, ts: host.now(), update: logged });
  batch.from.push(null);
  batch.sources.push(job.source ?? null);
  summarize(job.doc, live, batch);
  // Named now: the writer may change while the commit is on its way (a restore, see Replicator.checkOwnWrites).
  const ack = ackOf(host, seq, new Map(batch.vv));
  batch.done.push(() => job.resolve(ack));
}

/**
 * Building a document costs time per struct Yjs holds, whatever their bytes:
 * 8 MiB of one-character map keys are 700,000 structs, and each cold read of
 * such a document held its region 6 s (the links' heartbeats failed), at
 * every region. A document holding `limits.maxDocumentStructs` or more (or
 * counted full: see {@link refuseTooManyStructs}) takes no write that could
 * add to it; refused before it is applied, nothing to undo.
 */
function refuseStructsFull(host: StageHost, doc: DocKey, structs: number): void {
  const guard = host.structs;
  const full = structs >= guard.limit ? structs : guard.fullSize(doc);
  if (full === null) return;
  // Deleting lowers no document's count: it stays full, and is refused before it is built (see {@link STRUCTS_FULL_MS}).
  if (structs >= guard.limit) guard.over(doc, structs, 0, STRUCTS_FULL_MS);
  throw new MeridianError(
    'too_complex',
    `the document holds ${full} Yjs structs, at its bound (limits.maxDocumentStructs = ${guard.limit}): writes that could add to it are refused (values deleted stay as tombstones); spread the data over more documents, or delete the document`,
    { documentStructs: full, limit: guard.limit },
  );
}

/**
 * How long a document found holding `limits.maxDocumentStructs` or more
 * counts as full, ms. Its count never falls (a deleted value stays as a
 * tombstone), and only writes at several regions at once take a document
 * past the bound, where each build costs seconds: refused by a count found
 * at a build, writes to such documents evicted from the cache would each
 * build one again.
 */
const STRUCTS_FULL_MS = 10 * 60_000;

/**
 * A local write that left the document with more structs than
 * `limits.maxDocumentStructs`, and more than it had: refused, its changes
 * dropped (the document is reloaded). The document then counts as full for
 * a while (20 times as long as a reload takes, at least a second), so that
 * writes refused one after another do not each cost a reload.
 */
function refuseTooManyStructs(host: StageHost, doc: DocKey, before: number, after: number, batch: Batch): void {
  const guard = host.structs;
  if (after <= guard.limit || after <= before) return;
  host.discard(doc, batch);
  guard.over(doc, after, buildMsOf(before));
  throw new MeridianError(
    'too_complex',
    `the write would leave the document with ${after} Yjs structs; regions keep at most ${guard.limit} per document (limits.maxDocumentStructs), as building a document costs time per struct: spread the data over more documents, or write fewer, larger values`,
    { documentStructs: after, limit: guard.limit },
  );
}

/**
 * Peers refuse an update above their `yjsUpdateBytes`; a local write that
 * produced one is refused here (413) and its changes dropped from memory.
 */
function refuseOversized(host: StageHost, doc: DocKey, update: Uint8Array, batch: Batch): void {
  if (update.byteLength <= host.yjsUpdateBytes) return;
  host.discard(doc, batch);
  throw new MeridianError(
    'body_too_large',
    `the write would replicate as a ${update.byteLength}-byte update; regions accept at most ${host.yjsUpdateBytes} (limits.yjsUpdateBytes): split it into smaller writes`,
    { updateBytes: update.byteLength, limit: host.yjsUpdateBytes },
  );
}

/**
 * Most bytes of state a struct Yjs adds may take beyond the bytes of the
 * update that made it. A deletion or insertion inside an item splits it, and
 * each piece is then written on its own, with its info byte, origin and
 * right origin (a client and a clock, up to 16 bytes each) and its content's
 * length: deleting every other character of texts written by 500 clients
 * added 13.5 bytes per piece beyond the update's own (0.07 MB of update,
 * 0.9 MB of state), more than 13 times the update's bytes.
 */
const STRUCT_BYTES = 40;

/** At most how many bytes of state `update` added to a document it added `structs` structs to. */
function grownBy(update: Uint8Array, structs: number): number {
  return update.byteLength + STRUCT_BYTES * Math.max(0, structs);
}

/**
 * A document's whole state must fit one replication frame (catch-up by
 * state, rebuilds, conflicts): a local write that grows it past
 * `maxDocumentBytes` is refused (413) and its changes dropped. Only growth is
 * refused: a write that deletes is taken from a document already over it,
 * unless it grew the document since it was last measured (deletions can:
 * see {@link STRUCT_BYTES}; taken, they left it at many times the bound,
 * which peers then refused, apart for good).
 * Its size is measured (the whole document encoded) only once the updates
 * since the last measurement could have taken it past the bound by more
 * than the guard's slack (see size-guard.ts). A JSON write also sets the
 * document's live marker (a struct) where a delete removed it, so a write's
 * update alone cannot tell whether it only deletes: the caller says so. A document over the bound is
 * measured for a write that only deletes once such writes could have grown
 * it by the slack since its last measurement, not at each one (which would
 * cost what the guard saves).
 */
function refuseTooLarge(host: StageHost, doc: DocKey, live: LiveDoc, before: number, grown: number, batch: Batch, deletesOnly: boolean): void {
  const { sizes } = host;
  const bound = before + grown;
  const measured = live.measuredSize;
  const within = sizes.withinUnmeasured(bound, measured) || (deletesOnly && measured !== undefined && bound - measured <= sizes.slack);
  if (within) {
    live.sizeBound = bound;
    return;
  }
  const started = performance.now();
  const size = Y.encodeStateAsUpdate(live.ydoc).byteLength;
  if (size > sizes.limit) sizes.over(doc, size, performance.now() - started);
  if (size <= sizes.limit || size <= (deletesOnly ? (measured ?? before) : before)) {
    live.sizeBound = live.measuredSize = size;
    return;
  }
  host.discard(doc, batch);
  const advice = deletesOnly
    ? 'deleting inside items splits them, and each piece is stored on its own: delete whole ranges, or fewer scattered pieces at once'
    : 'spread the data over more documents';
  throw new MeridianError(
    'body_too_large',
    `the write would leave the document with ${size} bytes of state; regions keep at most ${sizes.limit} per document (limits.maxDocumentBytes), so that its whole state fits one replication frame: ${advice}`,
    { documentBytes: size, limit: sizes.limit },
  );
}

/**
 * Refuses, before anything is staged, peer work that would take this
 * region's version vector past {@link MAX_WRITERS_FROM_PEERS} writers (see
 * there): past MAX_WRITERS it would no longer fit a frame, and every link
 * would fail on it.
 */
function checkWriters(vv: VersionVector, added: number, what: string): void {
  if (vv.size + added <= MAX_WRITERS_FROM_PEERS) return;
  throw new Error(`${what} names ${added} writers this region has not seen, beyond the ${MAX_WRITERS_FROM_PEERS} it takes from peers (it holds ${vv.size})`);
}

function stageRemote(host: StageHost, job: Extract<Job, { kind: 'remote' }>, batch: Batch): void {
  const result: RemoteApplyResult = { applied: 0, duplicates: 0, gaps: 0, quarantined: 0 };
  const entries = job.entries;
  let origins: Set<WriterId> | null = null;
  for (const e of entries) if (!batch.vv.has(e.origin)) (origins ??= new Set()).add(e.origin);
  if (origins !== null) checkWriters(batch.vv, origins.size, 'entries');
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i]!;
    const held = batch.vv.get(entry.origin) ?? 0;
    if (entry.seq <= held) {
      result.duplicates++;
      continue;
    }
    if (entry.seq > held + 1) {
      result.gaps++;
      continue;
    }
    // One entry this region cannot apply must not stop the stream: it is
    // kept aside, its seq counts as held, and the document is repaired by state.
    let live: LiveDoc;
    let run: NewLogEntry[] = [entry];
    try {
      const decoded = validateUpdate(entry.update, host.yjsUpdateBytes);
      if (addsLiveItem(decoded) && host.defer(entry.doc, entry.update, batch)) {
        batch.vv.set(entry.origin, entry.seq);
        batch.entries.push(entry);
        batch.from.push(job.from);
        batch.sources.push(null);
        result.applied++;
        continue;
      }
      live = host.touch(entry.doc, batch);
      run = holdsPending(live) ? runOf(host, entries, i, batch.vv) : run;
      // Merged, updates that collide would splice before the doc is even reached: applied one by one.
      if (run.length > 1 && (mayCollide(live.ydoc, run.map((e) => e.update)) || splitsMapEntry(live.ydoc, run.map((e) => Y.decodeUpdate(e.update))))) run = [entry];
      const update = run.length === 1 ? entry.update : Y.mergeUpdates(run.map((e) => e.update));
      const before = sizeBeforeMerge(host, entry.doc, live, run.length > 1 || addsStructs(decoded));
      live = applyGuarded(host, entry.doc, live, update, { peer: job.from }, batch, run.length === 1 ? [decoded] : [update]);
      refuseMergedGrowth(host, entry.doc, live, before, batch);
    } catch (err) {
      for (const e of run) {
        batch.vv.set(e.origin, e.seq);
        batch.quarantined.push({ ...e, peer: job.from, reason: err instanceof Error ? err.message : String(err) });
      }
      result.quarantined += run.length;
      i += run.length - 1;
      continue;
    }
    for (const e of run) {
      batch.vv.set(e.origin, e.seq);
      batch.entries.push(e);
      batch.from.push(job.from);
      batch.sources.push(null);
    }
    summarize(entry.doc, live, batch);
    result.applied += run.length;
    i += run.length - 1;
  }
  batch.done.push(() => job.resolve(result));
}

/**
 * A peer's entry or state that would grow a document past what merges from
 * peers may (`StageHost.mergedSizes`): an entry is quarantined, a state
 * refused. A region's own clients can grow a document only to
 * `maxDocumentBytes`, so concurrent writes merge it to at most about the
 * regions' count times that; more comes only from a peer that is faulty or
 * has a larger limit, and taken, it would grow the document until its state
 * no longer fits a frame, and it could no longer be repaired or rebuilt.
 */
class GrowthRefused extends Error {}

/**
 * Whether an update adds an item that it does not delete itself. A document
 * whose entries are held beside its encoded state is stored without a new
 * deleted flag (it is not built; see Documents.defer), so lists would go on
 * showing one that an update deleted: only updates that leave it holding
 * something are held so (a write adds its values; a deletion of the
 * document adds nothing). A document listed as deleted is
 * built, since an update adding to it makes it live again.
 */
function addsLiveItem(update: DecodedUpdate): boolean {
  return update.structs.some((s) => s instanceof Y.Item && !(s.content instanceof Y.ContentDeleted) && !Y.isDeleted(update.ds, s.id));
}

/** Whether an update (decoded, or not decoded and so not known) adds structs, not only deletions. */
function addsStructs(update: Uint8Array | DecodedUpdate): boolean {
  return update instanceof Uint8Array || update.structs.length > 0;
}

/**
 * Before a peer's update is applied: the document's size (measured once
 * per load, so that growth is told from updates' bytes after it), and an
 * update that adds structs refused at once while the document counts as
 * full (measured over the bound moments ago; see size-guard.ts), so that a
 * peer sending one small update after another does not make the region
 * measure and reload a large document for each.
 */
function sizeBeforeMerge(host: StageHost, doc: DocKey, live: LiveDoc, adds: boolean): MergeBase {
  const full = adds ? host.mergedSizes.fullSize(doc) : null;
  if (full !== null) {
    throw new GrowthRefused(`${doc} was measured at ${full} bytes of state moments ago, past the ${host.mergedSizes.limit} that merges from peers may grow a document to: ${MERGED_BOUND_ADVICE}`);
  }
  const structs = structsHeld(live.ydoc);
  const fullStructs = !adds ? null : structs >= host.mergedStructs.limit ? structs : host.mergedStructs.fullSize(doc);
  if (fullStructs !== null) {
    throw new GrowthRefused(`${doc} holds ${fullStructs} Yjs structs, at the ${host.mergedStructs.limit} that merges from peers may grow a document to: ${MERGED_STRUCTS_ADVICE}`);
  }
  if (live.sizeBound === null) live.sizeBound = live.measuredSize = Y.encodeStateAsUpdate(live.ydoc).byteLength;
  return { size: live.sizeBound, structs };
}

/** A document as it was before a peer's update was merged: its size (see {@link sizeBeforeMerge}) and its structs. */
interface MergeBase {
  size: number;
  structs: number;
}

const MERGED_BOUND_ADVICE = 'limits.maxDocumentBytes should be the same at every region (a peer with a larger one sends what this region refuses); otherwise the peer is faulty';
export const MERGED_STRUCTS_ADVICE = 'limits.maxDocumentStructs should be the same at every region (a peer with a larger one sends what this region refuses); otherwise the peer is faulty';

/**
 * After a peer's update was applied: the document measured once the
 * updates since the last measurement could have taken it past the bound
 * by more than the guard's slack, as local writes are (see
 * refuseTooLarge); grown past it, the update is dropped (the document
 * reloaded) and refused.
 */
function refuseMergedGrowth(host: StageHost, doc: DocKey, live: LiveDoc, base: MergeBase, batch: Batch): void {
  const structs = structsHeld(live.ydoc);
  if (structs > host.mergedStructs.limit && structs > base.structs) {
    host.mergedStructs.over(doc, structs, buildMsOf(base.structs));
    host.discard(doc, batch);
    throw new GrowthRefused(`the merge would leave ${doc} with ${structs} Yjs structs, past the ${host.mergedStructs.limit} that merges from peers may grow a document to: ${MERGED_STRUCTS_ADVICE}`);
  }
  const before = base.size;
  const guard = host.mergedSizes;
  if (live.sizeBound !== null && guard.withinUnmeasured(live.sizeBound, live.measuredSize)) return;
  const started = performance.now();
  const size = Y.encodeStateAsUpdate(live.ydoc).byteLength;
  if (size <= guard.limit || size <= before) {
    live.sizeBound = live.measuredSize = size;
    return;
  }
  guard.over(doc, size, performance.now() - started);
  host.discard(doc, batch);
  throw new GrowthRefused(`the merge would leave ${doc} with ${size} bytes of state, past the ${guard.limit} that merges from peers may grow a document to: ${MERGED_BOUND_ADVICE}`);
}

/** A merge by state added `added` to `doc` (null: the whole state must be read to tell what). */
function noteMerged(batch: Batch, doc: DocKey, added: Uint8Array[] | null): void {
  const earlier = batch.stateChanges.get(doc);
  if (earlier === undefined) batch.stateChanges.set(doc, { doc, replaced: false, added });
  else if (earlier.added !== null) earlier.added = added === null ? null : [...earlier.added, ...added];
}

/** Whether Yjs holds updates of the document that wait for missing dependencies. */
function holdsPending(live: LiveDoc): boolean {
  return live.ydoc.store.pendingStructs !== null || live.ydoc.store.pendingDs !== null;
}

/**
 * The entry at `start` and those right after it of the same document that
 * are next in their origin's sequence and valid: applied as one update.
 * While a document holds updates waiting for missing dependencies, Yjs
 * merges each update it is given into the waiting ones and tries them all
 * again, so an apply costs more the more wait; a region whose link from one
 * origin falls a little behind the others (a document written everywhere at
 * once) would apply ever more slowly. One apply per run pays that once.
 */
function runOf(host: StageHost, entries: readonly NewLogEntry[], start: number, vv: VersionVector): NewLogEntry[] {
  const first = entries[start]!;
  const run = [first];
  const next = new Map<WriterId, number>([[first.origin, first.seq]]);
  for (let j = start + 1; j < entries.length && run.length < MAX_RUN; j++) {
    const e = entries[j]!;
    if (e.doc !== first.doc || e.seq !== (next.get(e.origin) ?? vv.get(e.origin) ?? 0) + 1) break;
    try {
      validateUpdate(e.update, host.yjsUpdateBytes);
    } catch {
      // Staged on its own, and kept aside alone.
      break;
    }
    run.push(e);
    next.set(e.origin, e.seq);
  }
  return run;
}

/** Applies an update validateUpdate accepted (at enqueue for states, in stageRemote for entries). */
/**
 * Applies a peer's update. One that reaches below clocks the doc holds may
 * have spliced different content under the same ids (see crdt/load.ts): the
 * doc is then replaced at once by what it reloads to. `parts`: the update,
 * decoded when the caller has it so.
 */
function applyGuarded(
  host: StageHost, doc: DocKey, live: LiveDoc, update: Uint8Array, origin: unknown, batch: Batch,
  parts: readonly (Uint8Array | DecodedUpdate)[] = [update],
): LiveDoc {
  const collide = mayCollide(live.ydoc, parts);
  // A state merged into the document, or one that replaced it, in this batch is not in the store nor among the
  // batch's entries, which a stopped apply rebuilds the document from: its state is kept to rebuild from instead.
  const base = !collide && batch.snapshots.has(doc) ? Y.encodeStateAsUpdate(live.ydoc) : null;
  // Counted only where the size is tracked (a walk over the document's clients, per entry).
  const structsBefore = live.sizeBound === null ? 0 : structsHeld(live.ydoc);
  // Deleting part of a run under a map key (two writers under one id left it) places nothing, yet splits it.
  const splits = splitsMapEntry(live.ydoc, parts);
  const placed = collide || splits || holdsPending(live) ? placedOf(live.ydoc) : null;
  let finished: boolean;
  try {
    finished = appliedWithinBound(live.ydoc, [update], () => void applyValidated(live.ydoc, update, origin), collide);
  } catch (err) {
    host.discard(doc, batch);
    throw err;
  }
  if (!finished) {
    // Built anew with the update merged in (see crdt/load.ts): the same content; live clients keep their Y.Doc.
    batch.rebuilt.push(doc);
    if (base === null) {
      host.discard(doc, batch, [update]);
      return host.touch(doc, batch);
    }
    let rebuilt: Y.Doc;
    try {
      rebuilt = loadDoc([base, update], live.ydoc.clientID);
    } catch (err) {
      host.discard(doc, batch);
      throw err;
    }
    swapYDoc(live, rebuilt);
    host.notePending(doc, live);
    return live;
  }
  if (live.sizeBound !== null) live.sizeBound += grownBy(update, structsHeld(live.ydoc) - structsBefore);
  host.notePending(doc, live);
  const risk = placed === null ? null : mayHaveDiverged(live.ydoc, placed, collide);
  // Checks that what waited asks for (honest entries too) wait their turn; the others are made at once.
  const checks = host.peerReloadChecks;
  const owed = checks.owes(doc);
  const due = checks.due(doc, risk === 'waited');
  let reloaded: Y.Doc | null = null;
  if (splits || risk === 'collided' || due) {
    const started = performance.now();
    let settled = true;
    try {
      reloaded = reloadedSettled(live.ydoc);
    } catch (err) {
      // Entries taken unchecked before this one may have left what the check finds: this one is not refused
      // for it, and the document is kept as it is, as it was before such checks (see reload-checks.ts).
      if (!owed || !(err instanceof MeridianError)) {
        host.discard(doc, batch);
        throw err;
      }
      settled = false;
    }
    checks.took(doc, performance.now() - started, structsHeld(live.ydoc), settled);
  }
  if (reloaded === null) return live;
  batch.reloaded.push(doc);
  return replaceLive(host, doc, reloaded, batch);
}

function ackOf(host: StageHost, seq: number, vv: VersionVector): WriteAck {
  return { origin: host.writer(), seq, version: vv };
}

function summarize(doc: DocKey, live: LiveDoc, batch: Batch): void {
  // Marked only: summarized once per document per batch, by {@link summarizeBatch}.
  batch.changed.set(doc, live);
}

/**
 * What the commit stores of every document the batch changed. Digests are
 * not among it: they walk the whole document, so they are computed after
 * the commit (see digester.ts); but for a peer's state that won a conflict
 * judged off the event loop, whose digest was computed there.
 */
export function summarizeBatch(batch: Batch): void {
  for (const [doc, live] of batch.changed) {
    // A document holding only editor content (an XmlFragment) is listed too.
    batch.summaries.set(doc, { doc, deleted: !documentHoldsContent(live.ydoc) });
  }
  // Not built: the digest computed later finds whether they still hold content.
  for (const doc of batch.deferred.keys()) batch.summaries.set(doc, { doc });
  for (const [doc, { deleted, digest }] of batch.replacedStates) batch.summaries.set(doc, { doc, deleted, digest });
}
