/**
 * The change-feed subscribers of one region: one listener on the write
 * path's commits, which reads each changed document once per commit and
 * hands the commit to every subscriber; each subscriber turns it into
 * events for its scope and keeps its position.
 *
 * A large document's value is rendered off the event loop (as a read of it
 * is; see Documents.readJson): for the feeds that follow it, its commit and
 * every commit after it wait in order until it is rendered. Rendering one
 * costs time per Yjs struct, up to a second for the largest; rendered at
 * each commit on the event loop, a client writing such a document a few
 * times a second while a feed of its collection was open held every
 * request and link of the region.
 */
import { splitDocKey, type DocKey, type VersionVector } from '../ids.js';
import { FEED_EVENT } from '../contract.js';
import type { JsonObject } from '../crdt/types.js';
import type { CommittedEntry, Documents, StateChange } from '../docs/types.js';
import { encodeVersion } from '../docs/token.js';
import { FEED_RENDERS } from '../docs/cold-render.js';
import { MeridianError } from '../errors.js';
import { CostlyLoad } from '../crdt/index.js';
import { changesOf, inScope, RenderedJson, type FeedChange, type FeedEntry, type FeedScope, type FeedValue } from '../docs/feed.js';
import type { SseEvent, SseStream } from './feed-stream.js';

/**
 * Documents changed by state a resume keeps to send before `ready`; beyond it
 * the feed is cut off (`resume_too_large`). About as much memory per feed as
 * its stream's queue (`limits.feedQueueBytes`).
 */
const MAX_STATES_MISSED = 10_000;

/** Why a stream was cut off, as the final event and the metric say. */
export type CutoffReason = 'slow_consumer' | 'resume_too_large' | 'region_busy';

/**
 * Commits that may wait for a large document's value to be rendered; beyond,
 * the feeds that wait are cut off (`region_busy`) and resume.
 * Each holds its entries' keys and positions, not their updates, and no
 * value: its documents are read when its turn comes.
 */
const MAX_WAITING_COMMITS = 4096;

/** Renders kept for waiting deliveries (see FeedHub.readFor), at most; beyond, a later one reads again. */
const MAX_KEPT_RENDER_BYTES = 64 * 1024 * 1024;

/**
 * A large document's value rendered on the render thread, and the version
 * it reflects: read once no commit on its way holds it (only durable state),
 * in the turn of that check.
 */
export async function renderFeedValue(documents: Documents, doc: DocKey): Promise<{ value: FeedValue; version: VersionVector }> {
  const { body, version } = await documents.whenDurable(doc, () => documents.readJson(doc, FEED_RENDERS));
  return { value: body === null ? null : new RenderedJson(body.toString()), version };
}

/**
 * Each value rendered as JSON once, however many feeds send it: a commit's
 * values are read once for all subscribers (FeedHub.deliver), and a
 * large document's JSON took as long as its stringify once per subscriber.
 */
const valueJson = new WeakMap<JsonObject, string>();

function jsonOf(value: FeedValue): string {
  if (value === null) return 'null';
  if (value instanceof RenderedJson) return value.text;
  let text = valueJson.get(value);
  if (text === undefined) valueJson.set(value, (text = JSON.stringify(value)));
  return text;
}

/** The `change` event of a document. */
export function changeEvent(change: FeedChange, withId = true): SseEvent {
  const version = encodeVersion(change.position);
  const { collection, id } = splitDocKey(change.doc);
  const data = { collection, id, version, value: change.value };
  // As JSON.stringify(data) writes it, with the value's JSON shared.
  const dataText = `{"collection":${JSON.stringify(collection)},"id":${JSON.stringify(id)},"version":${JSON.stringify(version)},"value":${jsonOf(change.value)}}`;
  // Without an id the consumer's resume position stays where it was (see the state resume).
  return withId ? { id: version, event: FEED_EVENT.change, data, dataText } : { event: FEED_EVENT.change, data, dataText };
}

/** The last event of a cut-off stream: where to resume from, and why. */
export function cutoffEvent(position: VersionVector, reason: CutoffReason): SseEvent {
  const version = encodeVersion(position);
  return { id: version, event: FEED_EVENT.cutoff, data: { version, reason } };
}

/**
 * One open feed: its scope, its stream, and the position its consumer has
 * reached. It takes commits once live, after its resume was sent.
 */
export class FeedSubscriber {
  private live = false;
  /** Documents in scope that changed by state before the feed went live; sent just before `ready`. */
  private readonly statesMissed = new Set<DocKey>();
  private statesOverflowed = false;

  constructor(
    readonly scope: FeedScope,
    readonly stream: SseStream,
    private position: VersionVector,
    private readonly onCutoff: (reason: CutoffReason) => void,
  ) {}

  /** The position the consumer has reached. */
  get current(): VersionVector {
    return this.position;
  }

  /** Moves the position on without events (everything up to it was sent otherwise). */
  advanceTo(position: VersionVector): void {
    this.position = position;
  }

  /**
   * Sends the documents that changed by state while the resume ran, as they
   * are now; false if the bound filled first (the rest wait for the next
   * try), or if there were too many to keep (the stream is cut off with
   * `resume_too_large`: list the collection and subscribe afresh).
   */
  sendStatesMissed(valueOf: (doc: DocKey) => FeedValue): boolean {
    if (this.statesOverflowed) {
      this.cutOff('resume_too_large');
      return false;
    }
    for (const doc of this.statesMissed) {
      if (!this.offer({ doc, position: this.position, value: valueOf(doc) })) return false;
      this.statesMissed.delete(doc);
    }
    return true;
  }

  /** Sends `ready` with the position and takes commits from now on. */
  goLive(mode: 'live' | 'log' | 'state'): void {
    const version = encodeVersion(this.position);
    this.live = this.stream.send({ id: version, event: FEED_EVENT.ready, data: { version, mode } }, true);
  }

  /** Sends one change of a resume if it fits (no cut-off: the resume waits for the consumer instead). */
  offer(change: FeedChange, withId = true): boolean {
    if (!this.stream.send(changeEvent(change, withId))) return false;
    if (withId) this.position = change.position;
    return true;
  }

  /**
   * Sends the commit's changes in scope; cuts the stream off when the
   * consumer lags past the bound. `collections`: those the entries touch (a
   * feed of another one only moves its position on).
   */
  commit(
    entries: readonly FeedEntry[], collections: ReadonlySet<string>, version: VersionVector, valueOf: (doc: DocKey) => FeedValue,
  ): void {
    if (!this.live || !this.stream.isOpen) return;
    const mine = collections.has(this.scope.collection) ? entries : [];
    const { changes, position } = changesOf(this.scope, mine, this.position, version, valueOf);
    if (!this.sendAll(changes)) return;
    this.position = position;
  }

  /** Whether it takes commits (its resume was sent). */
  get isLive(): boolean {
    return this.live;
  }

  /**
   * Notes documents in scope that changed by state before the feed went
   * live: a resume under way may have sent them already, or may not name
   * them at all. They are sent just before `ready`.
   */
  missStates(docs: readonly DocKey[]): void {
    for (const doc of docs) {
      if (!inScope(this.scope, doc)) continue;
      if (this.statesMissed.size < MAX_STATES_MISSED) this.statesMissed.add(doc);
      else this.statesOverflowed = true;
    }
  }

  /**
   * Sends the documents in scope that changed by state (repair, catch-up, a
   * conflict replace). Such changes write no log entry and raise no
   * version, so each event carries the position the consumer already holds:
   * resuming from it is as complete as before, and the value is current.
   */
  stateChanged(docs: readonly DocKey[], valueOf: (doc: DocKey) => FeedValue): void {
    if (!this.live || !this.stream.isOpen) return;
    const changes = docs.filter((doc) => inScope(this.scope, doc)).map((doc) => ({ doc, position: this.position, value: valueOf(doc) }));
    this.sendAll(changes);
  }

  /** Sends changes in order; false (and the stream cut off) when one did not fit. */
  private sendAll(changes: readonly FeedChange[]): boolean {
    for (const change of changes) {
      if (!this.stream.send(changeEvent(change))) {
        this.cutOff('slow_consumer');
        return false;
      }
      this.position = change.position;
    }
    return true;
  }

  /** Ends the stream with its resumable position. */
  cutOff(reason: CutoffReason): void {
    this.stream.finish(cutoffEvent(this.position, reason));
    this.onCutoff(reason);
  }
}

/** The documents of `docs` in the scope of any of `feeds`. */
function inScopeOf(feeds: readonly FeedSubscriber[], docs: ReadonlySet<DocKey>): Set<DocKey> {
  const wanted = new Set<DocKey>();
  for (const doc of docs) if (feeds.some((s) => inScope(s.scope, doc))) wanted.add(doc);
  return wanted;
}

/** A value read for the feeds, or why it could not be. */
type ReadValue = { value: FeedValue } | { failed: unknown };

/** A commit (or a change by state) for the feeds live when it was made. */
interface Delivery {
  /** Its number: a value read after it was made is at least as new as it. */
  n: number;
  targets: FeedSubscriber[];
  /** The documents in its targets' scopes, read when it is delivered. */
  docs: ReadonlySet<DocKey>;
  deliver: (s: FeedSubscriber, valueOf: (doc: DocKey) => FeedValue) => void;
}

/** Every subscriber of a region, fed from the write path's commits. */
export class FeedHub {
  private readonly subscribers = new Set<FeedSubscriber>();
  private reserved = 0;
  private readonly stopListening: () => void;
  private readonly stopStates: () => void;
  /** Deliveries made so far (see {@link Delivery.n}). */
  private made = 0;
  /** Deliveries waiting, in order, for the values of their large documents. */
  private readonly waiting: Delivery[] = [];
  private pumping = false;
  /** The feeds among the waiting deliveries' targets, and in how many each is. */
  private readonly blocked = new Map<FeedSubscriber, number>();
  /** Large documents rendered while deliveries wait: each value serves every delivery made before it was read. */
  private readonly rendered = new Map<DocKey, { after: number; read: ReadValue; bytes: number }>();
  private renderedBytes = 0;
  /** The documents the waiting deliveries read, and how many of them read each. */
  private readonly named = new Map<DocKey, number>();

  /**
   * `onError`: a delivery that failed after its commit's listener returned
   * (the region logs it); `maxWaiting`: commits that may wait for a render.
   */
  constructor(
    private readonly documents: Documents,
    private readonly onError: (err: unknown) => void = () => {},
    private readonly maxWaiting = MAX_WAITING_COMMITS,
  ) {
    this.stopListening = documents.onCommitted((entries) => this.dispatch(entries));
    this.stopStates = documents.onStateChanged((changes) => this.dispatchStates(changes));
  }

  /** Streams open, and feeds about to open (waiting for their position). */
  get size(): number {
    return this.subscribers.size + this.reserved;
  }

  /** Holds a place for a feed that waits before it opens; false at `max`. Release it with {@link unreserve}. */
  reserve(max: number): boolean {
    if (this.size >= max) return false;
    this.reserved += 1;
    return true;
  }

  unreserve(): void {
    this.reserved -= 1;
  }

  /** Adds a subscriber until its stream closes; it counts at once, and takes commits once live. */
  add(subscriber: FeedSubscriber): void {
    if (!subscriber.stream.isOpen) return;
    this.subscribers.add(subscriber);
    subscriber.stream.onClose(() => this.subscribers.delete(subscriber));
  }

  /** Ends every stream (the node is closing) and stops listening. */
  close(): void {
    this.stopListening();
    this.stopStates();
    this.waiting.length = 0;
    this.blocked.clear();
    this.named.clear();
    for (const s of [...this.subscribers]) s.stream.end();
  }

  private dispatch(entries: CommittedEntry[]): void {
    const targets = this.liveTargets();
    if (targets.length === 0) return;
    // Listeners run right after the commit, before the next one is staged: memory holds exactly what is durable.
    const version = this.documents.versionVector();
    const collections = new Set(entries.map((e) => splitDocKey(e.doc).collection));
    const docs = new Set<DocKey>();
    for (const e of entries) docs.add(e.doc);
    for (const doc of docs) if (!targets.some((s) => inScope(s.scope, doc))) docs.delete(doc);
    // Kept without their updates while the change may wait (see MAX_WAITING_COMMITS).
    const positions: FeedEntry[] = entries.map(({ origin, seq, doc }) => ({ origin, seq, doc }));
    this.deliverInTurn(targets, docs, (s, valueOf) => s.commit(positions, collections, version, valueOf));
  }

  private dispatchStates(changes: StateChange[]): void {
    if (this.subscribers.size === 0) return;
    const docs = changes.map((c) => c.doc);
    for (const s of this.subscribers) if (!s.isLive) s.missStates(docs);
    const targets = this.liveTargets();
    if (targets.length === 0) return;
    const wanted = new Set(docs.filter((doc) => targets.some((s) => inScope(s.scope, doc))));
    this.deliverInTurn(targets, wanted, (s, valueOf) => s.stateChanged(docs, valueOf));
  }

  /** The subscribers a change made now goes to: a feed not live yet sends it in its resume. */
  private liveTargets(): FeedSubscriber[] {
    const live: FeedSubscriber[] = [];
    for (const s of this.subscribers) if (s.isLive && s.stream.isOpen) live.push(s);
    return live;
  }

  /**
   * Delivers a change now, reading its documents now, to the feeds that
   * have nothing waiting and no large document of it in scope; the others
   * take it in their turn, and its documents are read then (nothing is held
   * for it meanwhile, and each document's values only go forward, as the
   * reads do). A feed that waits takes every later change in turn too: its
   * position must not pass a change it has not been sent. So a large
   * document delays only the feeds that follow it.
   */
  private deliverInTurn(targets: FeedSubscriber[], docs: ReadonlySet<DocKey>, deliver: Delivery['deliver']): void {
    const n = ++this.made;
    const large = [...docs].filter((doc) => this.documents.rendersOffLoop(doc));
    const now: FeedSubscriber[] = [];
    const later: FeedSubscriber[] = [];
    for (const s of targets) (this.blocked.has(s) || large.some((doc) => inScope(s.scope, doc)) ? later : now).push(s);
    if (later.length > 0) {
      if (this.waiting.length >= this.maxWaiting) this.fellBehind(later);
      else {
        const delivery = { n, targets: later, docs: inScopeOf(later, docs), deliver };
        this.waiting.push(delivery);
        for (const s of later) this.blocked.set(s, (this.blocked.get(s) ?? 0) + 1);
        for (const doc of delivery.docs) this.named.set(doc, (this.named.get(doc) ?? 0) + 1);
        if (!this.pumping) {
          this.pumping = true;
          // Started after the commit's replies: encoding a large document for the thread would hold them back.
          setImmediate(() => void this.pump());
        }
      }
    }
    if (now.length === 0) return;
    const values = new Map<DocKey, ReadValue>();
    for (const doc of inScopeOf(now, docs)) values.set(doc, this.readHere(doc));
    this.deliver({ n, targets: now, docs, deliver }, values);
  }

  /**
   * The renders fell this far behind the commits: the feeds that wait (and
   * `also`) are cut off with the positions they hold, and resume (a resume
   * renders what it missed once, however many commits changed it).
   */
  private fellBehind(also: readonly FeedSubscriber[]): void {
    const behind = new Set([...this.blocked.keys(), ...also]);
    this.waiting.length = 0;
    this.blocked.clear();
    this.named.clear();
    this.rendered.clear();
    this.renderedBytes = 0;
    for (const s of behind) if (s.stream.isOpen) s.cutOff('region_busy');
  }

  /** Delivers the waiting changes in order, reading each one's documents once its turn comes. */
  private async pump(): Promise<void> {
    try {
      while (this.waiting.length > 0) {
        const head = this.waiting[0]!;
        const values = new Map<DocKey, ReadValue>();
        // Feeds closed while it waited are not read for.
        for (const doc of inScopeOf(head.targets.filter((s) => s.stream.isOpen), head.docs)) {
          const read = await this.readFor(doc, head.n);
          // Cut off (region_busy) or closed meanwhile: this delivery is gone.
          if (this.waiting[0] !== head) break;
          values.set(doc, read);
        }
        if (this.waiting[0] !== head) continue;
        this.waiting.shift();
        for (const s of head.targets) {
          const left = (this.blocked.get(s) ?? 1) - 1;
          if (left > 0) this.blocked.set(s, left);
          else this.blocked.delete(s);
        }
        for (const doc of head.docs) {
          const left = (this.named.get(doc) ?? 1) - 1;
          if (left > 0) this.named.set(doc, left);
          else {
            this.named.delete(doc);
            this.forgetRender(doc);
          }
        }
        try {
          this.deliver(head, values);
        } catch (err) {
          this.onError(err);
        }
      }
    } finally {
      this.pumping = false;
      this.rendered.clear();
      this.renderedBytes = 0;
    }
  }

  /**
   * The value of a document at least as new as delivery `n`, read once no
   * commit on its way holds it: a render kept from an earlier delivery
   * made after `n`, else read now (a large document rendered on the render
   * thread). A document changed at every commit is rendered once per
   * render's time, not once per commit. A render is kept only while later
   * waiting deliveries name its document, and only while the kept renders
   * hold less than {@link MAX_KEPT_RENDER_BYTES}; one read afresh drops the
   * older render kept (it must not be sent after the newer value).
   */
  private async readFor(doc: DocKey, n: number): Promise<ReadValue> {
    const kept = this.rendered.get(doc);
    if (kept !== undefined && kept.after >= n) return kept.read;
    this.forgetRender(doc);
    // The deliveries made up to the read are those made by its turn.
    const started = await this.documents.whenDurable(doc, () =>
      this.documents.rendersOffLoop(doc) ? { after: this.made, rendering: renderFeedValue(this.documents, doc) } : this.readHere(doc),
    );
    if (!('rendering' in started)) return started;
    const { after } = started;
    let read: ReadValue;
    try {
      read = { value: (await started.rendering).value };
    } catch (err) {
      read = { failed: err };
    }
    const bytes = 'value' in read && read.value instanceof RenderedJson ? read.value.text.length : 0;
    if ((this.named.get(doc) ?? 0) > 1 && this.renderedBytes + bytes <= MAX_KEPT_RENDER_BYTES) {
      this.forgetRender(doc);
      this.rendered.set(doc, { after, read, bytes });
      this.renderedBytes += bytes;
    }
    return read;
  }

  private forgetRender(doc: DocKey): void {
    const kept = this.rendered.get(doc);
    if (kept === undefined) return;
    this.rendered.delete(doc);
    this.renderedBytes -= kept.bytes;
  }

  private readHere(doc: DocKey): ReadValue {
    try {
      return { value: this.documents.read(doc).value };
    } catch (err) {
      return { failed: err };
    }
  }

  /**
   * Hands a change to its subscribers. One whose changes could not be read
   * is ended, so that its consumer resumes from the position it holds, and
   * the rest are still served: the commit's events were lost for every
   * subscriber after it. A render the region could not run (its thread
   * stopped a render past its deadline) ends it with a `region_busy`
   * cutoff; a document that cannot be built, without one. The first error
   * is thrown on, for the commit's listener (or {@link onError}) to log.
   */
  private deliver(delivery: Delivery, values: ReadonlyMap<DocKey, ReadValue>): void {
    const valueOf = (doc: DocKey): FeedValue => {
      const read = values.get(doc);
      // Every document in a target's scope was read; one outside it is never asked for.
      if (read === undefined) throw new Error(`change feed: ${doc} was not read for this change`);
      if ('failed' in read) throw read.failed;
      return read.value;
    };
    const failures: unknown[] = [];
    for (const s of delivery.targets) {
      try {
        delivery.deliver(s, valueOf);
      } catch (err) {
        failures.push(err);
        if (err instanceof MeridianError && err.code === 'unavailable' && !(err instanceof CostlyLoad)) s.cutOff('region_busy');
        else s.stream.end();
      }
    }
    if (failures.length > 0) throw failures[0];
  }
}
