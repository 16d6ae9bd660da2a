/**
 * Sending a resume: what changed beyond the consumer's position, then
 * `ready`, then live changes, with nothing missed or sent twice in between.
 *
 * A resume goes in rounds. Each round plans from the subscriber's position
 * at the region's version now, reads the documents and sends as many
 * changes as fit the bound, all in one turn of the event loop, so what it
 * reads is exactly what the version holds. If everything fitted the
 * subscriber goes live in that same turn; otherwise the round waits for the
 * consumer to read (a resume waits rather than cuts off) and the next round
 * plans again from where the last change sent left the position.
 */
import type { DocKey, VersionVector } from '../ids.js';
import type { JsonObject } from '../crdt/types.js';
import type { Documents } from '../docs/types.js';
import { LogScan, changesOf, planResume, type FeedLog, type FeedScope, type ResumePlan } from '../docs/feed.js';
import { docKey } from '../ids.js';
import { merged } from '../vv.js';
import { FEED_EVENT } from '../contract.js';
import type { FeedSubscriber } from './feed-hub.js';

/** Rounds that wait for a commit in flight before a round reads anyway. */
const SETTLE_ROUNDS = 10;
/** Resumes by state one feed may need in a row before it is cut off (`resume_too_large`). */
const STATE_ROUNDS = 2;
/** Longest stretch a resume by state renders documents before it lets other work run, ms. */
const STATE_TURN_MS = 10;

export interface ResumeDeps {
  documents: Documents;
  /** Without a log every resume is answered by state. */
  log: FeedLog | null;
}

/** Sends what changed beyond the subscriber's position, then makes it live. */
export async function resume(deps: ResumeDeps, sub: FeedSubscriber): Promise<void> {
  const { documents } = deps;
  const valueOf = (doc: DocKey): JsonObject | null => documents.read(doc).value;
  const scan = deps.log === null ? null : new LogScan(deps.log);
  let settling = 0;
  let stateRounds = 0;
  while (sub.stream.isOpen) {
    const version = documents.versionVector();
    const plan = await planOf(deps.log, scan, sub.scope, sub.current, version);
    const docs = plan.mode === 'log' ? plan.docs : docsInScope(documents, sub.scope);
    // A commit in flight holds its documents ahead of the disk: read them once it is durable.
    const busy = settling < SETTLE_ROUNDS ? docs.map((d) => documents.settled(d)).find((p) => p !== null) : undefined;
    if (busy !== undefined && busy !== null) {
      settling += 1;
      await busy;
      continue;
    }
    settling = 0;
    if (plan.mode === 'log') {
      const { changes, position } = changesOf(sub.scope, plan.entries, sub.current, version, valueOf);
      if (changes.every((change) => sub.offer(change))) {
        sub.advanceTo(position);
        return sub.goLive(stateRounds > 0 ? 'state' : 'log');
      }
    } else {
      stateRounds += 1;
      if (stateRounds > STATE_ROUNDS) return sub.cutOff('resume_too_large');
      await sendState(sub, docs, plan.position, valueOf);
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
  docs: readonly DocKey[],
  position: VersionVector,
  valueOf: (doc: DocKey) => JsonObject | null,
): Promise<void> {
  const reset = { event: FEED_EVENT.reset, data: { collection: sub.scope.collection, id: sub.scope.id } };
  while (sub.stream.isOpen && !sub.stream.send(reset)) await sub.stream.drained();
  let turnStarted = performance.now();
  for (const doc of docs) {
    // A consumer that reads as fast as it is sent never fills the stream's
    // bound: without a pause a large collection would hold the event loop
    // (requests, links, heartbeats) for as long as it takes to render it.
    if (performance.now() - turnStarted > STATE_TURN_MS) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      turnStarted = performance.now();
    }
    while (sub.stream.isOpen && !sub.offer({ doc, position, value: valueOf(doc) }, false)) await sub.stream.drained();
  }
}

/** Every live document of the scope (a single document is named even when deleted: its feed says null). */
function docsInScope(documents: Documents, scope: FeedScope): DocKey[] {
  if (scope.id !== null) return [docKey(scope.collection, scope.id)];
  const out: DocKey[] = [];
  let after: string | null = null;
  for (;;) {
    const page = documents.list(scope.collection, after, 1000);
    for (const id of page.ids) out.push(docKey(scope.collection, id));
    if (page.next === null) return out;
    after = page.next;
  }
}
