/**
 * The change-feed subscribers of one region: one listener on the write
 * path's commits, which reads each changed document once per commit and
 * hands the commit to every subscriber; each subscriber turns it into
 * events for its scope and keeps its position.
 */
import { splitDocKey, type DocKey, type VersionVector } from '../ids.js';
import { FEED_EVENT } from '../contract.js';
import type { JsonObject } from '../crdt/types.js';
import type { CommittedEntry, Documents, StateChange } from '../docs/types.js';
import { encodeVersion } from '../docs/token.js';
import { changesOf, inScope, type FeedChange, type FeedEntry, type FeedScope } from '../docs/feed.js';
import type { SseEvent, SseStream } from './feed-stream.js';

/**
 * Documents changed by state a resume keeps to send before `ready`; beyond it
 * the feed is cut off (`resume_too_large`). About as much memory per feed as
 * its stream's queue (`limits.feedQueueBytes`).
 */
const MAX_STATES_MISSED = 10_000;

/** Why a stream was cut off, as the final event and the metric say. */
export type CutoffReason = 'slow_consumer' | 'resume_too_large';

/**
 * Each value rendered as JSON once, however many feeds send it: a commit's
 * values are read once for all subscribers (FeedHub.valueReader), and a
 * large document's JSON took as long as its stringify once per subscriber.
 */
const valueJson = new WeakMap<JsonObject, string>();

function jsonOf(value: JsonObject | null): string {
  if (value === null) return 'null';
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
  sendStatesMissed(valueOf: (doc: DocKey) => JsonObject | null): boolean {
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
    entries: readonly FeedEntry[], collections: ReadonlySet<string>, version: VersionVector, valueOf: (doc: DocKey) => JsonObject | null,
  ): void {
    if (!this.live || !this.stream.isOpen) return;
    const mine = collections.has(this.scope.collection) ? entries : [];
    const { changes, position } = changesOf(this.scope, mine, this.position, version, valueOf);
    if (!this.sendAll(changes)) return;
    this.position = position;
  }

  /**
   * Sends the documents in scope that changed by state (repair, catch-up, a
   * conflict replace). Such changes write no log entry and raise no
   * version, so each event carries the position the consumer already holds:
   * resuming from it is as complete as before, and the value is current.
   */
  stateChanged(docs: readonly DocKey[], valueOf: (doc: DocKey) => JsonObject | null): void {
    if (!this.stream.isOpen) return;
    if (!this.live) {
      // A resume under way may have sent them already, or may not name them at all.
      for (const doc of docs) {
        if (!inScope(this.scope, doc)) continue;
        if (this.statesMissed.size < MAX_STATES_MISSED) this.statesMissed.add(doc);
        else this.statesOverflowed = true;
      }
      return;
    }
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

/** Every subscriber of a region, fed from the write path's commits. */
export class FeedHub {
  private readonly subscribers = new Set<FeedSubscriber>();
  private reserved = 0;
  private readonly stopListening: () => void;
  private readonly stopStates: () => void;

  constructor(private readonly documents: Documents) {
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
    for (const s of [...this.subscribers]) s.stream.end();
  }

  private dispatch(entries: CommittedEntry[]): void {
    if (this.subscribers.size === 0) return;
    // Listeners run right after the commit, before the next one is staged: memory holds exactly what is durable.
    const version = this.documents.versionVector();
    const valueOf = this.valueReader();
    const collections = new Set(entries.map((e) => splitDocKey(e.doc).collection));
    this.each((s) => s.commit(entries, collections, version, valueOf));
  }

  private dispatchStates(changes: StateChange[]): void {
    if (this.subscribers.size === 0) return;
    const docs = changes.map((c) => c.doc);
    const valueOf = this.valueReader();
    this.each((s) => s.stateChanged(docs, valueOf));
  }

  /**
   * Hands a commit to every subscriber. One whose changes could not be read
   * (a document that cannot be built) is ended, so that its consumer resumes
   * from the position it holds, and the rest are still served: the commit's
   * events were lost for every subscriber after it. The first error is
   * thrown on, for the commit's listener to log.
   */
  private each(deliver: (s: FeedSubscriber) => void): void {
    const failures: unknown[] = [];
    for (const s of [...this.subscribers]) {
      try {
        deliver(s);
      } catch (err) {
        failures.push(err);
        s.stream.end();
      }
    }
    if (failures.length > 0) throw failures[0];
  }

  /** Reads each document once per commit, however many subscribers want it (a read that failed fails again at once). */
  private valueReader(): (doc: DocKey) => JsonObject | null {
    const values = new Map<DocKey, { value: JsonObject | null } | { failed: unknown }>();
    return (doc) => {
      let read = values.get(doc);
      if (read === undefined) {
        try {
          read = { value: this.documents.read(doc).value };
        } catch (err) {
          read = { failed: err };
        }
        values.set(doc, read);
      }
      if ('failed' in read) throw read.failed;
      return read.value;
    };
  }
}
