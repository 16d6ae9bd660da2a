/**
 * Anti-entropy over one link: the safety net for anything the log stream
 * missed, and the way a peer whose log entries were garbage-collected (or
 * whose data directory was wiped) is caught up by state.
 *
 * A round, started by A:
 *   A -> B  ae-buckets(r, A's bucket digests)
 *   B -> A  ae-buckets(r, B's bucket digests), then ae-docs(r, bucket, docs) for each differing bucket
 *   A -> B  doc-state(full, no sv) for docs only A has; doc-sv(A's sv) for the others that differ
 *   B -> A  doc-state(diff against A's sv, B's sv)
 *   A -> B  doc-state(diff against B's sv, no sv)
 *   A -> B  ae-done(r, floor)
 * When B finds, on a doc-sv, that its document has A's structure but other
 * content (two clients wrote under one Yjs client id), it also sends
 * doc-replace(offer, its state), and A answers doc-replace(answer, its own
 * state from before); each side then resolves the conflict by the same rule.
 * Data flows both ways; `floor` is A's version vector when the round began,
 * which B may adopt once it has applied everything before ae-done (frames on
 * a link are processed in order), because by then B holds all of A's state.
 *
 * A floor raises B's version vector past entries B never saw, so B accepts
 * one only for a round whose ae-buckets it answered, once per round, and
 * only as far as A has stated it holds (A states its floor in an ack just
 * before its ae-buckets) and never past what B holds of its own writer;
 * anything else is a protocol error that changes nothing.
 */
import * as Y from 'yjs';
import { randomInt } from 'node:crypto';
import type { Logger } from 'pino';
import type { DocKey, RegionId, VersionVector } from '../ids.js';
import type { Documents } from '../docs/types.js';
import type { DocSummary, DocumentStates } from '../storage/types.js';
import { BUCKETS, bucketOf } from '../buckets.js';
import {
  DOC_PARTS_BYTES, MAX_AE_DOCS, MAX_ROUND, ProtocolError,
  type AeBucketsFrame, type AeDocsFrame, type AeDoneFrame, type DocReplaceFrame, type DocStateFrame, type DocSvFrame, type Frame,
} from './protocol.js';
import { covers, firstExcess } from '../vv.js';
import { CostlyLoad } from '../crdt/index.js';
import type { BackgroundPacer } from '../pacer.js';
import { addNewest, setNewest } from '../newest.js';

export interface AntiEntropyPort {
  peer: RegionId;
  documents: Documents;
  /** The stored summaries it compares with the peer's. */
  store: Pick<DocumentStates, 'docSummaries' | 'bucketSummaries'>;
  logger: Logger;
  /** Sends a frame, waiting while the link's send buffer is full. */
  send(frame: Frame): Promise<void>;
  /** A received frame turned out bad after all: close the link. */
  fail(reason: string): void;
  /** A received frame's content was refused, the link kept (`onRejected`: the peer's last error, a metric). */
  refused(reason: string): void;
  /** What the peer has stated it holds on this link (sync request, acks, pings, entries sent). */
  peerStated(): VersionVector;
  /** Shared with the write path (see BackgroundPacer): reading and sending document states is catch-up work. */
  pacer?: BackgroundPacer;
  /** Documents this region lacks asked for in one round at most (default {@link MAX_ASKED_PER_ROUND}). */
  maxAskedPerRound?: number;
  /**
   * The peer's answer about `doc`, merged, left it holding back exactly
   * `mark` (see Documents.pendingMark): the peer holds none of what it waits for.
   */
  heldBackStill?(doc: DocKey, mark: string): void;
  /**
   * Whether an answer of the peer already left `doc` holding back `mark`:
   * it is not asked about again until that changes. Should the peer come to
   * hold what it waits for, its digest changes, and the document is asked
   * about as any that differs.
   */
  heldBackAnswered?(doc: DocKey, mark: string): boolean;
}

interface Round {
  floor: VersionVector | null;
  /** This region's bucket digests as sent when the round began. */
  buckets: Uint8Array[];
  /**
   * Buckets whose ae-docs the round still waits for, once the peer's
   * ae-buckets told which differ; each is listed once (a peer listing any
   * bucket again and again would grow the queue without end).
   */
  bucketsDue: Set<number> | null;
  docsExpected: number | null;
  docsReceived: number;
  /** Documents the peer listed that this region lacks: asked for, and left to the next round past the bound. */
  asked: number;
  leftOut: number;
  /** doc-sv frames sent whose doc-state answer has not been queued (it may have arrived and be merging). */
  outstanding: number;
  /**
   * Documents asked about (a doc-sv sent) whose answer has not arrived: the
   * peer answers each once, and only these. An answer is itself answered,
   * with this region's state beyond the peer's, so one nobody asked for
   * would let a peer have a 1 MB state queued for every 20 bytes it sends.
   */
  awaiting: Set<DocKey>;
  /** Frames waiting to be sent, at most WINDOW doc-sv in flight. */
  queue: Outbox;
  driving: boolean;
  /** Documents asked about with their digest parts: the peer may offer its state of these, once each. */
  mayOffer: Set<DocKey>;
  /** Documents holding back updates for missing dependencies, asked about whatever their digests (see start). */
  heldBack: ReadonlySet<DocKey>;
  /** What each document asked about held back when it was asked (see AntiEntropyPort.heldBackStill). */
  heldBackAsked: Map<DocKey, string>;
  startedAt: number;
  /**
   * When the round last moved (ms since epoch): a frame of it arrived, or this
   * region listed a page of its documents or sent a frame of it. A round
   * streaming thousands of states hears nothing back meanwhile, and is not idle.
   */
  activeAt: number;
  done: () => void;
}

/**
 * A frame to send, or a document whose full state or state vector is to be
 * sent: read only when its turn comes, so that a round over many documents
 * neither holds them all in memory nor reads them all while handling one
 * inbound frame, and only once durable (see {@link AntiEntropy.durable}).
 */
type Outgoing =
  | Frame
  | { type: 'full-state'; round: number; doc: DocKey }
  /** `heldBack`: asked because it holds back updates, not because its digest differs (see AntiEntropy.start). */
  | { type: 'ask'; round: number; doc: DocKey; heldBack?: true };

/**
 * A round's frames to send, in order, except that answers to the peer's
 * doc-sv go ahead of the rest. A rebuild queues one item per document
 * (100,000s): taking from the front must not move the rest, as
 * `Array.prototype.shift` does on an array that large.
 */
class Outbox {
  private items: Outgoing[] = [];
  private head = 0;
  private answers: Frame[] = [];

  get length(): number {
    return this.items.length - this.head + this.answers.length;
  }

  push(item: Outgoing): void {
    this.items.push(item);
  }

  pushFirst(frame: Frame): void {
    this.answers.push(frame);
  }

  shift(): Outgoing | undefined {
    if (this.answers.length > 0) return this.answers.shift();
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head]!;
    this.head++;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head >= 4096 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
}

const EMPTY_SV = Y.encodeStateVector(new Y.Doc());
/**
 * Documents the peer lists that this region lacks, asked for in one round
 * at most. Each waits in the round's queue (about 100 bytes), and a faulty
 * peer can list any number of made-up ones (16 MiB frames, one per bucket:
 * hundreds of millions, past the heap). The rest wait for the next round;
 * a region rebuilt from a peer of more documents takes several rounds. What
 * this region sends is not bounded so: its floor says it sent everything.
 */
export const MAX_ASKED_PER_ROUND = 1_000_000;
/**
 * doc-sv requests in flight per round. Sending happens outside the ordered
 * inbound processing, and answers are bounded by this window, so two regions
 * exchanging many documents never wait on each other's full buffers.
 */
const WINDOW = 32;
/** Longest stretch of sending before timers and sockets get a turn, ms. */
const YIELD_AFTER_MS = 5;
/** Document summaries read in one turn while listing a round's buckets. */
const SUMMARY_PAGE = 500;
/**
 * Differing buckets up to which their documents are read bucket by bucket
 * (an index read each, in proportion to the documents in them); beyond,
 * one pass over every document's summary costs less.
 */
const MOST_BUCKETS_READ_ONE_BY_ONE = BUCKETS / 4;
/**
 * Received document states queued for commit before the next one waits,
 * and their bytes: each holds its state (up to a frame) until committed,
 * and the frame that brought it is done once it is queued, so a count alone
 * let one link hold gigabytes while the write path fell behind.
 */
const MAX_APPLYING = 1024;
const MAX_APPLYING_BYTES = 64 * 1024 * 1024;
/**
 * Answers owed to the peer (its rounds' lists, doc-sv) beyond which it is
 * asking faster than it reads: a round keeps at most WINDOW doc-sv in flight.
 */
const MAX_ANSWERS_OWED = 8 * WINDOW;
/** Peer rounds answered and not yet done that are remembered; a peer runs one at a time. */
const MAX_ANSWERED = 8;
/** Offers of this region's state awaiting the peer's answer that are remembered (the peer need not answer). */
const MAX_OFFERED = 1024;
/** Shortest time between two rounds the peer starts that this region answers, ms (a peer runs one every few seconds at most). */
const MIN_ANSWER_GAP_MS = 1000;
/** Rounds this region gave up whose answers still in flight are taken (see {@link AntiEntropy.givenUp}). */
const MAX_GIVEN_UP = 8;

export class AntiEntropy {
  private readonly rounds = new Map<number, Round>();
  /** Rounds the peer started whose ae-buckets this region answered, oldest first: only these may end with a floor. */
  private readonly answered = new Set<number>();
  /** The peer's round answered last: an older one still being answered was given up. */
  private latestAnswered: number | null = null;
  /** When a frame of a round the peer runs last arrived (ms since epoch; 0 after its ae-done). */
  private peerRoundAt = 0;
  /** When this region last began to answer a round the peer started (performance.now()). */
  private lastAnswerAt = -Infinity;
  /**
   * Answers to the peer, sent in order but beside the link's inbound frames:
   * an answer may wait for paced reading here or for a send buffer the peer
   * empties slowly (it may be busy applying what this region sends it), and
   * meanwhile the peer's entries, acknowledgements and states must still be
   * read, or each side takes the other's silence for a dead link.
   */
  private answers: Promise<void> = Promise.resolve();
  private answersOwed = 0;
  /** When answering last gave up the thread (performance.now()). */
  private answeredSince = -Infinity;
  /** When each document's digest parts were last compared with the peer's, oldest first (see {@link comparesParts}). */
  private readonly partsComparedAt = new Map<DocKey, number>();
  /** Merges of received document states not yet committed, oldest first, with the bytes of each state. */
  private readonly applying = new Map<Promise<void>, number>();
  private applyingBytes = 0;
  /** (round, document) of offers this region sent, oldest first: only these may be answered. */
  private readonly offered = new Set<string>();
  /**
   * Rounds this region gave up before they completed (idle, or their frames
   * could not be sent), oldest first, with the documents whose answers had
   * not arrived and those it may still be offered: the peer's answers,
   * offers and lists still in flight then are no protocol error. A round
   * that completed had every answer, offer and list.
   */
  private readonly givenUp = new Map<number, Pick<Round, 'awaiting' | 'mayOffer'>>();
  /** The floor of the last round this region completed, and when: the peer states it once it has applied the round. */
  private lastFloor: { floor: VersionVector; at: number } | null = null;
  /** Rounds completed (as initiator) since the link opened. */
  completed = 0;
  docsRepaired = 0;
  /** Content conflicts resolved on this link (as winner or loser). */
  conflictsResolved = 0;

  constructor(private readonly port: AntiEntropyPort) {}

  /** Whether to ask the peer about `doc`, held back for missing dependencies, whatever the digests. */
  private asksHeldBack(doc: DocKey): boolean {
    const mark = this.port.documents.pendingMark(doc);
    return mark !== null && this.port.heldBackAnswered?.(doc, mark) !== true;
  }

  get running(): boolean {
    return this.rounds.size > 0;
  }

  /** Whether the peer runs a round on this link that moved in the last `withinMs`: it compares both ways. */
  peerRunning(now: number, withinMs: number): boolean {
    return now - this.peerRoundAt < withinMs;
  }

  /**
   * Whether a round this region completed in the last `withinMs` sent a
   * floor that the peer has not yet stated it holds. A peer applies a round's
   * states before its ae-done, and a peer being rebuilt may take a minute to
   * get there: until it does, it still looks as if it lacked everything.
   */
  floorUnstated(peerHas: VersionVector, now: number, withinMs: number): boolean {
    if (!this.lastFloor) return false;
    if (covers(peerHas, this.lastFloor.floor) || now - this.lastFloor.at >= withinMs) this.lastFloor = null;
    return this.lastFloor !== null;
  }

  /**
   * Starts a round; resolves when it completes or the link closes. The
   * documents `heldBack` (holding back updates for missing dependencies)
   * are asked about whatever their digests, which never cover what waits:
   * the peer sends what it holds beyond them, and its answer shows whether
   * it holds any of what they wait for.
   */
  start(heldBack: readonly DocKey[] = []): Promise<void> {
    const { documents } = this.port;
    const round = randomInt(1, MAX_ROUND);
    // Also while some updates wait for dependencies: the states it sends carry
    // them, waiting alike at the peer. Withheld then, one entry depending on
    // what no region holds (a faulty peer's) kept every floor from every
    // region for good, and a wiped region never caught up with the writers
    // whose entries had left the logs. (Such an update counts in no digest:
    // a peer that lacks it is sent it once it stops waiting and changes its
    // document's digest.)
    const floor = documents.versionVector();
    // Settles stale digests before the round's clock starts (thousands take a while); storing them is the round's first wait.
    const bucketDigests = documents.digests.bucketDigests();
    return new Promise<void>((resolve) => {
      const state: Round = {
        floor, buckets: [], bucketsDue: null, docsExpected: null, docsReceived: 0, asked: 0, leftOut: 0, outstanding: 0, awaiting: new Set(),
        queue: new Outbox(), driving: false, mayOffer: new Set(), heldBack: new Set(heldBack), heldBackAsked: new Map(),
        startedAt: Date.now(), activeAt: Date.now(), done: resolve,
      };
      this.rounds.set(round, state);
      void bucketDigests.then(async (buckets) => {
        state.buckets = buckets;
        // The peer accepts the floor only as far as this region has stated it holds: state it first.
        if (floor) await this.port.send({ type: 'ack', vv: floor });
        await this.port.send({ type: 'ae-buckets', round, buckets });
      }).catch(() => this.abort(round));
    });
  }

  /** Ends every round; called when the link closes. */
  close(): void {
    for (const round of [...this.rounds.keys()]) this.abort(round);
    this.answered.clear();
  }

  /**
   * Ends rounds that neither heard from the peer nor moved themselves for
   * `idleMs`, so that a round whose answers went missing cannot keep
   * anti-entropy off this link.
   */
  abortIdle(now: number, idleMs: number): void {
    for (const [id, round] of [...this.rounds]) {
      if (now - round.activeAt < idleMs) continue;
      this.port.logger.warn({ peer: this.port.peer, idleMs: now - round.activeAt }, 'anti-entropy round idle; abandoned');
      this.abort(id);
    }
  }

  async onBuckets(frame: AeBucketsFrame): Promise<void> {
    const round = this.heard(frame.round);
    if (round) {
      // The peer's answer to our round: it sends ae-docs for each bucket
      // where its digests differ from the ones we sent, whatever changed here since.
      if (round.bucketsDue !== null) throw new ProtocolError(`ae-buckets for round ${frame.round} a second time`);
      const differing = differingBuckets(round.buckets, frame.buckets);
      round.bucketsDue = new Set(differing);
      round.docsExpected = differing.length;
      // Those in a differing bucket are asked about when the peer lists it (each document once a round).
      for (const doc of round.heldBack) {
        if (!round.bucketsDue.has(bucketOf(doc))) round.queue.push({ type: 'ask', round: frame.round, doc, heldBack: true });
      }
      this.drive(frame.round, round);
      return;
    }
    this.noteAnswered(frame.round);
    // The peer gave this round up and started another: answer that one instead.
    const superseded = (): boolean => this.latestAnswered !== frame.round;
    this.answer(async () => {
      if (superseded()) return;
      // Answering lists every document of the buckets that differ: a peer
      // starting round after round (a ten-byte frame each) is answered once
      // a second at most, the rounds between given up.
      const wait = this.lastAnswerAt + MIN_ANSWER_GAP_MS - performance.now();
      if (wait > 0) {
        await new Promise((resolve) => setTimeout(resolve, wait));
        if (superseded()) return;
      }
      this.lastAnswerAt = performance.now();
      const mine = await this.port.documents.digests.bucketDigests();
      const differing = differingBuckets(mine, frame.buckets);
      await this.port.send({ type: 'ae-buckets', round: frame.round, buckets: mine });
      const docs = await this.docsIn(differing);
      for (const bucket of differing) {
        if (superseded()) return;
        const list = [...(docs.get(bucket) ?? new Map<DocKey, Uint8Array>())].map(([doc, digest]) => ({ doc, digest }));
        if (list.length > MAX_AE_DOCS) {
          // The peer refuses a longer list. Documents left out count as
          // lacking here: the peer sends its state of them, and this
          // region's own state of those the peer lacks does not reach it.
          this.port.logger.error(
            { peer: this.port.peer, bucket, docs: list.length, listed: MAX_AE_DOCS },
            'a digest bucket holds more documents than one ae-docs frame lists; the rest are left out of anti-entropy with the peer',
          );
          list.length = MAX_AE_DOCS;
        }
        await this.port.send({ type: 'ae-docs', round: frame.round, bucket, docs: list });
      }
    });
  }

  /** The round `id` if this region runs it, marked as having heard from the peer. */
  private heard(id: number): Round | undefined {
    const round = this.rounds.get(id);
    if (round) round.activeAt = Date.now();
    return round;
  }

  async onDocs(frame: AeDocsFrame): Promise<void> {
    const round = this.heard(frame.round);
    if (!round) {
      if (!this.givenUp.has(frame.round)) throw new ProtocolError(`ae-docs for round ${frame.round}, which this region does not run`);
      // A list in flight when this region gave the round up: read for nothing, and counted.
      this.port.refused(`ae_docs_late: ae-docs for round ${frame.round}, which this region gave up`);
      return;
    }
    if (round.bucketsDue?.delete(frame.bucket) !== true) {
      throw new ProtocolError(`ae-docs for bucket ${frame.bucket}, which round ${frame.round} does not wait for`);
    }
    for (const d of frame.docs) {
      if (bucketOf(d.doc) !== frame.bucket) throw new ProtocolError(`ae-docs for bucket ${frame.bucket} lists a document of bucket ${bucketOf(d.doc)}`);
    }
    // Read bucket by bucket as the peer's lists arrive, not all at once on
    // its ae-buckets: listing every document (a rebuild differs in every
    // bucket) would hold this link's inbound frames for seconds.
    const began = performance.now();
    const mine = new Map(this.port.store.bucketSummaries(frame.bucket).map((s) => [s.doc, s.digest] as const));
    this.port.pacer?.spent(performance.now() - began);
    const theirs = new Map(frame.docs.map((d) => [d.doc, d.digest] as const));
    for (const [doc, digest] of mine) {
      const other = theirs.get(doc);
      if (!other) {
        round.queue.push({ type: 'full-state', round: frame.round, doc });
      } else if (!Buffer.from(other).equals(Buffer.from(digest))) {
        round.queue.push({ type: 'ask', round: frame.round, doc });
      } else if (round.heldBack.has(doc)) {
        round.queue.push({ type: 'ask', round: frame.round, doc, heldBack: true });
      }
    }
    const most = this.port.maxAskedPerRound ?? MAX_ASKED_PER_ROUND;
    for (const doc of theirs.keys()) {
      if (mine.has(doc)) continue;
      if (round.asked >= most) {
        if (round.leftOut++ === 0) {
          this.port.logger.warn(
            { peer: this.port.peer, asked: most },
            'the peer lists more documents this region lacks than one anti-entropy round asks for; the rest wait for the next round',
          );
        }
        continue;
      }
      round.asked++;
      round.queue.push({ type: 'doc-sv', round: frame.round, doc, sv: EMPTY_SV, parts: null });
    }
    round.docsReceived++;
    this.drive(frame.round, round);
  }

  /** Sends a round's queued frames in the background, within the window. */
  private drive(id: number, round: Round): void {
    if (round.driving) return;
    round.driving = true;
    void (async () => {
      // This thread's time spent reading and encoding since the last turn
      // given up (not the waits for commits or a full send buffer).
      let used = 0;
      try {
        while (round.queue.length > 0 && round.outstanding < WINDOW && this.rounds.get(id) === round) {
          // Sending does not wait while the link has room: give timers,
          // sockets and this region's clients their turn.
          if (used > YIELD_AFTER_MS || (this.port.pacer?.wait() ?? 0) > 0) {
            await this.giveTurn(used);
            used = 0;
            continue;
          }
          const queued = round.queue.shift()!;
          if (queued.type === 'ask' && queued.heldBack === true) {
            // Decided in turn, paced as the rest: it may decode the document.
            const deciding = performance.now();
            const asks = this.asksHeldBack(queued.doc);
            used += performance.now() - deciding;
            if (!asks) continue;
          }
          if (queued.type === 'full-state' || queued.type === 'ask') await this.durable(queued.doc);
          const began = performance.now();
          const next = this.frameFor(queued);
          if (next?.type === 'doc-sv') {
            round.outstanding++;
            round.awaiting.add(next.doc);
            const heldBack = this.port.documents.pendingMark(next.doc);
            if (heldBack !== null) round.heldBackAsked.set(next.doc, heldBack);
          }
          const sent = next ? this.port.send(next) : null;
          used += performance.now() - began;
          await sent;
          round.activeAt = Date.now();
        }
        this.port.pacer?.spent(used);
        round.driving = false;
        await this.maybeFinish(id, round);
      } catch {
        round.driving = false;
        this.abort(id);
      }
    })();
  }

  /** Reports `used` ms of background work and waits for the next turn (later while this region's clients write). */
  private async giveTurn(used: number): Promise<void> {
    this.port.pacer?.spent(used);
    const wait = this.port.pacer?.wait() ?? 0;
    await new Promise<void>((resolve) => (wait > 0 ? setTimeout(resolve, wait) : setImmediate(resolve)));
  }

  /**
   * The frame for a queued item, read now (the document durable): a full
   * state, a doc-sv for a document both sides hold with different digests,
   * or the frame itself; null for a document gone meanwhile.
   */
  private frameFor(queued: Outgoing): Frame | null {
    try {
      return this.readFrameFor(queued);
    } catch (err) {
      // A document this region cannot build (crdt/load.ts) is left out of the round, the link kept.
      if (!(err instanceof CostlyLoad)) throw err;
      this.port.refused(`doc_unbuilt: ${'doc' in queued ? queued.doc : ''}: ${err.message}`);
      return null;
    }
  }

  private readFrameFor(queued: Outgoing): Frame | null {
    const { documents } = this.port;
    if (queued.type === 'full-state') {
      const update = documents.stateForPeer(queued.doc);
      return update ? { type: 'doc-state', round: queued.round, doc: queued.doc, update, sv: null } : null;
    }
    if (queued.type === 'ask') {
      const parts = this.partsOf(queued.doc);
      if (parts) this.rounds.get(queued.round)?.mayOffer.add(queued.doc);
      return { type: 'doc-sv', round: queued.round, doc: queued.doc, sv: documents.stateVector(queued.doc) ?? EMPTY_SV, parts };
    }
    return queued;
  }

  /**
   * Waits while a commit that changed `doc` is being made durable: a peer
   * must never hold state this region could still lose in a crash (it would
   * reuse those Yjs clocks after the restart).
   */
  private async durable(doc: DocKey): Promise<void> {
    await this.port.documents.settled(doc);
  }

  onDocSv(frame: DocSvFrame): void {
    this.peerRoundAt = Date.now();
    this.answer(async () => {
      const { documents } = this.port;
      await this.durable(frame.doc);
      const comparing = performance.now();
      const conflict = frame.parts !== null && this.comparesParts(frame.doc) && this.conflictsUnlessUnbuilt(frame.doc, frame.parts);
      this.port.pacer?.spent(performance.now() - comparing);
      if (conflict) {
        const state = documents.readYjs(frame.doc);
        if (state) {
          addNewest(this.offered, offerKey(frame.round, frame.doc), MAX_OFFERED);
          await this.port.send({ type: 'doc-replace', round: frame.round, doc: frame.doc, update: state, kind: 'offer' });
        }
      }
      const began = performance.now();
      let update: Uint8Array;
      let sv: Uint8Array;
      try {
        update = documents.readYjs(frame.doc, frame.sv) ?? Y.encodeStateAsUpdate(new Y.Doc());
        sv = documents.stateVector(frame.doc) ?? EMPTY_SV;
      } catch (err) {
        // Answered as if this region held nothing of it (what the peer then sends is refused at once), the link kept.
        if (!(err instanceof CostlyLoad)) throw err;
        this.port.refused(`doc_unbuilt: ${frame.doc}: ${err.message}`);
        update = Y.encodeStateAsUpdate(new Y.Doc());
        sv = EMPTY_SV;
      }
      const sent = this.port.send({ type: 'doc-state', round: frame.round, doc: frame.doc, update, sv });
      this.port.pacer?.spent(performance.now() - began);
      await sent;
    });
  }

  /**
   * A document's state from the peer: in a round the peer runs (no sv), or
   * the answer to a doc-sv of a round this region runs, which is answered in
   * turn. An answer nobody asked for closes the link, merging nothing.
   */
  async onDocState(frame: DocStateFrame): Promise<void> {
    const { documents } = this.port;
    let heldBack: string | undefined;
    if (frame.sv) {
      const running = this.heard(frame.round);
      const asked = running ? running.awaiting.delete(frame.doc) : this.givenUp.get(frame.round)?.awaiting.delete(frame.doc) === true;
      if (!asked) {
        this.port.fail(`doc-state rejected: round ${frame.round} did not ask about ${frame.doc}, or was answered`);
        return;
      }
      heldBack = running?.heldBackAsked.get(frame.doc);
      running?.heldBackAsked.delete(frame.doc);
    } else if (!this.rounds.has(frame.round)) {
      this.peerRoundAt = Date.now();
    }
    // Not awaited one by one: documents received together share one commit
    // (a rebuild of many documents would otherwise cost an fsync each, and a
    // receiver that slow stops reading its socket, heartbeats included).
    const applied = documents.applyState(frame.doc, frame.update, this.port.peer).then(({ refused }) => {
      // Kept serving: the document stays apart from the peer's, and says so (as a quarantined entry, it counts as held).
      if (refused !== null) this.port.refused(`doc_state_refused: ${refused}`);
      // Merged, the peer's state left the same updates held back. An empty
      // answer counts too: a peer holding nothing of the document holds
      // none of what they wait for.
      else if (heldBack !== undefined && documents.pendingMark(frame.doc) === heldBack) {
        this.port.heldBackStill?.(frame.doc, heldBack);
      }
    });
    // Kept rejected when it fails: a round's floor is adopted only once all its merges are durable (onDone).
    this.applying.set(applied, frame.update.byteLength);
    this.applyingBytes += frame.update.byteLength;
    applied.then(
      () => {
        this.applying.delete(applied);
        this.applyingBytes -= frame.update.byteLength;
      },
      (err: unknown) => this.port.fail(`doc-state rejected: ${err instanceof Error ? err.message : String(err)}`),
    );
    // Waits for the oldest merge, not this one: the link is read again as
    // soon as any commit makes room, so a long queue of merges still lets
    // the peer's frames through now and then (each one worked off counts as
    // hearing from it).
    while (this.applying.size >= MAX_APPLYING || (this.applying.size > 1 && this.applyingBytes > MAX_APPLYING_BYTES)) await this.applying.keys().next().value;
    this.docsRepaired++;
    // An answer for a round given up is merged, not answered: nothing would send it.
    if (!frame.sv || !this.rounds.has(frame.round)) return;
    await this.durable(frame.doc);
    const began = performance.now();
    const update = documents.readYjs(frame.doc, frame.sv);
    this.port.pacer?.spent(performance.now() - began);
    const answer: Frame | null = update ? { type: 'doc-state', round: frame.round, doc: frame.doc, update, sv: null } : null;
    const round = this.heard(frame.round);
    if (!round) return;
    // Queued ahead of the rest, so it leaves before this round's ae-done.
    if (answer) round.queue.pushFirst(answer);
    round.outstanding--;
    this.drive(frame.round, round);
  }

  /**
   * The peer's whole state of a document whose replicas conflict: resolve it
   * (see docs/replace.ts), and answer an offer with this region's state from
   * before, whatever the outcome, so that the peer resolves it the same way
   * and keeps the loser too.
   */
  async onDocReplace(frame: DocReplaceFrame): Promise<void> {
    // A state that replaces this region's on the rule alone is taken only as
    // the protocol asks for it: an offer after this region asked about the
    // document with its digest parts, an answer after it offered its own.
    const expected = frame.kind === 'offer'
      ? (this.rounds.get(frame.round) ?? this.givenUp.get(frame.round))?.mayOffer.delete(frame.doc) === true
      : this.offered.delete(offerKey(frame.round, frame.doc));
    if (!expected) {
      this.port.fail(`doc-replace rejected: an ${frame.kind} of ${frame.doc} in round ${frame.round}, which this region did not ask for`);
      return;
    }
    const result = await this.port.documents.replaceState(frame.doc, frame.update, this.port.peer);
    if (result.outcome !== 'unrelated') this.conflictsResolved++;
    if (frame.kind === 'offer' && result.mine) {
      await this.port.send({ type: 'doc-replace', round: frame.round, doc: frame.doc, update: result.mine, kind: 'answer' });
    }
  }

  private conflictsUnlessUnbuilt(doc: DocKey, theirs: Uint8Array): boolean {
    try {
      return this.conflicts(doc, theirs);
    } catch (err) {
      if (!(err instanceof CostlyLoad)) throw err;
      return false;
    }
  }

  /** Same structure (state vector and delete set) with other content: a conflict no diff repairs. */
  private conflicts(doc: DocKey, theirs: Uint8Array): boolean {
    const mine = this.port.documents.digestParts(doc);
    if (!mine) return false;
    const sameStructure = Buffer.from(mine.structure).equals(theirs.subarray(0, 32));
    return sameStructure && !Buffer.from(mine.content).equals(theirs.subarray(32));
  }

  private partsOf(doc: DocKey): Uint8Array | null {
    const parts = this.port.documents.digestParts(doc);
    if (!parts) return null;
    const out = new Uint8Array(DOC_PARTS_BYTES);
    out.set(parts.structure, 0);
    out.set(parts.content, 32);
    return out;
  }

  /**
   * The peer finished its round: adopt its floor. Throws {@link ProtocolError},
   * changing nothing, for a round this region did not answer or a floor
   * beyond what the peer stated it holds or this region holds of its own writer.
   */
  async onDone(frame: AeDoneFrame): Promise<void> {
    if (!this.answered.delete(frame.round)) throw new ProtocolError(`round ${frame.round} was not answered here`);
    this.checkFloor(frame.floor);
    this.peerRoundAt = 0;
    // Everything of the round must be durable first; a failed merge fails this too.
    await Promise.all([...this.applying.keys()]);
    if (frame.floor.size > 0) await this.port.documents.raiseVersion(frame.floor);
  }

  /**
   * Whether to compare a document's digest parts with those the peer sent
   * (which walks and hashes the whole document, 65 ms for 100,000 keys):
   * once a second per document at most. A peer's round asks about each
   * document once, and rounds come seconds apart; a peer asking about one
   * large document 200 times had this region walk it 200 times. A conflict
   * left unfound is found by the next round.
   */
  private comparesParts(doc: DocKey): boolean {
    const now = performance.now();
    if (now - (this.partsComparedAt.get(doc) ?? -Infinity) < MIN_ANSWER_GAP_MS) return false;
    this.partsComparedAt.delete(doc);
    this.partsComparedAt.set(doc, now);
    for (const [oldest, at] of this.partsComparedAt) {
      if (now - at < MIN_ANSWER_GAP_MS && this.partsComparedAt.size <= MAX_OFFERED) break;
      this.partsComparedAt.delete(oldest);
    }
    return true;
  }

  /**
   * Queues an answer to the peer behind the ones owed (see {@link answers});
   * a failed one closes the link. Answers whose sends do not wait (the link
   * has room) would otherwise run back to back: 208 owed to a peer that read
   * nothing, then all at once, held this region 15.7 s; timers, sockets and
   * this region's clients get their turn between them.
   */
  private answer(send: () => Promise<void>): void {
    if (this.answersOwed >= MAX_ANSWERS_OWED) throw new ProtocolError(`more than ${MAX_ANSWERS_OWED} requests unanswered: the peer asks faster than it reads`);
    this.answersOwed++;
    this.answers = this.answers.then(() => this.answerTurn()).then(send).then(
      () => void this.answersOwed--,
      (err: unknown) => {
        this.answersOwed--;
        this.port.fail(`answer failed: ${err instanceof Error ? err.message : String(err)}`);
      },
    );
  }

  /** Gives up the thread between answers once they have held it {@link YIELD_AFTER_MS} (or the pacer asks for a rest). */
  private async answerTurn(): Promise<void> {
    if (performance.now() - this.answeredSince <= YIELD_AFTER_MS && (this.port.pacer?.wait() ?? 0) === 0) return;
    await this.giveTurn(0);
    this.answeredSince = performance.now();
  }

  private noteAnswered(round: number): void {
    this.latestAnswered = round;
    this.peerRoundAt = Date.now();
    this.answered.delete(round);
    this.answered.add(round);
    for (const old of this.answered) {
      if (this.answered.size <= MAX_ANSWERED) break;
      this.answered.delete(old);
    }
  }

  /** A floor claims that the peer sent all its state up to it: bound it by what the peer can stand behind. */
  private checkFloor(floor: VersionVector): void {
    const { documents } = this.port;
    const stated = firstExcess(floor, this.port.peerStated());
    if (stated) {
      throw new ProtocolError(`floor ${stated.writer}:${stated.claimed} beyond the ${stated.bound} the peer stated it holds`);
    }
    const own = floor.get(documents.writer) ?? 0;
    const held = documents.versionVector().get(documents.writer) ?? 0;
    if (own > held) throw new ProtocolError(`floor names this region's writer at ${own}, beyond the ${held} it holds`);
  }

  private async maybeFinish(id: number, round: Round): Promise<void> {
    if (round.docsExpected === null || round.docsReceived < round.docsExpected) return;
    if (round.outstanding > 0 || round.queue.length > 0 || round.driving || this.rounds.get(id) !== round) return;
    this.rounds.delete(id);
    await this.port.send({ type: 'ae-done', round: id, floor: round.floor ?? new Map() });
    if (round.floor) this.lastFloor = { floor: round.floor, at: Date.now() };
    this.completed++;
    this.port.logger.debug({ peer: this.port.peer, ms: Date.now() - round.startedAt, leftOut: round.leftOut }, 'anti-entropy round done');
    round.done();
  }

  private abort(id: number): void {
    const round = this.rounds.get(id);
    if (!round) return;
    this.rounds.delete(id);
    // Its sets only: its queue may hold states, let go with it.
    setNewest(this.givenUp, id, { awaiting: round.awaiting, mayOffer: round.mayOffer }, MAX_GIVEN_UP);
    round.done();
  }

  /**
   * This region's documents in the given buckets, with their digests. Every
   * summary is read (a bucket is a hash of the key), so in pages, each one
   * a paced turn: a region rebuilt from this one differs in every bucket.
   */
  private async docsIn(buckets: number[]): Promise<Map<number, Map<DocKey, Uint8Array>>> {
    const wanted = new Set(buckets);
    const out = new Map<number, Map<DocKey, Uint8Array>>();
    if (wanted.size === 0) return out;
    if (wanted.size <= MOST_BUCKETS_READ_ONE_BY_ONE) {
      let began = performance.now();
      for (const bucket of wanted) {
        out.set(bucket, new Map(this.port.store.bucketSummaries(bucket).map((s) => [s.doc, s.digest])));
        if (performance.now() - began > YIELD_AFTER_MS) {
          await this.giveTurn(performance.now() - began);
          began = performance.now();
        }
      }
      this.port.pacer?.spent(performance.now() - began);
      return out;
    }
    // Most buckets differ (a region rebuilt or long cut off): one pass over every document reads less.
    let after: DocKey | null = null;
    for (;;) {
      const began = performance.now();
      const page: DocSummary[] = this.port.store.docSummaries(after, SUMMARY_PAGE);
      for (const s of page) {
        const b = bucketOf(s.doc);
        if (!wanted.has(b)) continue;
        let docs = out.get(b);
        if (!docs) out.set(b, (docs = new Map()));
        docs.set(s.doc, s.digest);
      }
      if (page.length < SUMMARY_PAGE) {
        this.port.pacer?.spent(performance.now() - began);
        return out;
      }
      after = page[page.length - 1]!.doc;
      await this.giveTurn(performance.now() - began);
    }
  }
}

function differingBuckets(a: Uint8Array[], b: Uint8Array[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < BUCKETS; i++) {
    const x = a[i];
    const y = b[i];
    if (!x || !y || !Buffer.from(x).equals(Buffer.from(y))) out.push(i);
  }
  return out;
}

function offerKey(round: number, doc: DocKey): string {
  return `${round}\0${doc}`;
}
