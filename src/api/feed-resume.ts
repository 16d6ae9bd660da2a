/**
 * Sending a resume: what changed beyond the consumer's position, then
 * `ready`, then live changes, with nothing missed or sent twice in between.
 *
 * A resume goes in rounds. Each round plans from the subscriber's position
 * at the region's version now and sends as many changes as fit the bound,
 * reading each document as it sends it, in turns of at most 10 ms between
 * which requests, frames and heartbeats are served: a value may be newer
 * than the round's version, never older, and a later round sends again
 * what changed after it. A round that sent everything, with nothing
 * committed meanwhile, makes the subscriber live in the turn of its last
 * change; one that changed meanwhile is followed by another round; one
 * that filled the bound waits for the consumer to read (a resume waits
 * rather than cuts off).
 */
import type { DocKey, VersionVector } from '../ids.js';
import type { JsonObject } from '../crdt/types.js';
import type { Documents } from '../docs/types.js';
import { LogScan, planResume, positionsOf, type FeedChange, type FeedLog, type FeedScope, type FeedValue, type ResumePlan } from '../docs/feed.js';
import { docKey } from '../ids.js';
import { covers, merged } from '../vv.js';
import { FEED_EVENT } from '../contract.js';
import { renderFeedValue, type FeedSubscriber } from './feed-hub.js';

/** Rounds that wait for a commit in flight before a round reads anyway. */
const SETTLE_ROUNDS = 10;
/** Resumes by state one feed may need in a row before it is cut off (`resume_too_large`). */
const STATE_ROUNDS = 2;
/** Longest stretch a resume renders documents before it lets other work run, ms. */
const RENDER_TURN_MS = 10;
/**
 * Rounds in a row that writes overtook (the version moved while they were
 * sent) after which the next round is sent in one turn: under writes that
 * never pause, a resume still goes live.
 */
const OVERTAKEN_ROUNDS = 10;

export interface ResumeDeps {
  documents: Documents;
  /** Without a log every resume is answered by state. */
  log: FeedLog | null;
  /** Shared by the region's resumes. */
  renders: RenderGate;
}

/** Renders shorter than this, ms, are not spaced. */
const SLOW_RENDER_MS = 2;

/**
 * Spaces a region's resumes' renders of documents that render slowly: each
 * waits, off the event loop, until as long as the last one took has passed
 * since it ended. A resume yields between its own renders, but fifty feeds
 * resumed at once, each rendering a 7 MB document (70 ms), took their turns
 * back to back: one 3.8 s stall of every request and link of the region.
 */
export class RenderGate {
  private endedAt = 0;
  private took = 0;
  /** The resume render on the render thread last queued: they run one at a time, whatever the number of resumes. */
  private threadTail: Promise<unknown> = Promise.resolve();

  /** Whether a render now would follow a slow one too closely. */
  waits(): boolean {
    return this.took > SLOW_RENDER_MS && performance.now() < this.endedAt + this.took;
  }

  /**
   * Resolves once a render may run, and holds the next one back as if a
   * render had just ended (many waiting wake together: one goes first; a
   * turn not used for a render holds the others back no longer than that).
   */
  async turn(): Promise<void> {
    while (this.waits()) await new Promise<void>((resolve) => setTimeout(resolve, this.endedAt + this.took - performance.now()));
    this.endedAt = performance.now();
  }

  /**
   * A large document's value rendered on the render thread (see
   * FeedHub): the event loop is not held meanwhile. One resume's render at
   * a time, so that many resumes at once neither fill that thread's queue
   * nor keep the reads of clients waiting behind them.
   */
  onThread(sub: FeedSubscriber, documents: Documents, doc: DocKey): Promise<{ value: FeedValue; version: VersionVector } | null> {
    // A stream closed while its render waited is not rendered for (null).
    const rendered = this.threadTail.then(() => (sub.stream.isOpen ? renderFeedValue(documents, doc) : null));
    this.threadTail = rendered.catch(() => {});
    return rendered;
  }

  /** Runs a render (a document read, and its event written), timed. */
  render<T>(render: () => T): T {
    const started = performance.now();
    try {
      return render();
    } finally {
      this.endedAt = performance.now();
      this.took = this.endedAt - started;
    }
  }
}

/** Sends what changed beyond the subscriber's position, then makes it live. */
export async function resume(deps: ResumeDeps, sub: FeedSubscriber): Promise<void> {
  const { documents, renders } = deps;
  const valueOf = (doc: DocKey): JsonObject | null => documents.read(doc).value;
  const scan = deps.log === null ? null : new LogScan(deps.log);
  let settling = 0;
  let stateRounds = 0;
  let overtaken = 0;
  // The version each document was read at, when later than its round's plan: a later round does not send that version again.
  const readAt = new Map<DocKey, VersionVector>();
  while (sub.stream.isOpen) {
    const version = documents.versionVector();
    const plan = await planOf(deps.log, scan, sub.scope, sub.current, version);
    // A commit in flight holds its documents ahead of the disk: read them once it is durable
    // (by state, page by page as they are sent).
    const checked = settling < SETTLE_ROUNDS;
    const busy = checked && plan.mode === 'log' ? plan.docs.map((d) => documents.settled(d)).find((p) => p !== null) : undefined;
    if (busy !== undefined && busy !== null) {
      settling += 1;
      await busy;
      continue;
    }
    settling = 0;
    if (plan.mode === 'log') {
      const { changes, position } = positionsOf(sub.scope, plan.entries, sub.current, version);
      // Only when none of its documents is in a commit on its way (just checked): a round in one turn does not wait for one.
      const oneTurn = overtaken >= OVERTAKEN_ROUNDS && checked;
      if (await offerInTurns(sub, changes, documents, valueOf, readAt, oneTurn, renders)) {
        sub.advanceTo(position);
        // Live from here only if no commit came between the plan and now: its changes would be missed.
        if (!covers(version, documents.versionVector())) {
          overtaken += 1;
          continue;
        }
        if (sub.sendStatesMissed(valueOf)) return sub.goLive(stateRounds > 0 ? 'state' : 'log');
      }
      if (!sub.stream.isOpen) return;
    } else {
      stateRounds += 1;
      if (stateRounds > STATE_ROUNDS) return sub.cutOff('resume_too_large');
      await sendState(sub, documents, plan.position, valueOf, renders);
      sub.advanceTo(plan.position);
      continue;
    }
    await sub.stream.drained();
  }
}

async function planOf(
  log: FeedLog | null, scan: LogScan | null, scope: FeedScope, since: VersionVector, version: VersionVector,
): Promise<ResumePlan> {
  if (log === null || scan === null) return { mode: 'state', position: merged(since, version) };
  return planResume(scan, log, scope, since, version);
}

/**
 * By state: a `reset`, then every document in scope as it is when sent
 * (at or after the plan's version; a later round sends what changed after
 * it). These changes carry no id: until the round ends, the consumer's
 * position stays where it was.
 */
async function sendState(
  sub: FeedSubscriber,
  documents: Documents,
  position: VersionVector,
  valueOf: (doc: DocKey) => JsonObject | null,
  renders: RenderGate,
): Promise<void> {
  const reset = { event: FEED_EVENT.reset, data: { collection: sub.scope.collection, id: sub.scope.id } };
  while (sub.stream.isOpen && !sub.stream.send(reset)) await sub.stream.drained();
  let turnStarted = performance.now();
  // Listed a page at a time as it is sent: a collection of millions listed
  // at once held the event loop for a second and every id in memory, per feed.
  for (let page: ScopePage | null = firstPage(documents, sub.scope); page !== null; page = nextPage(documents, sub.scope, page)) {
    const busy = page.docs.map((d) => documents.settled(d)).find((p) => p !== null);
    if (busy !== undefined && busy !== null) await busy;
    for (const doc of page.docs) {
      // A consumer that reads as fast as it is sent never fills the stream's
      // bound: without a pause a large collection would hold the event loop
      // (requests, links, heartbeats) for as long as it takes to render it.
      if (performance.now() - turnStarted > RENDER_TURN_MS) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        turnStarted = performance.now();
      }
      for (;;) {
        if (documents.rendersOffLoop(doc)) {
          const read = await renders.onThread(sub, documents, doc);
          if (read === null || !sub.stream.isOpen) return;
          if (sub.offer({ doc, position, value: read.value }, false)) break;
          await sub.stream.drained();
          continue;
        }
        await renders.turn();
        const offered = await documents.whenDurable(doc, () => sub.stream.isOpen && renders.render(() => sub.offer({ doc, position, value: valueOf(doc) }, false)));
        if (!sub.stream.isOpen) return;
        if (offered) break;
        await sub.stream.drained();
      }
    }
  }
}

/**
 * Sends `changes` in order, reading each document as it is sent, in turns
 * of at most {@link RENDER_TURN_MS} (or all in this one, `oneTurn`, for
 * documents none of which a commit has on its way); false once the stream's
 * bound is full or the stream closed. A document read in a later turn may
 * hold newer changes than its position: `readAt` keeps the version it was
 * read at, and a change already covered by it is not sent again.
 */
async function offerInTurns(
  sub: FeedSubscriber,
  changes: readonly Omit<FeedChange, 'value'>[],
  documents: Documents,
  valueOf: (doc: DocKey) => JsonObject | null,
  readAt: Map<DocKey, VersionVector>,
  oneTurn: boolean,
  renders: RenderGate,
): Promise<boolean> {
  let turnStarted = performance.now();
  let turnVersion: VersionVector | null = null;
  for (const change of changes) {
    if (!oneTurn && performance.now() - turnStarted > RENDER_TURN_MS) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      turnStarted = performance.now();
      turnVersion = documents.versionVector();
    }
    if (!oneTurn && renders.waits()) {
      await renders.turn();
      turnStarted = performance.now();
      turnVersion = documents.versionVector();
    }
    // A commit in flight holds its documents ahead of the disk: read this one once it is durable
    // (last before the read: a commit may go in flight during any wait).
    const inFlight = oneTurn ? null : documents.settled(change.doc);
    if (inFlight !== null) {
      await inFlight;
      turnStarted = performance.now();
      turnVersion = documents.versionVector();
    }
    const seen = readAt.get(change.doc);
    if (seen !== undefined && covers(seen, change.position)) continue;
    // A large document is rendered on the render thread, not here; a round in one turn reads it here all the same.
    if (!oneTurn && documents.rendersOffLoop(change.doc)) {
      const read = await renders.onThread(sub, documents, change.doc);
      if (read === null || !sub.stream.isOpen || !sub.offer({ ...change, value: read.value })) return false;
      readAt.set(change.doc, read.version);
      // Commits may have come meanwhile. The turn's clock runs on: a document found small enough is read here after all, in this turn.
      turnVersion = documents.versionVector();
      continue;
    }
    if (!sub.stream.isOpen || !renders.render(() => sub.offer({ ...change, value: valueOf(change.doc) }))) return false;
    if (turnVersion !== null) readAt.set(change.doc, turnVersion);
  }
  return true;
}

/** Documents of the scope listed at once, at most. */
const STATE_PAGE = 1000;

/** A page of the live documents in scope, and where the next one starts (null: none follows). */
interface ScopePage {
  docs: DocKey[];
  next: string | null;
}

/** The first page of the scope (a single document is named even when deleted: its feed says null). */
function firstPage(documents: Documents, scope: FeedScope): ScopePage {
  if (scope.id !== null) return { docs: [docKey(scope.collection, scope.id)], next: null };
  return listed(documents, scope.collection, null);
}

function nextPage(documents: Documents, scope: FeedScope, page: ScopePage): ScopePage | null {
  return page.next === null ? null : listed(documents, scope.collection, page.next);
}

function listed(documents: Documents, collection: string, after: string | null): ScopePage {
  const { ids, next } = documents.list(collection, after, STATE_PAGE);
  return { docs: ids.map((id) => docKey(collection, id)), next };
}
