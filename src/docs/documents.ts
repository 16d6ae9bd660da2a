/**
 * The one write path of a region. Local writes (HTTP) and remote entries
 * (peers) are queued, applied to in-memory Yjs documents, and committed to
 * SQLite together in one transaction per event-loop turn (group commit).
 * Only after the commit returns are callers answered and listeners told,
 * so nothing is acknowledged or replicated before it is durable.
 */
import * as Y from 'yjs';
import type { Logger } from 'pino';
import { PeerReloadChecks, ReloadChecks } from './reload-checks.js';
import { MeridianError } from '../errors.js';
import { splitDocKey, type DocKey, type RegionId, type VersionVector, type WriterId } from '../ids.js';
import type { JsonObject, Op } from '../crdt/types.js';
import {
  CostlyLoad,
  costlyLoad,
  admitClientUpdate,
  namesOneStruct,
  applyOps,
  opsOnlyDelete,
  appliedWithinBound,
  mayHaveDiverged,
  placedOf,
  applyValidated,
  withPlacementBudget,
  type DigestParts,
  deleteDocument,
  digestParts,
  docDigest,
  heldStateVector,
  loadDoc,
  mayCollide,
  mergePatch,
  newDoc,
  putDocument,
  readDocument,
  pendingMark,
  reloadedIfDiverged,
  replayValidated,
  stableClientId,
  structsHeld,
  validateUpdate,
  type DecodedUpdate,
} from '../crdt/index.js';
import { DEFAULT_MAX_WRITE_NODES, writeNodes } from '../crdt/budget.js';
import type { DocumentStates, Incidents, Maintenance, NewLogEntry, PeerProgress, ReplicationLog, WriterIdentity } from '../storage/types.js';
import { DocCache, encodedState, snapshotOf, swapYDoc, type EncodedState, type LiveDoc } from './cache.js';
import type {
  CommittedEntry,
  Conflict,
  Documents,
  ReadResult,
  RemoteApplyResult,
  StateChange,
  WriteAck,
} from './types.js';
import { COMMIT_STALL_MS, STORAGE_FAULT_MS } from './types.js';
import { startCompactor } from './compactor.js';
import { Unbuilt, loadLiveDoc, storedUpdate, storedUpdates } from './loader.js';
import { ColdRenderer, type RenderKind } from './cold-render.js';
import { DigestIndex } from './digest-index.js';
import { Digester } from './digester.js';
import { hex, logIncidents } from './incidents.js';
import { JobQueue, unitsOf } from './queue.js';
import { BackgroundPacer } from '../pacer.js';
import type { ReplaceResult } from './replace.js';
import { SizeGuard } from './size-guard.js';
import {
  LOCAL_ORIGIN, MERGED_STRUCTS_ADVICE, changesOf, emptyBatch, replaceLive, stageJob, summarizeBatch,
  type Batch, type DocWatch, type Job, type JudgedConflict, type ReplacedState, type Settle, type StageHost,
} from './stage.js';
import { setNewest } from '../newest.js';

/**
 * Staging time per commit given to peer work after the local writes: a
 * catching-up region applies what it missed in short turns, between which
 * its clients' requests and its heartbeats are served; shortest while
 * clients write, longer (larger commits, fewer fsyncs) while none does.
 * The main thread waits out each commit on the writer thread before it
 * stages the next: with 5 ms a rebuilding region's main thread sat idle a
 * third of the time, and a 50,000-document rebuild took 13.1-14.0 s
 * against 10.9 s with 10 ms (20 ms gained nothing more).
 */
const PEER_STAGING_MS = { clientsWrite: 1, idle: 10 };
/** Stale document digests computed inline for a region digest at most (a few ms); more are computed in turns. */
const SETTLE_INLINE_DOCS = 32;
/**
 * As many, for the sync status: its readers settle digests in turns first,
 * so what is left changed meanwhile (a few under steady writes); more mean
 * a backlog just ended, thousands, which the next status will have settled.
 */
const STATUS_INLINE_DOCS = 256;
/** Entries of one frame from a peer staged as one job at most. */
const REMOTE_JOB_ENTRIES = 16;

function addResults(a: RemoteApplyResult, b: RemoteApplyResult): RemoteApplyResult {
  return { applied: a.applied + b.applied, duplicates: a.duplicates + b.duplicates, gaps: a.gaps + b.gaps, quarantined: a.quarantined + b.quarantined };
}

/** What the write path needs of the store: every role but reading the log. */
export type DocumentsStore = WriterIdentity & DocumentStates & Pick<ReplicationLog, 'commit'> & PeerProgress & Maintenance & Incidents;

export interface DocumentsOptions {
  store: DocumentsStore;
  logger: Logger;
  /** Most documents held in memory at once. */
  cacheDocs: number;
  /** Most of them held decoded, the most recently used; the rest are held encoded (see DocCache). Default: all. */
  decodedDocs?: number;
  /** Most heap they may take, about (see DocCache); default unbounded. */
  cacheBytes?: number;
  /** Largest Yjs update accepted from a client or a peer, and produced by a local write. */
  yjsUpdateBytes: number;
  /** Largest encoded state a local write may leave a document with (beyond it: 413 `body_too_large`); default unbounded. */
  maxDocumentBytes?: number;
  /**
   * Largest encoded state a peer's entries or state may merge a document to
   * (beyond it an entry is quarantined, a state refused); default unbounded.
   */
  maxMergedDocumentBytes?: number;
  /** Most Yjs structs a local write may leave a document with (beyond it: 413 `too_complex`); default unbounded. */
  maxDocumentStructs?: number;
  /** Most structs a peer's entries or state may merge a document to (beyond it an entry is quarantined, a state refused); default unbounded. */
  maxMergedDocumentStructs?: number;
  /** Most JSON nodes one PUT, PATCH or ops write may hold (default {@link DEFAULT_MAX_WRITE_NODES}). */
  maxWriteNodes?: number;
  /** Compact a document's log into its snapshot after this many entries (0: never in background). */
  compactAfterEntries?: number;
  compactIntervalMs?: number;
  /** A document held encoded and changed again within this long is held decoded from then on, ms (default {@link IN_USE_MS}). */
  inUseMs?: number;
  /**
   * Local writes wait for this. A region rebuilding from its peers holds
   * them until it has caught up: a write made on a document it does not yet
   * hold would count as concurrent with the older values it cannot see.
   */
  writesOpen?: Promise<void>;
  /** Shares the event loop between clients and catch-up (one per region; a fresh one when absent). */
  pacer?: BackgroundPacer;
  /** Renders JSON reads of large documents not held decoded (a fresh one when absent; see cold-render.ts). */
  renderer?: ColdRenderer;
  now?: () => number;
}

/**
 * How long HTTP writes may wait for a hold of writes (see `writesOpen`) to
 * end, counted from the first write the hold met: enough for a restart
 * whose peers answer, far less than a rebuild. Past it a write is refused
 * at once, nothing written, and its client goes to another region (the SDK
 * does) instead of stalling here.
 */
const HELD_WRITE_WAIT_MS = 1000;
/**
 * A document held encoded that is changed again within this long is in use,
 * and held decoded from then on (the most recently used `decodedDocs` at
 * most), ms. Held encoded, each change costs a decode, a digest and an
 * encode: at 1,000 writes/s per region in three regions, where each region's
 * documents change every half second, that was thousands a second per
 * region and the regions fell seconds behind each other; at 100 writes/s
 * per region over 500 documents each, where a document changes every 5 s, a
 * window of 1 s cost each region a tenth of its CPU and its clients a
 * quarter of their write p99 (figures: README, "Storage and durability").
 * What changes once (after a heal, a rebuild, an append) still changes only
 * once within it, and stays encoded.
 */
const IN_USE_MS = 30_000;

/**
 * Stored bytes from which a JSON read of a document not held decoded is
 * rendered off the event loop (cold-render.ts): 128 KiB of small map keys
 * are about 11,000 Yjs structs, 25-50 ms to build.
 */
const COLD_RENDER_BYTES = 128 * 1024;
/**
 * A document rendered off the event loop and read again within
 * {@link RENDERED_WITHIN_MS} is built and held like any other when it is
 * smaller than this: about the per-document struct bound in small keys, a
 * build of up to a few hundred ms, paid once. Larger ones (only concurrent
 * writes at several regions merge a document past the bound) always are.
 */
const HELD_AFTER_RENDER_BYTES = 1024 * 1024;
const RENDERED_WITHIN_MS = 60_000;
/**
 * Structs from which a JSON read of a document held decoded is rendered off
 * the event loop too: rendering costs time per struct as building does
 * (20,000 small map keys: some 50 ms).
 */
const RENDER_OFF_LOOP_STRUCTS = 20_000;
/**
 * For this long (ms) after a verdict from the thread found its document
 * changed, the document's conflicts are resolved on the event loop, as a
 * small one's are. Written steadily (every 150 ms at both regions), every
 * verdict found it changed, and the conflict was never resolved.
 */
const STALE_VERDICT_MS = 5 * 60_000;
/** Documents whose stale verdict is remembered. */
const MAX_STALE_VERDICTS = 1024;
/** Documents remembered as rendered off the event loop; beyond, the oldest are forgotten. */
const MAX_RENDERED_COLD = 4096;

export function createDocuments(options: DocumentsOptions): Documents {
  return new DocumentsImpl(options);
}

class DocumentsImpl implements Documents {
  private readonly index = new DigestIndex();
  private readonly digester: Digester;
  readonly digests = {
    regionDigest: (): string => {
      this.digester.settle();
      return this.index.regionDigest();
    },
    regionDigestIfCheap: (): string | null => (this.digester.settleFew(SETTLE_INLINE_DOCS) ? this.index.regionDigest() : null),
    heartbeatDigest: (): string | null => (this.digester.settleFewSparing(SETTLE_INLINE_DOCS) ? this.index.regionDigest() : null),
    statusDigest: (): { digest: string; exact: boolean } => {
      if (!this.queue.backlogged && this.digester.settleFewSparing(STATUS_INLINE_DOCS)) return { digest: this.index.regionDigest(), exact: true };
      return { digest: this.index.partialDigest(this.writer), exact: false };
    },
    settled: (): Promise<void> => (this.queue.backlogged ? Promise.resolve() : this.digester.settleInTurns()),
    bucketDigests: async (): Promise<Uint8Array[]> => {
      // Anti-entropy reads the store's summaries next: they must be exact too.
      await this.digester.settleAndStore();
      return this.index.bucketDigests();
    },
  };
  private readonly store: DocumentsStore;
  private readonly log: Logger;
  private readonly cache: DocCache;
  private readonly now: () => number;
  private readonly vv: VersionVector;
  private readonly pending = new Set<DocKey>();
  private readonly listeners = new Set<(entries: CommittedEntry[]) => void>();
  private readonly stateListeners = new Set<(changes: StateChange[]) => void>();
  private readonly queue: JobQueue;
  /** The last commit's failure, while none has succeeded since (see storageFault). */
  private commitFault: { message: string; at: number } | null = null;
  private commitsRefused = 0;
  private docsReloaded = 0;
  /** Snapshots the compactor did not write, their merged state costly to load (see docs/compactor.ts). */
  private snapshotsWithheld = 0;
  private readonly unbuilt = new Unbuilt();
  private readonly reloadChecks = new ReloadChecks();
  private readonly renderer: ColdRenderer;
  /** Documents last rendered on the render thread, and when (performance.now()); see {@link coldUpdates}. */
  private readonly renderedCold = new Map<DocKey, number>();
  private renderedColdCount = 0;
  private judgedOffLoopCount = 0;
  /** Conflicts judged on the render thread, per document, until staged (see {@link replaceState}). */
  private readonly watches = new Map<DocKey, Set<DocWatch>>();
  /** Documents whose verdict from the thread found them changed, and when (performance.now()); the newest {@link MAX_STALE_VERDICTS}. */
  private readonly staleVerdicts = new Map<DocKey, number>();
  /**
   * The group commits on their way to the disk, oldest first: one, or two
   * when the next was staged while the first was written (see
   * {@link mayStageAhead}).
   */
  private inFlight: InFlightCommit[] = [];
  /** The chain id of the next commit (see CommitChain). */
  private nextChain = 1;
  /** A commit failed: nothing is staged ahead until every commit in flight has ended (those staged on it fail too). */
  private chainBroken = false;
  /** A staging turn is scheduled and has not run yet. */
  private flushScheduled = false;
  /** Jobs are queued, a turn is scheduled or a commit is in flight; {@link idle} resolves when none is. */
  private busy = false;
  /** A commit of peer work only, put off so that clients get the event loop (see BackgroundPacer). */
  private restTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private writesAccepted: boolean;
  private idle: Promise<void> = Promise.resolve();
  private markIdle: () => void = () => undefined;
  private readonly stopCompactor: () => void;
  private readonly stopCorruptWatch: () => void;
  /** Marks the commit whose result just arrived made (see the onCorrupt listener), followed in its afterCommit. */
  private readonly commitMarks: [DocKey, Uint8Array][] = [];
  /** What staging a job may do to this write path. */
  private readonly stager: StageHost;
  private readonly maxWriteNodes: number;
  private readonly pacer: BackgroundPacer;
  /** When held writes stop waiting and are refused at once (see HELD_WRITE_WAIT_MS); set by the first one. */
  private heldWaitEnds: number | null = null;

  constructor(private readonly options: DocumentsOptions) {
    this.store = options.store;
    this.log = options.logger;
    this.cache = new DocCache(Math.max(1, options.cacheDocs), Math.max(1, options.decodedDocs ?? options.cacheDocs), options.cacheBytes);
    this.now = options.now ?? Date.now;
    this.renderer = options.renderer ?? new ColdRenderer();
    this.vv = options.store.versionVector();
    this.writesAccepted = options.writesOpen === undefined;
    this.maxWriteNodes = options.maxWriteNodes ?? DEFAULT_MAX_WRITE_NODES;
    this.pacer = options.pacer ?? new BackgroundPacer();
    this.queue = new JobQueue(this.maxWriteNodes, this.pacer);
    void options.writesOpen?.then(() => (this.writesAccepted = true));
    this.stager = {
      writer: () => this.writer,
      peerReloadChecks: new PeerReloadChecks(),
      yjsUpdateBytes: options.yjsUpdateBytes,
      sizes: new SizeGuard(options.maxDocumentBytes ?? Number.MAX_SAFE_INTEGER),
      mergedSizes: new SizeGuard(options.maxMergedDocumentBytes ?? Number.MAX_SAFE_INTEGER),
      structs: new SizeGuard(options.maxDocumentStructs ?? Number.MAX_SAFE_INTEGER),
      mergedStructs: new SizeGuard(options.maxMergedDocumentStructs ?? Number.MAX_SAFE_INTEGER),
      now: () => this.now(),
      // A document this batch holds entries beside is built with them.
      existing: (doc, batch) => batch.touched.get(doc)
        ?? (batch.deferred.has(doc) || batch.dropped.has(doc) || batch.replacedStates.has(doc) ? this.touch(doc, batch) : this.live(doc)),
      touch: (doc, batch) => this.touch(doc, batch),
      discard: (doc, batch, later) => this.discard(doc, batch, later),
      notePending: (doc, live) => this.notePending(doc, live),
      droppedPending: new Map(),
      defer: (doc, update, batch) => this.defer(doc, update, batch),
      replaceStored: (doc, winner, batch) => this.replaceStored(doc, winner, batch),
    };
    this.digester = new Digester({
      store: this.store, index: this.index, logger: this.log,
      live: (doc) => this.cache.peek(doc),
      // Held encoded, the document is as the store has it, and decoding it is quicker than reading it.
      load: (doc) => {
        const copy = this.cache.copy(doc);
        // Entries held beside its state may leave structs waiting for others (pendingDocs).
        if (copy) this.notePending(doc, copy);
        return copy ?? this.loadDoc(doc);
      },
      digested: (doc, digest) => this.cache.noteDigest(doc, digest),
      busy: (doc) => this.settled(doc) !== null,
      pacer: this.pacer,
      backlog: () => this.queue.backlogged,
    });
    this.indexDigests();
    this.digester.resumeStale();
    // However corruption is found (loading a document, or reading the log
    // for a peer), its digest turns to zeros and the index must say so, or
    // peers would see no difference to repair.
    // A commit's marks (documents of quarantined entries) are followed once
    // the commit's own changes are (afterCommit): the digests it stored
    // must be in the index first, as they were in the store before the mark.
    this.stopCorruptWatch = options.store.onCorrupt((doc, before, byCommit) => {
      if (byCommit) this.commitMarks.push([doc, before]);
      else this.indexCorrupt(doc, before);
    });
    this.stopCompactor = startCompactor({
      store: this.store,
      logger: this.log,
      everyMs: options.compactIntervalMs ?? 1000,
      afterEntries: options.compactAfterEntries ?? 32,
      live: (doc) => this.cache.peek(doc),
      load: (doc) => this.loadDoc(doc),
      busy: (doc) => this.settled(doc) !== null,
      pacer: this.pacer,
      onWithheld: () => this.snapshotsWithheld++,
    });
  }

  /** The current writer id (it changes only when {@link Documents.rotateWriter} runs). */
  get writer(): WriterId {
    return this.store.writer;
  }

  writesOpen(): boolean {
    return this.writesAccepted;
  }

  refusedCommits(): number {
    return this.commitsRefused;
  }

  reloadedDocs(): number {
    return this.docsReloaded;
  }

  peerReloadChecks(): { made: number; putOff: number; keptUnsettled: number } {
    return { ...this.stager.peerReloadChecks.counts };
  }

  coldRenders(): number {
    return this.renderedColdCount;
  }

  conflictsJudgedOffLoop(): number {
    return this.judgedOffLoopCount;
  }

  withheldSnapshots(): number {
    return this.snapshotsWithheld;
  }

  storageFault(): string | null {
    const fault = this.commitFault;
    return fault !== null && Date.now() - fault.at < STORAGE_FAULT_MS ? fault.message : null;
  }

  commitWaitingMs(): number {
    const oldest = this.inFlight[0];
    return oldest === undefined ? 0 : Date.now() - oldest.since;
  }

  rotateWriter(): WriterId {
    // Live docs carry client ids derived from the old writer: reload them.
    this.cache.clear();
    return this.store.rotateWriter();
  }

  private indexDigests(): void {
    let after: DocKey | null = null;
    for (;;) {
      const page = this.store.docSummaries(after, 1000);
      for (const s of page) this.index.update(s.doc, null, s.digest);
      if (page.length < 1000) return;
      after = page[page.length - 1]!.doc;
    }
  }

  // ---- local writes -------------------------------------------------------

  async put(doc: DocKey, value: JsonObject): Promise<WriteAck> {
    const nodes = writeNodes({ kind: 'put', value }, this.maxWriteNodes);
    return this.required(this.local(doc, (y) => (putDocument(y, value, this.ctx(), LOCAL_ORIGIN), true), nodes));
  }

  async patch(doc: DocKey, patch: JsonObject): Promise<WriteAck> {
    const nodes = writeNodes({ kind: 'patch', value: patch }, this.maxWriteNodes);
    const deletesOnly = Object.values(patch).every((v) => v === null);
    return this.required(this.local(doc, (y) => (mergePatch(y, patch, this.ctx(), LOCAL_ORIGIN), true), nodes, undefined, deletesOnly));
  }

  async ops(doc: DocKey, ops: Op[]): Promise<WriteAck> {
    const nodes = writeNodes({ kind: 'ops', ops }, this.maxWriteNodes);
    return this.required(this.local(doc, (y) => (applyOps(y, ops, this.ctx(), LOCAL_ORIGIN), true), nodes, undefined, opsOnlyDelete(ops)));
  }

  remove(doc: DocKey): Promise<WriteAck | null> {
    return this.local(doc, (y) => deleteDocument(y, LOCAL_ORIGIN), 1, undefined, true);
  }

  async applyYjs(doc: DocKey, update: Uint8Array, source?: object): Promise<WriteAck> {
    const decoded = validateUpdate(update, this.options.yjsUpdateBytes);
    const mutate = (y: Y.Doc): boolean => {
      // A client may resend structs it got from us, but never write other
      // content under an id already used, nor lean on changes nobody holds.
      const { checkReload } = admitClientUpdate(y, decoded, (client) => this.isWriterOf(doc, client));
      if (checkReload) this.reloadChecks.ready(doc);
      const clocksBefore = new Map<number, number>();
      if (!checkReload) for (const s of decoded.structs) clocksBefore.set(s.id.client, Y.getState(y.store, s.id.client));
      withPlacementBudget(() => applyValidated(y, update, LOCAL_ORIGIN));
      // Items placed between neighbours no editor wrote side by side (crdt/admit.ts): taken only where the document
      // is still what its own state reloads to. Refused, the write path drops the half-changed copy.
      if (!checkReload && !namesOneStruct(y, decoded, clocksBefore)) return true;
      if (!checkReload) this.reloadChecks.ready(doc);
      const started = performance.now();
      const reloaded = reloadedIfDiverged(y);
      this.reloadChecks.took(doc, performance.now() - started);
      if (reloaded !== null) {
        reloaded.destroy();
        throw new MeridianError('invalid_update', 'the update places items between neighbours no editor wrote side by side, where the document would no longer be what its own state reloads to; send updates your Yjs document made');
      }
      return true;
    };
    return this.required(this.local(doc, mutate, 1, source, decoded.structs.length === 0));
  }

  /** `doc`'s stored digest turned to zeros (it was `before`): the index follows. */
  private indexCorrupt(doc: DocKey, before: Uint8Array): void {
    const indexed = this.digester.corrupted(doc);
    const zeros = new Uint8Array(32);
    this.index.update(doc, indexed === undefined ? before : indexed, zeros);
    // A document held in memory says what the index holds for it, as after any digest.
    const live = this.cache.peek(doc);
    if (live) live.digest = zeros;
    this.cache.noteDigest(doc, zeros);
  }

  /** Whether `client` is the Yjs client id of `doc` under a writer this region holds writes of. */
  private isWriterOf(doc: DocKey, client: number): boolean {
    for (const writer of this.vv.keys()) if (stableClientId(writer, doc) === client) return true;
    return false;
  }

  // ---- reads --------------------------------------------------------------

  settled(doc: DocKey): Promise<void> | null {
    for (const commit of this.inFlight) if (commit.docs.has(doc)) return commit.done;
    return null;
  }

  read(doc: DocKey): ReadResult {
    const live = this.live(doc);
    return { value: live ? readDocument(live.ydoc) : null, version: new Map(this.vv) };
  }

  // Each of these three reads the document in the turn it is called, whether
  // it renders it here or on the thread: a caller that checked `settled` just
  // before reads only what is durable. One the thread left to the event loop
  // (an update it refused) is read here once durable again.
  async readJson(doc: DocKey, caller: string): Promise<{ body: Buffer | null; version: VersionVector }> {
    const rendered = this.renderOffLoop(doc, this.coldUpdates(doc) ?? this.heldToRender(doc), { kind: 'json' }, caller);
    const off = rendered && (await rendered);
    if (off) return off;
    const result = rendered ? await this.whenDurable(doc, () => this.read(doc)) : this.read(doc);
    return { body: result.value === null ? null : Buffer.from(JSON.stringify(result.value)), version: result.version };
  }

  rendersOffLoop(doc: DocKey): boolean {
    if (!this.renderer.available) return false;
    const live = this.cache.peek(doc);
    if (live) return structsHeld(live.ydoc) >= RENDER_OFF_LOOP_STRUCTS;
    return !this.heldEncodedSmall(doc);
  }

  /** Whether `doc` is held encoded in under {@link COLD_RENDER_BYTES}: decoding it costs a small cold read. */
  private heldEncodedSmall(doc: DocKey): boolean {
    const encoded = this.cache.encodedUpdates(doc);
    return encoded !== undefined && encoded.reduce((n, u) => n + u.byteLength, 0) < COLD_RENDER_BYTES;
  }

  async readYjsRendered(doc: DocKey, stateVector: Uint8Array | undefined, caller: string): Promise<{ update: Uint8Array | null; version: VersionVector }> {
    const rendered = this.renderOffLoop(doc, this.coldUpdates(doc), { kind: 'yjs', sv: stateVector }, caller);
    const off = rendered && (await rendered);
    if (off) return { update: off.body, version: off.version };
    // Read in the same turn as the update, so the version describes it.
    const read = () => ({ update: this.readYjs(doc, stateVector), version: new Map(this.vv) });
    return rendered ? this.whenDurable(doc, read) : read();
  }

  async stateVectorRendered(doc: DocKey, caller: string): Promise<Uint8Array | null> {
    const rendered = this.renderOffLoop(doc, this.coldUpdates(doc), { kind: 'sv' }, caller);
    const off = rendered && (await rendered);
    if (off) return off.body;
    return rendered ? this.whenDurable(doc, () => this.stateVector(doc)) : this.stateVector(doc);
  }

  async whenDurable<T>(doc: DocKey, read: () => T): Promise<T> {
    for (let busy = this.settled(doc); busy !== null; busy = this.settled(doc)) await busy.catch(() => {});
    return read();
  }

  /**
   * `updates` (when any) rendered on the render thread, with the version
   * taken with them (the store holds what it covers; see settled for
   * commits on their way); undefined when they are to be read on the event
   * loop, decided in the caller's turn.
   */
  private renderOffLoop(
    doc: DocKey, updates: Uint8Array[] | null, what: RenderKind, caller: string,
  ): Promise<{ body: Buffer | null; version: VersionVector } | undefined> | undefined {
    if (updates === null) return undefined;
    const version = new Map(this.vv);
    return this.renderer.render(updates, what, caller).then((body) => {
      if (body === undefined) return undefined;
      this.noteRenderedCold(doc);
      return { body, version };
    });
  }

  /**
   * A document held decoded of {@link RENDER_OFF_LOOP_STRUCTS} or more, as
   * one update to render off the event loop; else null. Encoding it takes a
   * tenth of rendering it (285,000 nested maps: 70-93 ms against 870-978 ms).
   */
  private heldToRender(doc: DocKey): Uint8Array[] | null {
    const live = this.cache.peek(doc);
    if (!live || !this.renderer.available || this.settled(doc) !== null || structsHeld(live.ydoc) < RENDER_OFF_LOOP_STRUCTS) return null;
    return [Y.encodeStateAsUpdate(live.ydoc)];
  }

  /**
   * The updates of a document to render off the event loop: one held
   * neither decoded nor in a commit on its way, of at least
   * {@link COLD_RENDER_BYTES}. A document rendered so and read again within
   * {@link RENDERED_WITHIN_MS} is built here and held instead, as any read
   * document is, when it is under {@link HELD_AFTER_RENDER_BYTES}: reads of it
   * are then answered from memory. Larger ones are always rendered there.
   */
  private coldUpdates(doc: DocKey): Uint8Array[] | null {
    if (!this.renderer.available || this.cache.peek(doc) !== undefined || this.settled(doc) !== null) return null;
    const updates = this.cache.encodedUpdates(doc) ?? storedUpdates(this.store, doc, this.unbuilt);
    if (updates === null) return null;
    const bytes = updates.reduce((n, u) => n + u.byteLength, 0);
    if (bytes < COLD_RENDER_BYTES) return null;
    const rendered = this.renderedCold.get(doc);
    if (rendered !== undefined && performance.now() - rendered < RENDERED_WITHIN_MS && bytes < HELD_AFTER_RENDER_BYTES) return null;
    return updates;
  }

  private noteRenderedCold(doc: DocKey): void {
    this.renderedColdCount++;
    setNewest(this.renderedCold, doc, performance.now(), MAX_RENDERED_COLD);
  }

  stateForPeer(doc: DocKey): Uint8Array | null {
    // Merged from the store without building the document: each one would
    // otherwise pass through the cache, pushing out the documents clients use.
    if (this.cache.peek(doc) === undefined) {
      const stored = storedUpdate(this.store, doc, this.unbuilt);
      if (stored) return stored;
    }
    return this.readYjs(doc);
  }

  readYjs(doc: DocKey, stateVector?: Uint8Array): Uint8Array | null {
    const live = this.liveOrStored(doc);
    if (stateVector === undefined) return live instanceof Uint8Array ? live : live ? Y.encodeStateAsUpdate(live.ydoc) : null;
    // Only the document's own clients are read of the caller's vector (see
    // heldStateVector), those of structs waiting for others included (Yjs
    // holds those as a V2 update).
    const clients = live instanceof Uint8Array ? Y.parseUpdateMeta(live).to : live?.ydoc.store.clients;
    const pending = live instanceof Uint8Array || !live?.ydoc.store.pendingStructs ? null : Y.parseUpdateMetaV2(live.ydoc.store.pendingStructs.update).to;
    let sv: Uint8Array;
    try {
      sv = heldStateVector(stateVector, (client) => clients?.has(client) === true || pending?.has(client) === true);
    } catch (err) {
      throw new MeridianError('invalid_query', 'sv is not a valid Yjs state vector', { field: 'querystring/sv' }, { cause: err });
    }
    if (live instanceof Uint8Array) return Y.diffUpdate(live, sv);
    return live ? Y.encodeStateAsUpdate(live.ydoc, sv) : null;
  }

  /**
   * The live document; or, when it cannot be built within the bound on
   * placement work (crdt/load.ts CostlyLoad), its stored updates merged,
   * which Yjs encodes and diffs without placing anything: peers and editors
   * still get its state and state vector (what they do with it is theirs).
   */
  private liveOrStored(doc: DocKey): LiveDoc | Uint8Array | null {
    try {
      return this.live(doc);
    } catch (err) {
      if (!(err instanceof CostlyLoad)) throw err;
      const stored = storedUpdate(this.store, doc, this.unbuilt);
      if (stored === null) throw err;
      return stored;
    }
  }

  list(collection: string, after: string | null, limit: number): { ids: string[]; next: string | null } {
    const ids = this.store.listDocs(collection, after, limit + 1);
    const more = ids.length > limit;
    if (more) ids.length = limit;
    return { ids, next: more ? (ids[ids.length - 1] ?? null) : null };
  }

  stateVector(doc: DocKey): Uint8Array | null {
    const live = this.liveOrStored(doc);
    if (live instanceof Uint8Array) return Y.encodeStateVectorFromUpdate(live);
    return live ? Y.encodeStateVector(live.ydoc) : null;
  }

  hasState(doc: DocKey): boolean {
    // Every commit writes the document's summary row; one on its way counts once it writes content to the document
    // (not when only a refused write touched it: see touch).
    if (this.cache.peek(doc) !== undefined || this.cache.encodedUpdates(doc) !== undefined || this.store.summary(doc) !== null) return true;
    return this.inFlight.some((commit) => commit.written.has(doc));
  }

  versionVector(): VersionVector {
    return new Map(this.vv);
  }

  pendingDocs(): number {
    return this.pending.size;
  }

  pendingKeys(limit: number): DocKey[] {
    const keys: DocKey[] = [];
    for (const doc of this.pending) {
      if (keys.length >= limit) break;
      keys.push(doc);
    }
    // To the back: the next call takes the next ones, so that no set of documents always goes first.
    for (const doc of keys) {
      this.pending.delete(doc);
      this.pending.add(doc);
    }
    return keys;
  }

  pendingMark(doc: DocKey): string | null {
    if (!this.pending.has(doc)) return null;
    const held = this.cache.peek(doc);
    if (held) return pendingMark(held.ydoc);
    // Decoded for it only while that is cheap: a faulty peer's entries can
    // leave any number of large documents holding updates back, and each
    // anti-entropy round asks about some.
    if (!this.heldEncodedSmall(doc)) return null;
    const live = this.liveWithinBound(doc);
    return live ? pendingMark(live.ydoc) : null;
  }

  dropPending(doc: DocKey, mark: string): Promise<boolean> {
    return this.enqueue<boolean>((s) => ({ kind: 'drop-pending', doc, mark, ...s }));
  }

  cachedDocs(): number {
    return this.cache.size;
  }

  decodedAgain(): number {
    return this.cache.decodedAgain;
  }

  cachedBytes(): number {
    return this.cache.bytes;
  }

  onCommitted(listener: (entries: CommittedEntry[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onStateChanged(listener: (changes: StateChange[]) => void): () => void {
    this.stateListeners.add(listener);
    return () => this.stateListeners.delete(listener);
  }

  // ---- from peers ---------------------------------------------------------

  applyRemote(entries: NewLogEntry[], from: RegionId): Promise<RemoteApplyResult> {
    if (entries.length <= REMOTE_JOB_ENTRIES) return this.enqueue<RemoteApplyResult>((s) => ({ kind: 'remote', entries, from, ...s }));
    // In jobs of a few entries, so that a commit's staging budget can stop between them.
    const parts: Promise<RemoteApplyResult>[] = [];
    for (let i = 0; i < entries.length; i += REMOTE_JOB_ENTRIES) parts.push(this.applyRemote(entries.slice(i, i + REMOTE_JOB_ENTRIES), from));
    return Promise.all(parts).then((results) => results.reduce(addResults));
  }

  applyState(doc: DocKey, update: Uint8Array, from: RegionId): Promise<{ refused: string | null }> {
    const refused = this.beyondMergedStructs(doc, validateUpdate(update, Number.MAX_SAFE_INTEGER));
    if (refused !== null) return Promise.resolve({ refused });
    return this.enqueue<{ refused: string | null }>((s) => ({ kind: 'state', doc, update, from, ...s }));
  }

  /**
   * A large document's conflict is judged on the render thread: building
   * both states and digesting them held both regions 1.3-2.2 s for a
   * document of 95,000 nested maps, each time a client made its replicas
   * collide. The verdict is taken only if the document has not changed
   * since; if it has, the conflict is left to the next round, resolved on
   * the event loop (see {@link STALE_VERDICT_MS}).
   */
  async replaceState(doc: DocKey, state: Uint8Array, from: RegionId): Promise<ReplaceResult> {
    // Not built here past the bound: no conflict can be resolved against it (as a state too costly to load).
    // A large one is checked on the thread: decoding it here held the region 0.7 s (95,000 structs).
    const checkedThere = this.renderer.available && state.byteLength >= COLD_RENDER_BYTES;
    if (!checkedThere && this.beyondMergedStructs(doc, validateUpdate(state, Number.MAX_SAFE_INTEGER)) !== null) return { outcome: 'unrelated', mine: null };
    const judged = await this.judgedOffLoop(doc, state);
    if (judged === null) return { outcome: 'unrelated', mine: null };
    if (judged === undefined) {
      // Resolved here after all (a small document, or the thread could not build it): a large state is checked here then.
      if (checkedThere && this.beyondMergedStructs(doc, validateUpdate(state, Number.MAX_SAFE_INTEGER)) !== null) return { outcome: 'unrelated', mine: null };
      return this.enqueue<ReplaceResult>((s) => ({ kind: 'replace', doc, state, from, ...s }));
    }
    if (judged.invalid !== null) {
      this.unwatch(doc, judged.watch);
      throw new MeridianError('invalid_update', judged.invalid);
    }
    const result = await this.enqueue<ReplaceResult | null>((s) => ({ kind: 'replace-judged', doc, state, from, judged, ...s }))
      .finally(() => this.unwatch(doc, judged.watch));
    if (result !== null) return result;
    // Changed meanwhile: the peer's state, offered before, may no longer have this one's structure. Left to the next round.
    setNewest(this.staleVerdicts, doc, performance.now(), MAX_STALE_VERDICTS);
    return { outcome: 'unrelated', mine: null };
  }

  /**
   * The conflict of `doc` with a peer's `state`, judged on the render
   * thread against the document as it is durable now, watched for changes
   * from then on. Undefined when it is to be resolved on the event loop (a
   * small document, or no thread to judge it); null when there is nothing to
   * resolve now (the document is not held or not built within the bound
   * here, or the thread failed).
   */
  private async judgedOffLoop(doc: DocKey, state: Uint8Array): Promise<JudgedConflict | null | undefined> {
    // One whose last verdict from the thread found it changed is likely written steadily: every verdict would.
    const stale = this.staleVerdicts.get(doc);
    if (!this.renderer.available || (stale !== undefined && performance.now() - stale < STALE_VERDICT_MS)) return undefined;
    await this.whenDurable(doc, () => undefined);
    const live = this.liveWithinBound(doc);
    if (live === null) return null;
    if (state.byteLength < COLD_RENDER_BYTES && structsHeld(live.ydoc) < RENDER_OFF_LOOP_STRUCTS) return undefined;
    const watch = this.watch(doc);
    const mine = Y.encodeStateAsUpdate(live.ydoc);
    try {
      const judged = await this.renderer.judge(mine, state, this.stager.mergedStructs.limit);
      if (judged !== undefined) {
        this.judgedOffLoopCount++;
        return { ...judged, mine, watch };
      }
      this.unwatch(doc, watch);
      return undefined;
    } catch (err) {
      this.unwatch(doc, watch);
      if (err instanceof MeridianError && err.code === 'unavailable') return null;
      throw err;
    }
  }

  private watch(doc: DocKey): DocWatch {
    const watch = { changed: false };
    let watches = this.watches.get(doc);
    if (watches === undefined) this.watches.set(doc, (watches = new Set()));
    watches.add(watch);
    return watch;
  }

  private unwatch(doc: DocKey, watch: DocWatch): void {
    const watches = this.watches.get(doc);
    watches?.delete(watch);
    if (watches?.size === 0) this.watches.delete(doc);
  }

  /** The documents `batch` changes (staged, before its commit): verdicts judged on their earlier state no longer hold. */
  private noteChanged(batch: Batch): void {
    if (this.watches.size === 0) return;
    for (const docs of changesOf(batch)) {
      for (const doc of docs.keys()) {
        const watches = this.watches.get(doc);
        if (watches !== undefined) for (const watch of watches) watch.changed = true;
      }
    }
  }

  /** See StageHost.replaceStored. */
  private replaceStored(doc: DocKey, winner: Omit<ReplacedState, 'uptoLsn'>, batch: Batch): boolean {
    const live = this.liveWithinBound(doc);
    if (live === null) return false;
    // Touched earlier in the batch without a change: later jobs build it from the winner (see touchReplaced), not take that copy.
    batch.touched.delete(doc);
    batch.before.set(doc, live.digest);
    batch.replacedStates.set(doc, { ...winner, uptoLsn: live.lastLsn });
    // Counted anew by the next write (the replacement may hold fewer structs).
    this.stager.structs.clear(doc);
    batch.stateChanges.set(doc, { doc, replaced: true, added: null });
    return true;
  }

  /** A document this batch replaced by a peer's state unbuilt (see {@link replaceStored}), built from that state for a later job of the batch. */
  private touchReplaced(doc: DocKey, replaced: ReplacedState, batch: Batch): LiveDoc {
    const old = this.live(doc)!;
    const ydoc = loadDoc([replaced.state], old.ydoc.clientID);
    batch.replacedStates.delete(doc);
    return replaceLive(this.stager, doc, ydoc, batch);
  }

  /**
   * Why a peer's state is refused before it is applied: it alone holds more
   * structs than merges from peers may grow a document to (applying one
   * costs time per struct; see stage.ts). Null when it may be applied.
   */
  private beyondMergedStructs(doc: DocKey, state: DecodedUpdate): string | null {
    const limit = this.stager.mergedStructs.limit;
    if (state.structs.length <= limit) return null;
    return `the state of ${doc} holds ${state.structs.length} Yjs structs, past the ${limit} that merges from peers may grow a document to: ${MERGED_STRUCTS_ADVICE}`;
  }

  digestParts(doc: DocKey): DigestParts | null {
    const live = this.liveOrStored(doc);
    // Not built, its digest is not known here: no conflict is resolved against it.
    if (live instanceof Uint8Array) return null;
    return live ? digestParts(live.ydoc) : null;
  }

  async conflicts(doc: DocKey, afterId: number, limit: number, maxStateBytes: number, caller: string): Promise<{ conflicts: Conflict[]; next: number | null }> {
    const { records, more } = this.store.conflicts.list(doc, afterId, limit, maxStateBytes);
    const conflicts: Conflict[] = [];
    // Bytes of lost states built here: a page of many just under the bound
    // would add up to what one large one costs.
    let builtHere = 0;
    for (const c of records) {
      // A lost state may be as large as the document: one of a large document
      // built and rendered here held the region a second (95,000 structs).
      const offLoop = this.renderer.available && builtHere + c.lostState.byteLength >= COLD_RENDER_BYTES;
      const rendered = offLoop ? await this.renderer.render([c.lostState], { kind: 'json' }, caller) : undefined;
      let valueJson: string;
      if (rendered !== undefined) {
        this.renderedColdCount++;
        valueJson = rendered === null ? 'null' : rendered.toString();
      } else {
        builtHere += c.lostState.byteLength;
        const lost = loadDoc([c.lostState], 1);
        valueJson = JSON.stringify(readDocument(lost));
        lost.destroy();
      }
      conflicts.push({ id: c.id, at: c.at, winner: c.winner, keptDigest: hex(c.keptDigest), lostDigest: hex(c.lostDigest), valueJson, state: c.lostState });
    }
    return { conflicts, next: more ? conflicts[conflicts.length - 1]!.id : null };
  }

  conflictCount(): number {
    return this.store.conflicts.count();
  }

  raiseVersion(vv: VersionVector): Promise<void> {
    return this.enqueue<void>((s) => ({ kind: 'raise', vv, ...s }));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.stopCompactor();
    while (this.busy) await this.idle;
    // Stored now, so that the next start need not recompute them.
    await this.digester.settleAndStore();
    this.digester.stop();
    this.stopCorruptWatch();
    this.cache.clear();
    await this.renderer.close();
  }

  // ---- the queue ----------------------------------------------------------

  private ctx() {
    return { writer: this.writer };
  }

  private async required(p: Promise<WriteAck | null>): Promise<WriteAck> {
    const ack = await p;
    if (!ack) throw new MeridianError('internal', 'write produced no acknowledgement');
    return ack;
  }

  private async local(doc: DocKey, mutate: (y: Y.Doc) => boolean, nodes = 1, source?: object, deletesOnly = false): Promise<WriteAck | null> {
    // A live connection's update waits out the hold: its editor goes on
    // locally, and a refusal would only close the connection, to the same
    // region, over and over (y-websocket reconnects where it was).
    if (!this.writesAccepted) await (source === undefined ? this.heldWrite() : this.options.writesOpen);
    return this.enqueue<WriteAck | null>((s) => ({ kind: 'local', doc, mutate, nodes, source, deletesOnly, ...s }));
  }

  /**
   * Waits for writes to open, within a second of the first write the hold
   * met; refuses the write (nothing written) past it: a hold that outlasts
   * it is a rebuild or silent peers, and each write waiting a second more
   * would only delay its client's move to another region.
   */
  private async heldWrite(): Promise<void> {
    const ends = (this.heldWaitEnds ??= Date.now() + HELD_WRITE_WAIT_MS);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, ends - Date.now()))));
    const open = await Promise.race([this.options.writesOpen?.then(() => true) ?? true, late]);
    clearTimeout(timer);
    if (!open) {
      throw new MeridianError('unavailable', 'the region has just started and takes writes once it has heard from a peer (while it rebuilds from them: once it has caught up with them); retry shortly, or write at another region');
    }
  }

  private enqueue<T>(make: (settle: Settle<T>) => Job): Promise<T> {
    if (this.closed) return Promise.reject(new MeridianError('unavailable', 'region is shutting down'));
    return new Promise<T>((resolve, reject) => {
      const job = make({ resolve, reject } as Settle<T>);
      this.queue.push(job);
      // A client's write does not wait out a rest given to peer work.
      if (this.restTimer !== null && job.kind === 'local') {
        clearTimeout(this.restTimer);
        this.restTimer = null;
        setImmediate(() => this.flush());
      }
      if (!this.busy) {
        this.busy = true;
        this.idle = new Promise((r) => (this.markIdle = r));
      }
      this.schedule();
    });
  }

  /**
   * Schedules the next staging turn if there is work it may do now: with no
   * commit in flight, or ahead of the one in flight (see
   * {@link mayStageAhead}); otherwise the end of that commit schedules it.
   */
  private schedule(): void {
    if (this.flushScheduled) return;
    if (this.inFlight.length === 0) this.chainBroken = false;
    if (this.queue.size === 0) {
      if (this.inFlight.length === 0) {
        this.busy = false;
        this.markIdle();
      }
      return;
    }
    if (this.inFlight.length > 0 && !this.mayStageAhead()) return;
    this.flushScheduled = true;
    const rest = this.queue.hasLocal ? 0 : this.pacer.wait();
    if (rest > 0) {
      this.restTimer = setTimeout(() => {
        this.restTimer = null;
        this.flush();
      }, rest);
    } else {
      setImmediate(() => this.flush());
    }
  }

  /**
   * Whether the next batch may be staged while the commit in flight is
   * written, instead of after it: the main thread would otherwise sit idle
   * for every commit of a rebuild or a catch-up (a quarter of a rebuilding
   * region's time). Only peer work on documents that commit does not hold,
   * only while no client writes (a client's write then waits for one commit
   * at most, as before), one batch ahead at most, and never on a failed one.
   * The batch goes on from the sequence numbers the one in flight staged,
   * and the store refuses it if that one fails (see CommitChain).
   */
  private mayStageAhead(): boolean {
    const ahead = this.inFlight[0];
    if (this.inFlight.length !== 1 || ahead === undefined || this.chainBroken) return false;
    if (this.queue.hasLocal || this.pacer.clientsActive()) return false;
    const next = this.queue.peekPeer();
    return next !== undefined && stagesAhead(next, ahead.docs);
  }

  /**
   * Stages a batch and commits it. A batch is staged on what is durable, or
   * on the one commit in flight when it may stage ahead of it; either way no
   * batch is acknowledged before every change it builds on is durable.
   */
  private flush(): void {
    this.flushScheduled = false;
    const ahead = this.inFlight.at(-1) ?? null;
    if (ahead !== null && !this.mayStageAhead()) return;
    const release = this.cache.hold();
    let committing: Promise<void> | null = null;
    try {
      committing = this.commitJobs(ahead);
    } finally {
      if (committing === null) release();
    }
    if (committing !== null) {
      void committing.finally(() => {
        release();
        this.schedule();
      });
    }
    this.schedule();
  }

  /**
   * Stages this region's own writes, then peer work while the turn's budget
   * lasts, and commits; a promise while the commit is on the writer thread,
   * null once done in place.
   */
  private commitJobs(ahead: InFlightCommit | null): Promise<void> | null {
    const began = performance.now();
    const base = ahead?.vv ?? this.vv;
    const batch = emptyBatch(base);
    const stagedUnder = this.writer;
    const jobs: Job[] = [];
    const failed: Job[] = [];
    const stage = (job: Job): void => {
      jobs.push(job);
      try {
        stageJob(this.stager, job, batch);
      } catch (err) {
        job.reject(err);
        failed.push(job);
      }
    };
    const locals = ahead === null ? this.queue.takeLocal() : [];
    const besideLocal = locals.length > 0;
    let started = 0;
    let units = 0;
    // Documents not in memory are read in one transaction for the turn, not one each.
    this.store.readTogether(() => {
      for (const job of locals) stage(job);
      started = performance.now();
      const stagingMs = this.pacer.clientsActive() ? PEER_STAGING_MS.clientsWrite : PEER_STAGING_MS.idle;
      for (let job = this.takePeer(units, besideLocal, ahead); job; job = this.takePeer(units, besideLocal, ahead)) {
        stage(job);
        units += unitsOf(job);
        if (performance.now() - started > stagingMs) break;
      }
    });
    this.noteChanged(batch);
    const toEncode = this.toHoldEncoded(batch);
    const digested = this.digestsOf(batch, toEncode);
    if (besideLocal && units > 0) this.pacer.spent(performance.now() - started);
    const digests = this.digester.takeComputed();
    const chain = { id: this.nextChain++, follows: ahead?.chain ?? null };
    let commit: InFlightCommit | null = null;
    const fail = (err: unknown): void => {
      if (commit !== null) this.inFlight.splice(this.inFlight.indexOf(commit), 1);
      this.chainBroken = true;
      this.commitFault = { message: err instanceof Error ? err.message : String(err), at: Date.now() };
      this.commitsRefused++;
      this.digester.giveBack(digests);
      this.log.error({ err }, 'commit failed; the writes of this batch are not acknowledged');
      for (const doc of batch.touched.keys()) this.cache.evict(doc);
      // Not 'internal': that hides its message, and this one says what to do.
      const fault = new MeridianError('unavailable', 'the region\'s storage refused the write (see its log); retry, here or at another region', undefined, { cause: err });
      for (const job of jobs) if (!failed.includes(job)) job.reject(fault);
    };
    let stored = false;
    const finish = (lsns: number[]): void => {
      const finishing = performance.now();
      // Durable: readers need not wait, and digests may be taken, from here on,
      // not only once the callers answered below have run.
      if (commit !== null) this.inFlight.splice(this.inFlight.indexOf(commit), 1);
      if (stored) this.commitFault = null;
      this.digester.durable(digests);
      this.afterCommit(batch, lsns, toEncode, encodings, stagedUnder);
      if (!besideLocal) this.pacer.spent(performance.now() - finishing);
    };
    let committed: number[] | Promise<number[]>;
    const encodings = new Map<DocKey, EncodedState>();
    try {
      summarizeBatch(batch);
      for (const [doc, digest] of digested) batch.summaries.set(doc, { ...batch.summaries.get(doc)!, digest });
      // State merged from a peer is stored in the same transaction as the summary it changed.
      const snapshots = [...batch.snapshots].flatMap((doc) => {
        const live = batch.touched.get(doc);
        if (!live) return [];
        const snapshot = snapshotOf(doc, live);
        encodings.set(doc, snapshot);
        return [snapshot];
      });
      for (const [doc, { state, uptoLsn }] of batch.replacedStates) snapshots.push({ doc, state, uptoLsn, holdsPending: false });
      const raise = raisedBeyond(batch, base);
      // A batch of duplicates only (entries that reached this region by two
      // paths) has nothing to store: no transaction, no fsync; its digests
      // wait for the next commit.
      if (batch.entries.length === 0 && batch.summaries.size === 0 && snapshots.length === 0 && raise === undefined
        && batch.quarantined.length === 0 && batch.conflicts.length === 0) {
        this.digester.giveBack(digests);
        committed = [];
      } else {
        stored = true;
        committed = this.store.commit({
          entries: batch.entries, docs: [...batch.summaries.values()], digests, snapshots, raise,
          quarantined: batch.quarantined, conflicts: batch.conflicts, chain,
        });
      }
    } catch (err) {
      fail(err);
      return null;
    }
    // The commit is on its way to the disk: the documents to hold encoded
    // after it are encoded meanwhile (nothing changes them until it ends),
    // so that only putting them in the cache waits for it.
    for (const doc of toEncode) {
      const live = batch.changed.get(doc);
      if (live && !encodings.has(doc)) encodings.set(doc, encodedState(live));
    }
    if (!besideLocal) this.pacer.spent(performance.now() - began);
    if (Array.isArray(committed)) {
      finish(committed);
      return null;
    }
    // Readers of these documents wait for the commit: nothing undurable is ever read or sent.
    const since = Date.now();
    const stalled = setTimeout(() => {
      this.log.error({ waitedMs: Date.now() - since, writes: batch.entries.length }, 'a commit is waiting for the disk; writes queue behind it and /readyz answers 503 until it ends');
    }, COMMIT_STALL_MS);
    stalled.unref();
    const done = committed.then(finish, fail).finally(() => clearTimeout(stalled));
    commit = {
      docs: new Set([...batch.touched.keys(), ...batch.deferred.keys(), ...batch.dropped, ...batch.replacedStates.keys()]),
      written: new Set([...batch.changed.keys(), ...batch.deferred.keys(), ...batch.replacedStates.keys()]),
      done, since, vv: batch.vv, chain: chain.id,
    };
    this.inFlight.push(commit);
    return done;
  }

  /** The next peer job for this batch; one that may be staged ahead of `ahead` only, when set (see {@link mayStageAhead}). */
  private takePeer(units: number, besideLocal: boolean, ahead: InFlightCommit | null): Job | undefined {
    if (ahead !== null) {
      const next = this.queue.peekPeer();
      if (next === undefined || !stagesAhead(next, ahead.docs)) return undefined;
    }
    return this.queue.takePeer(units, besideLocal);
  }

  private afterCommit(batch: Batch, lsns: number[], toEncode: ReadonlySet<DocKey>, encodings: ReadonlyMap<DocKey, EncodedState>, stagedUnder: WriterId): void {
    for (const [doc, change] of batch.summaries) {
      const before = batch.before.get(doc) ?? null;
      if (change.digest === undefined) {
        this.digester.markStale(doc, before);
        continue;
      }
      this.digester.committed(doc, before, change.digest);
      const live = batch.changed.get(doc);
      if (live) live.digest = change.digest;
    }
    for (const [w, s] of batch.vv) if (s > (this.vv.get(w) ?? 0)) this.vv.set(w, s);
    const committed: CommittedEntry[] = [];
    const deferredLsn = new Map<DocKey, number>();
    batch.entries.forEach((e, i) => {
      const lsn = lsns[i] ?? -1;
      if (lsn < 0) return;
      // Field by field: entries come in several shapes (a client's write, a
      // peer's frame), and a spread over them took 3 µs each, 4 % of a catch-up.
      committed.push({ origin: e.origin, seq: e.seq, doc: e.doc, ts: e.ts, update: e.update, lsn, from: batch.from[i] ?? null, source: batch.sources[i] ?? null });
      const live = batch.touched.get(e.doc);
      if (live && lsn > live.lastLsn) live.lastLsn = lsn;
      else if (!live && batch.deferred.has(e.doc)) deferredLsn.set(e.doc, Math.max(lsn, deferredLsn.get(e.doc) ?? 0));
    });
    for (const [doc, updates] of batch.deferred) {
      this.cache.appendCommitted(doc, updates, deferredLsn.get(doc) ?? 0, updates.reduce((n, u) => n + u.byteLength, 0));
      // Read while the commit was on its way, it took them decoded: they may leave structs waiting for others.
      const live = this.cache.peek(doc);
      if (live) this.notePending(doc, live);
    }
    // The writer changed while this batch was committed (see rotateWriter):
    // its documents carry the old writer's Yjs client ids, so they are
    // reloaded, not kept, or the next write would reuse clocks peers hold.
    if (stagedUnder === this.writer) this.keepChanged(batch, toEncode, encodings);
    else for (const doc of batch.changed.keys()) this.cache.evict(doc);
    logIncidents(this.log, batch);
    this.docsReloaded += batch.reloaded.length;
    // The commit marked each document of a quarantined entry for repair: the
    // live copy goes (it reloads with the digest now stored), and the index follows.
    for (const { doc } of batch.quarantined) this.cache.evict(doc);
    // Replaced unbuilt: read from the store from now on (and built there when next used).
    for (const doc of batch.replacedStates.keys()) {
      this.cache.evict(doc);
      this.pending.delete(doc);
    }
    for (const [doc, before] of this.commitMarks.splice(0)) this.indexCorrupt(doc, before);
    for (const done of batch.done) done();
    if (committed.length > 0) this.announce(this.listeners, committed);
    if (batch.stateChanges.size > 0) this.announce(this.stateListeners, [...batch.stateChanges.values()]);
  }

  /**
   * The documents of the batch to hold encoded once it is committed: those
   * not in use before it (see {@link IN_USE_MS}) that only peers changed, or
   * that it created. After a heal thousands of documents change once, and a
   * client that appends creates documents it does not write again soon.
   * Decoded, they would outlive a few young-generation collections, be
   * copied by each, and leave the old generation as garbage for a full one,
   * while this region's clients wait. What a client writes again or reads is
   * held decoded, and so is what peers change again soon.
   */
  private toHoldEncoded(batch: Batch): Set<DocKey> {
    const docs = new Set<DocKey>();
    if (!this.cache.holdsEncoded) return docs;
    const written = new Set<DocKey>();
    batch.entries.forEach((e, i) => {
      if (batch.from[i] === null) written.add(e.doc);
    });
    for (const doc of batch.changed.keys()) if (batch.cold.has(doc) && (!written.has(doc) || batch.created.has(doc))) docs.add(doc);
    return docs;
  }

  /**
   * Digests of documents about to be held encoded, computed while they are
   * decoded and stored with the commit: the digester would otherwise decode
   * each one again. One that fails is left to the digester (which logs it).
   */
  private digestsOf(batch: Batch, docs: ReadonlySet<DocKey>): Map<DocKey, Uint8Array> {
    const digests = new Map<DocKey, Uint8Array>();
    for (const doc of docs) {
      const live = batch.changed.get(doc);
      try {
        if (live) digests.set(doc, docDigest(live.ydoc));
      } catch {
        // Marked stale after the commit instead.
      }
    }
    return digests;
  }

  /** Holds the documents the batch changed, committed now (see {@link toHoldEncoded}). */
  private keepChanged(batch: Batch, toEncode: ReadonlySet<DocKey>, encodings: ReadonlyMap<DocKey, EncodedState>): void {
    for (const [doc, live] of batch.changed) {
      if (toEncode.has(doc)) this.cache.keepEncoded(doc, live, encodings.get(doc));
      else this.cache.set(doc, live);
    }
  }

  /** Tells each listener; one that throws is logged and the others still hear. */
  private announce<T>(listeners: ReadonlySet<(changes: T[]) => void>, changes: T[]): void {
    for (const listener of listeners) {
      try {
        listener(changes);
      } catch (err) {
        this.log.error({ err }, 'commit listener failed');
      }
    }
  }

  private notePending(doc: DocKey, live: LiveDoc): void {
    const { pendingStructs, pendingDs } = live.ydoc.store;
    if (pendingStructs || pendingDs) this.pending.add(doc);
    else this.pending.delete(doc);
  }

  // ---- loading ------------------------------------------------------------

  /** As {@link live}, null also when it is not built within the bound on placement work (crdt/load.ts CostlyLoad). */
  private liveWithinBound(doc: DocKey): LiveDoc | null {
    try {
      return this.live(doc);
    } catch (err) {
      if (!(err instanceof CostlyLoad)) throw err;
      return null;
    }
  }

  /** The live doc, loading it if stored; null when this region has never seen it. */
  private live(doc: DocKey): LiveDoc | null {
    const cached = this.cache.get(doc);
    if (cached) return cached;
    const revived = this.cache.revive(doc);
    if (revived) {
      this.notePending(doc, revived);
      return revived;
    }
    const loaded = this.loadDoc(doc);
    if (loaded) this.cache.set(doc, loaded);
    return loaded;
  }

  /**
   * While a backlog from peers is applied (after a partition heals),
   * thousands of documents change a few times each, spread over the whole
   * backlog; built, changed, digested and encoded again for each entry, they
   * are most of a catch-up's work. A document held encoded instead takes its
   * entries beside its state, and is built once: when it is next read,
   * changed otherwise or digested (the digester waits for the backlog).
   */
  private defer(doc: DocKey, update: Uint8Array, batch: Batch): boolean {
    let deferred = batch.deferred.get(doc);
    if (deferred === undefined && (batch.touched.has(doc) || batch.replacedStates.has(doc) || !this.queue.backlogged)) return false;
    // Listed as deleted, an update that adds content would make it live again: built, so that lists say so.
    if (deferred === undefined && this.store.summary(doc)?.deleted !== false) return false;
    const bytes = (deferred ?? []).reduce((n, u) => n + u.byteLength, update.byteLength);
    const merged = this.stager.mergedSizes;
    if (merged.fullSize(doc) !== null || this.stager.mergedStructs.fullSize(doc) !== null) return false;
    if (!this.cache.mayHoldLater(doc, (deferred?.length ?? 0) + 1, bytes, batch.deferredBytes + update.byteLength - bytes, merged.limit)) return false;
    if (deferred === undefined) {
      batch.before.set(doc, this.cache.encodedDigest(doc) ?? null);
      batch.deferred.set(doc, (deferred = []));
    }
    deferred.push(update);
    batch.deferredBytes += update.byteLength;
    return true;
  }

  private touch(doc: DocKey, batch: Batch): LiveDoc {
    const touched = batch.touched.get(doc);
    if (touched) return touched;
    const replaced = batch.replacedStates.get(doc);
    if (replaced !== undefined) return this.touchReplaced(doc, replaced, batch);
    if (batch.dropped.has(doc)) throw costlyLoad();
    const deferred = batch.deferred.get(doc);
    if (deferred !== undefined) {
      // Built after all: the entries this batch held beside it are applied first.
      const bytes = deferred.reduce((n, u) => n + u.byteLength, 0);
      batch.deferred.delete(doc);
      batch.deferredBytes -= bytes;
      let live: LiveDoc;
      try {
        live = this.touch(doc, batch);
        this.replayChecked(doc, live, deferred, batch);
      } catch (err) {
        // Stored all the same, as entries held beside a state are: the job
        // that needed the document fails, and the store's copy (which skips
        // what Yjs refuses, and repairs the document) is what is read next.
        this.cache.evict(doc);
        batch.touched.delete(doc);
        batch.deferred.set(doc, deferred);
        batch.deferredBytes += bytes;
        throw err;
      }
      if (live.sizeBound !== null) live.sizeBound += bytes;
      batch.changed.set(doc, live);
      this.notePending(doc, live);
      return live;
    }
    if (!this.cache.recentlyUsed(doc, this.options.inUseMs ?? IN_USE_MS)) batch.cold.add(doc);
    // A new document joins the cache only once committed (see afterCommit):
    // a refused write must not leave an empty document that reads as present.
    let live = this.live(doc);
    if (live === null) {
      batch.created.add(doc);
      live = { ydoc: newDoc(stableClientId(this.writer, doc)), lastLsn: 0, digest: null, sizeBound: 0 };
    }
    batch.before.set(doc, live.digest);
    batch.touched.set(doc, live);
    return live;
  }

  /**
   * Replaces a live doc that a refused job may have half-changed: a fresh
   * copy from disk, with what this batch already staged for it replayed, so
   * that later jobs of the batch and the commit see only accepted changes.
   * (State merged into it earlier in the batch is dropped; anti-entropy
   * brings it again.)
   */
  private discard(doc: DocKey, batch: Batch, later: readonly Uint8Array[] = []): void {
    this.cache.evict(doc);
    batch.touched.delete(doc);
    const staged = batch.entries.filter((e) => e.doc === doc);
    if (staged.length === 0 && later.length === 0 && !batch.changed.has(doc) && !batch.snapshots.has(doc)) {
      batch.before.delete(doc);
      return;
    }
    const updates = [...staged.map((e) => e.update), ...later];
    let live: LiveDoc;
    try {
      // Updates whose apply was stopped (see crdt/load.ts) are not tried one by
      // one again: a stored document is loaded with them merged in, once.
      const rebuilt = later.length > 0 && !batch.created.has(doc) ? this.loadDoc(doc, updates) : null;
      if (rebuilt !== null) this.cache.set(doc, rebuilt);
      live = this.touch(doc, batch);
      if (rebuilt === null && later.length > 0) this.rebuildWith(doc, live, updates);
      else if (rebuilt === null) this.replayChecked(doc, live, updates, batch);
    } catch (err) {
      if (!(err instanceof CostlyLoad)) throw err;
      if (later.length > 0) {
        // Not within the cap with them: the document as it was, and the caller refuses them.
        this.discard(doc, batch);
        throw err;
      }
      // Not built again (crdt/load.ts CostlyLoad): nothing half changed stays
      // in the batch or the cache, and nothing more of this batch touches it
      // (a copy without what it staged would spend the same Yjs clocks again);
      // what it staged is stored, and readers wait for that commit. The
      // caller's own refusal goes on.
      this.cache.evict(doc);
      batch.touched.delete(doc);
      batch.changed.delete(doc);
      batch.snapshots.delete(doc);
      batch.dropped.add(doc);
      // Its digest is computed again after the commit, as for entries held beside a state.
      if (staged.length > 0) batch.summaries.set(doc, { doc });
      this.log.warn({ err, doc }, 'a document dropped after a refused change could not be built again; it is read from the store after the commit');
      return;
    }
    if (batch.changed.has(doc)) batch.changed.set(doc, live);
    this.notePending(doc, live);
  }

  /**
   * Applies stored updates of this batch to a live doc it touched; one that
   * spliced other content under held ids (see crdt/load.ts) is replaced by
   * what it reloads to, as a peer's update applied in staging is.
   */
  private replayChecked(doc: DocKey, live: LiveDoc, updates: readonly Uint8Array[], batch: Batch): void {
    const collide = mayCollide(live.ydoc, updates);
    const placed = collide || live.ydoc.store.pendingStructs !== null || live.ydoc.store.pendingDs !== null ? placedOf(live.ydoc) : null;
    if (!appliedWithinBound(live.ydoc, updates, () => replayValidated(live.ydoc, updates, 'replay'), collide)) {
      this.rebuildWith(doc, live, updates);
      return;
    }
    const risk = placed === null ? null : mayHaveDiverged(live.ydoc, placed, collide);
    const checks = this.stager.peerReloadChecks;
    let reloaded: Y.Doc | null = null;
    if (checks.due(doc, risk === 'waited') || risk === 'collided') {
      const started = performance.now();
      reloaded = reloadedIfDiverged(live.ydoc);
      checks.took(doc, performance.now() - started, structsHeld(live.ydoc));
    }
    if (reloaded === null) return;
    batch.reloaded.push(doc);
    replaceLive(this.stager, doc, reloaded, batch);
  }

  /**
   * Builds a live doc anew from the store and `updates` after it, merged
   * (see crdt/load.ts `appliedWithinBound`): the same content, which live
   * clients keep.
   */
  private rebuildWith(doc: DocKey, live: LiveDoc, updates: readonly Uint8Array[]): void {
    const again = loadLiveDoc(this.store, this.writer, doc, updates)!;
    swapYDoc(live, again.live.ydoc);
    // A part it had to skip marked the document for repair, as a load does.
    if (again.corrupt > 0) {
      this.logCorrupt(doc, again.corrupt);
      live.digest = again.live.digest;
    }
  }

  /** `later`: updates of this batch, loaded with the stored ones (see crdt/load.ts `appliedWithinBound`). */
  private loadDoc(doc: DocKey, later: readonly Uint8Array[] = []): LiveDoc | null {
    const loaded = loadLiveDoc(this.store, this.writer, doc, later, this.unbuilt);
    if (!loaded) return null;
    if (loaded.corrupt > 0) this.logCorrupt(doc, loaded.corrupt);
    this.notePending(doc, loaded.live);
    // A digest computed since the store last saw this document is the one the index holds.
    const indexed = this.digester.indexedOf(doc);
    if (indexed !== undefined && loaded.corrupt === 0) loaded.live.digest = indexed;
    return loaded.live;
  }

  private logCorrupt(doc: DocKey, corrupt: number): void {
    const { collection, id } = splitDocKey(doc);
    this.log.error({ collection, id, corrupt }, 'corrupt stored data skipped; repairing from peers');
  }
}

/** A group commit on its way to the disk. */
interface InFlightCommit {
  /** The documents it changed: readers of these wait for it. */
  docs: ReadonlySet<DocKey>;
  /** Those it writes content to (not those only a refused write touched): they exist once it is durable. */
  written: ReadonlySet<DocKey>;
  /** Settles when it is durable or has failed. */
  done: Promise<void>;
  since: number;
  /** The applied seqs as its batch left them: a batch staged ahead of it goes on from them. */
  vv: VersionVector;
  chain: number;
}

/**
 * Whether a queued job may be staged ahead of a commit in flight that
 * changed `inFlight`: peer entries or a peer's state of other documents.
 * Floors, replacements and local writes wait for it.
 */
function stagesAhead(job: Job, inFlight: ReadonlySet<DocKey>): boolean {
  if (job.kind === 'state') return !inFlight.has(job.doc);
  if (job.kind === 'remote') return job.entries.every((e) => !inFlight.has(e.doc));
  return false;
}

/**
 * What the batch holds beyond its stored entries (floors, quarantined
 * entries), to raise in its commit; undefined when nothing rises. The commit
 * itself advances each origin to its last stored entry.
 */
function raisedBeyond(batch: Batch, applied: VersionVector): VersionVector | undefined {
  const stored = new Map<WriterId, number>();
  for (const e of batch.entries) if (e.seq > (stored.get(e.origin) ?? 0)) stored.set(e.origin, e.seq);
  const raise = [...batch.vv].filter(([w, s]) => s > (applied.get(w) ?? 0) && s > (stored.get(w) ?? 0));
  return raise.length > 0 ? new Map(raise) : undefined;
}
