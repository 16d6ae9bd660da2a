/**
 * Anti-entropy rounds between two in-process regions (real stores and write
 * paths) whose sessions exchange encoded frames in memory, so a test can act
 * between two frames of a round.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { BUCKETS, bucketOf } from '../src/buckets.js';
import { createDocuments } from '../src/docs/documents.js';
import type { Documents } from '../src/docs/types.js';
import { docKey, type DocKey, type RegionId, type VersionVector, type WriterId } from '../src/ids.js';
import { FRAME_MAGIC, MAX_LINKS, MSG_PING, PROTOCOL_VERSION, decodeFrame, encodeFrame, type Frame } from '../src/replication/protocol.js';
import * as encoding from 'lib0/encoding';
import { Session } from '../src/replication/session.js';
import Database from 'better-sqlite3';
import { DB_FILE, openStore } from '../src/storage/sqlite.js';
import type { Store } from '../src/storage/types.js';
import { BackgroundPacer } from '../src/pacer.js';
import { MAX_WRITERS, MAX_WRITERS_FROM_PEERS } from '../src/vv.js';
import * as Y from 'yjs';

const logger = pino({ level: 'silent' });
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

interface Region {
  name: RegionId;
  docs: Documents;
  store: Store;
  dir: string;
}

/** The compiled writer thread (the test setup builds dist/ before the tests). */
const WRITER_THREAD = resolve('dist/src/storage/writer-thread.js');

function region(name: string, writerThread = false): Region {
  const dir = mkdtempSync(join(tmpdir(), 'meridian-ae-'));
  const store = openStore({ dataDir: dir, region: name as RegionId, synchronous: 'normal', writerThread, writerThreadFile: WRITER_THREAD, logger });
  const docs = createDocuments({ store, logger, cacheDocs: 100, yjsUpdateBytes: 1 << 20, compactIntervalMs: 0 });
  cleanups.push(async () => {
    await docs.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { name: name as RegionId, docs, store, dir };
}

/** Called before a frame is delivered; returning false drops it. */
type Hook = (frame: Frame, to: RegionId) => Promise<boolean> | boolean;

/** Two sessions joined by in-order, in-memory delivery of encoded frames; `pacer` paces a's side only, as `maxAskedPerRound` bounds it. */
function join2(
  a: Region, b: Region, hook: Hook = () => true, pacer?: BackgroundPacer, rejected?: (reason: string) => void, maxAskedPerRound?: number,
): { sa: Session; sb: Session } {
  const sessions = new Map<RegionId, Session>();
  const outbox = (to: Region) => {
    let chain = Promise.resolve();
    return (bytes: Uint8Array) => {
      const copy = Uint8Array.from(bytes);
      chain = chain.then(async () => {
        await new Promise((r) => setImmediate(r));
        if (await hook(decodeFrame(copy, 1 << 24), to.name)) sessions.get(to.name)!.receive(copy);
      });
    };
  };
  const session = (me: Region, peer: Region) => {
    const noop = (): void => undefined;
    return new Session({
      peer: peer.name, documents: me.docs, store: me.store, logger,
      transport: { send: outbox(peer), buffered: () => 0, close: noop, pause: noop, resume: noop },
      batchBytes: 64 * 1024, maxBufferedBytes: 1 << 20, maxFrameBytes: 1 << 24,
      onPeerRestarted: noop, onHeard: noop, onPong: noop, onAck: noop, leavesCatchUp: () => false,
      onRejected: (reason) => {
        if (rejected) return rejected(reason);
        throw new Error(`frame rejected: ${reason}`);
      },
      ...(pacer && me === a ? { pacer } : {}),
      ...(maxAskedPerRound && me === a ? { maxAskedPerRound } : {}),
    });
  };
  const sa = session(a, b);
  const sb = session(b, a);
  sessions.set(a.name, sa);
  sessions.set(b.name, sb);
  cleanups.unshift(async () => {
    sa.close();
    sb.close();
  });
  return { sa, sb };
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    p,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms)),
  ]);
}

/** A document key whose digest bucket differs from every bucket in `taken`. */
function keyOutside(taken: DocKey[], prefix: string): DocKey {
  const used = new Set(taken.map(bucketOf));
  for (let i = 0; ; i++) {
    const key = docKey('ae', `${prefix}-${i}`);
    if (!used.has(bucketOf(key))) return key;
  }
}

describe('anti-entropy rounds', () => {
  it('finish and repair both sides when the initiator writes while its round is in flight', async () => {
    const a = region('ap-south');
    const b = region('eu-west');
    const onlyA = docKey('ae', 'only-a');
    const onlyB = keyOutside([onlyA], 'only-b');
    const late = keyOutside([onlyA, onlyB], 'late');
    await a.docs.put(onlyA, { from: 'a' });
    await b.docs.put(onlyB, { from: 'b' });

    // Just before the peer's answer reaches the initiator, the initiator
    // writes a document in a bucket where both regions agreed when the round began.
    let wrote = false;
    const { sa } = join2(a, b, async (frame, to) => {
      if (frame.type === 'ae-buckets' && to === a.name && !wrote) {
        wrote = true;
        await a.docs.put(late, { written: 'during the round' });
      }
      return true;
    });
    await within(sa.ae.start(), 5000, 'the anti-entropy round');
    expect(wrote).toBe(true);
    // Merges commit in the background; the peer applies after the frames arrive.
    await expect.poll(() => a.docs.read(onlyB).value).toEqual({ from: 'b' });
    await expect.poll(() => b.docs.read(onlyA).value).toEqual({ from: 'a' });
    // The late write was not part of the round; the next one carries it.
    await within(sa.ae.start(), 5000, 'the second round');
    await expect.poll(() => b.docs.read(late).value).toEqual({ written: 'during the round' });
    await expect.poll(() => b.docs.digests.regionDigest()).toBe(a.docs.digests.regionDigest());
  });

  it('rebuild an empty region of more documents than one page of summaries, paced while clients write', async () => {
    const a = region('ap-south');
    const b = region('eu-west');
    const keys = Array.from({ length: 1200 }, (_, i) => docKey('ae', `many-${i}`));
    await Promise.all(keys.map((key, i) => a.docs.put(key, { i })));
    const pacer = new BackgroundPacer();
    const writing = setInterval(() => pacer.clientWrote(), 20);
    try {
      const { sa } = join2(a, b, () => true, pacer);
      await within(sa.ae.start(), 30_000, 'the paced round');
    } finally {
      clearInterval(writing);
    }
    // The floor commit on b's writer thread: on a loaded machine that takes more than poll's default second.
    await expect.poll(() => b.docs.versionVector(), { timeout: 15_000 }).toEqual(a.docs.versionVector());
    for (const [i, key] of keys.entries()) expect(b.docs.read(key).value).toEqual({ i });
  });

  it('ask for at most their bound of documents the peer lists that this region lacks, and the next rounds for the rest', async () => {
    const a = region('ap-south');
    const b = region('eu-west');
    const keys = Array.from({ length: 30 }, (_, i) => docKey('ae', `listed-${i}`));
    await Promise.all(keys.map((key, i) => b.docs.put(key, { i })));
    const asked = (): number => keys.filter((key) => a.docs.read(key).value !== null).length;
    const { sa } = join2(a, b, () => true, undefined, undefined, 12);
    await within(sa.ae.start(), 10_000, 'the first round');
    await expect.poll(asked).toBe(12);
    await within(sa.ae.start(), 10_000, 'the second round');
    await within(sa.ae.start(), 10_000, 'the third round');
    await expect.poll(asked).toBe(30);
    await expect.poll(() => a.docs.digests.regionDigest()).toBe(b.docs.digests.regionDigest());
  });

  it('keeps a round that is streaming states, though the peer says nothing back meanwhile', async () => {
    const a = region('ap-south');
    const b = region('eu-west');
    // In a few buckets: the listing and its answers stay short, the states are many.
    const keys: DocKey[] = [];
    for (let i = 0; keys.length < 3000; i++) {
      const key = docKey('ae', `stream-${i}`);
      if (bucketOf(key) < 4) keys.push(key);
    }
    await Promise.all(keys.map((key, i) => a.docs.put(key, { i })));
    // Clients write: the states go out in paced turns, for longer than the idle bound below.
    const pacer = new BackgroundPacer();
    const busy = setInterval(() => pacer.clientWrote(), 10);
    let finished = false;
    try {
      const { sa } = join2(a, b, () => true, pacer);
      const round = sa.ae.start().then(() => (finished = true));
      const began = Date.now();
      while (!finished && Date.now() - began < 5000) {
        // Paced turns leave gaps of about 50 ms; 500 leaves room for a loaded machine's stalls.
        sa.ae.abortIdle(Date.now(), 500);
        await new Promise((r) => setTimeout(r, 50));
      }
      await within(round, 30_000, 'the streaming round');
      expect(sa.ae.completed).toBe(1);
    } finally {
      clearInterval(busy);
    }
    // 3,000 states and the floor commit on b's writer thread: on a loaded machine that takes more than poll's default second.
    await expect.poll(() => b.docs.versionVector(), { timeout: 15_000 }).toEqual(a.docs.versionVector());
    for (const [i, key] of keys.entries()) expect(b.docs.read(key).value).toEqual({ i });
  });

  it('abandons a round whose answers never come, so later rounds can run', async () => {
    const a = region('ap-south');
    const b = region('eu-west');
    await a.docs.put(docKey('ae', 'x'), { v: 1 });
    // Nothing reaches the initiator.
    const { sa } = join2(a, b, (_frame, to) => to !== a.name);
    const round = sa.ae.start();
    await new Promise((r) => setTimeout(r, 50));
    expect(sa.ae.running).toBe(true);
    sa.ae.abortIdle(Date.now() + 1000, 10_000);
    expect(sa.ae.running).toBe(true);
    sa.ae.abortIdle(Date.now() + 20_000, 10_000);
    expect(sa.ae.running).toBe(false);
    await within(round, 1000, 'the abandoned round');
  });
});

/** One session of `me` whose peer is played by the test: frames in by hand, frames out and closes recorded. */
function lone(me: Region, peer: RegionId) {
  const sent: Frame[] = [];
  const closes: { code: number; reason: string }[] = [];
  const acks: VersionVector[] = [];
  const noop = (): void => undefined;
  const session = new Session({
    peer, documents: me.docs, store: me.store, logger,
    transport: {
      send: (bytes) => sent.push(decodeFrame(bytes, 1 << 24)), buffered: () => 0,
      close: (code, reason) => closes.push({ code, reason }), pause: noop, resume: noop,
    },
    batchBytes: 64 * 1024, maxBufferedBytes: 1 << 20, maxFrameBytes: 1 << 24,
    onPeerRestarted: noop, onHeard: noop, onPong: noop, onAck: (vv) => acks.push(vv), leavesCatchUp: () => false,
    onRejected: noop,
  });
  cleanups.unshift(async () => session.close());
  const deliver = async (frame: Frame): Promise<void> => {
    session.receive(encodeFrame(frame));
    // Frames are handled in order on later turns; a doc-sv is answered after everything before it.
    const answered = sent.length;
    session.receive(encodeFrame({ type: 'doc-sv', round: 1, doc: docKey('ae', 'barrier'), sv: new Uint8Array([0]), parts: null }));
    await expect.poll(() => closes.length > 0 || sent.slice(answered).some((f) => f.type === 'doc-state')).toBe(true);
  };
  return { session, sent, closes, acks, deliver };
}

/** The length of the text `body` of a document's state, or null for none. */
function textLength(state: Uint8Array | null): number | null {
  if (!state) return null;
  const doc = new Y.Doc();
  Y.applyUpdate(doc, state);
  return doc.getText('body').length;
}

/** `n` writer ids of a region that never wrote them, from `from` on. */
function madeUpWriters(n: number, from = 0): WriterId[] {
  return Array.from({ length: n }, (_, i) => `us-east~${(from + i).toString(16)}` as WriterId);
}

describe('writers a peer names', () => {
  it('refuse, changing nothing, a vector naming something that is not a writer id', async () => {
    const b = region('eu-west');
    await b.docs.put(docKey('ae', 'x'), { v: 1 });
    const before = b.docs.versionVector();
    for (const writer of ['us-east~forged', 'us-east', 'US-EAST~01', `${'a'.repeat(40)}~01`]) {
      const { closes, deliver } = lone(b, 'ap-south' as RegionId);
      await deliver({ type: 'sync-request', vv: new Map() });
      await deliver({ type: 'ack', vv: new Map([[writer as WriterId, 1]]) });
      expect(closes).toEqual([{ code: 4400, reason: expect.stringMatching(/is not a writer id/) }]);
    }
    expect(b.docs.versionVector()).toEqual(before);
  });

  it('refuse statements that would have the peer hold more writers than a version vector may name', async () => {
    const b = region('eu-west');
    const { closes, deliver } = lone(b, 'ap-south' as RegionId);
    await deliver({ type: 'sync-request', vv: new Map() });
    await deliver({ type: 'ack', vv: new Map(madeUpWriters(MAX_WRITERS - 1).map((w) => [w, 1])) });
    expect(closes).toEqual([]);
    // Each statement within the bound, together beyond it: ack, then ping.
    await deliver({ type: 'ack', vv: new Map([[madeUpWriters(1, MAX_WRITERS)[0]!, 1]]) });
    expect(closes).toEqual([]);
    await deliver({ type: 'ping', id: 1, sentAt: 0, vv: new Map([[madeUpWriters(1, MAX_WRITERS + 1)[0]!, 1]]), links: [], lagMs: 0 });
    expect(closes).toEqual([{ code: 4400, reason: expect.stringMatching(new RegExp(`ping states ${MAX_WRITERS + 1} writers in all`)) }]);
  });

  it('refuse a floor that would take this region past the writers a version vector may name, changing nothing', async () => {
    const b = region('eu-west');
    await b.docs.put(docKey('ae', 'x'), { v: 1 });
    const before = b.docs.versionVector();
    // With its own writer, one more than it takes from peers (the rest stays for its own later incarnations).
    const floor = new Map(madeUpWriters(MAX_WRITERS_FROM_PEERS).map((w) => [w, 1]));
    const { closes, deliver } = lone(b, 'ap-south' as RegionId);
    await deliver({ type: 'sync-request', vv: new Map() });
    await deliver({ type: 'ack', vv: floor });
    await deliver({ type: 'ae-buckets', round: 5, buckets: [] });
    await deliver({ type: 'ae-done', round: 5, floor });
    expect(closes).toEqual([{ code: 4400, reason: expect.stringMatching(/ae-done rejected: a floor names 4080 writers this region has not seen, beyond the 4080 it takes from peers/) }]);
    expect(b.docs.versionVector()).toEqual(before);
    expect(b.store.versionVector()).toEqual(before);
  });

  it('refuse entries from more new writers than this region may hold, applying none of them', async () => {
    const b = region('eu-west');
    await b.docs.put(docKey('ae', 'x'), { v: 1 });
    const before = b.docs.versionVector();
    const y = new Y.Doc();
    y.getMap('m').set('k', 1);
    const update = Y.encodeStateAsUpdate(y);
    const entries = madeUpWriters(MAX_WRITERS_FROM_PEERS).map((origin) => ({ origin, seq: 1, doc: docKey('ae', 'made-up'), ts: 1, update }));
    const { closes, deliver } = lone(b, 'ap-south' as RegionId);
    await deliver({ type: 'sync-request', vv: new Map() });
    await deliver({ type: 'entries', entries });
    // Entries are handed on at once and refused once staged: the barrier may be answered first.
    await expect.poll(() => closes).toEqual([{ code: 4400, reason: expect.stringMatching(/entries rejected: entries from 4080 writers this region has not seen/) }]);
    expect(b.docs.versionVector()).toEqual(before);
    expect(b.docs.read(docKey('ae', 'made-up')).value).toBeNull();
  });

  it('refuse a heartbeat reporting more links than a region has peers, before handling it', async () => {
    const b = region('eu-west');
    const { closes, deliver, session } = lone(b, 'ap-south' as RegionId);
    await deliver({ type: 'sync-request', vv: new Map() });
    const links = Array.from({ length: MAX_LINKS }, (_, i) => ({ region: `r${i}` as RegionId, state: 'up' as const }));
    await deliver({ type: 'ping', id: 1, sentAt: 0, vv: new Map(), links, lagMs: 0 });
    expect(closes).toEqual([]);
    // Written by hand: the encoder refuses to write one link more.
    const e = encoding.createEncoder();
    for (const byte of [FRAME_MAGIC, PROTOCOL_VERSION, MSG_PING]) encoding.writeUint8(e, byte);
    encoding.writeVarUint(e, 2);
    encoding.writeFloat64(e, 0);
    encoding.writeVarUint(e, 0);
    encoding.writeVarUint(e, MAX_LINKS + 1);
    for (let i = 0; i <= MAX_LINKS; i++) {
      encoding.writeVarString(e, `r${i}`);
      encoding.writeUint8(e, 0);
    }
    encoding.writeFloat64(e, 0);
    encoding.writeUint8(e, 0);
    session.receive(encoding.toUint8Array(e));
    expect(closes).toEqual([{ code: 4400, reason: expect.stringMatching(/links: .*out of range|links/) }]);
  });
});

describe('rounds a peer starts', () => {
  it('are answered once a second at most; rounds started meanwhile are given up for the latest', async () => {
    const b = region('eu-west');
    await b.docs.put(docKey('ae', 'x'), { v: 1 });
    const { session, sent, closes, deliver } = lone(b, 'ap-south' as RegionId);
    await deliver({ type: 'sync-request', vv: new Map() });
    const answers = () => sent.filter((f): f is Extract<Frame, { type: 'ae-buckets' }> => f.type === 'ae-buckets').map((f) => f.round);
    const started = performance.now();
    session.receive(encodeFrame({ type: 'ae-buckets', round: 10, buckets: [] }));
    await expect.poll(answers).toEqual([10]);
    for (const round of [11, 12, 13]) session.receive(encodeFrame({ type: 'ae-buckets', round, buckets: [] }));
    await expect.poll(answers, { timeout: 5000 }).toEqual([10, 13]);
    expect(performance.now() - started).toBeGreaterThanOrEqual(950);
    expect(closes).toEqual([]);
  });
});

describe('the lists of a round this region runs', () => {
  /** A round started by `b`, answered by the peer with digests that differ in buckets 0 and 1. */
  async function roundDifferingIn0And1() {
    const b = region('eu-west');
    await b.docs.put(docKey('ae', 'x'), { v: 1 });
    const lonely = lone(b, 'ap-south' as RegionId);
    await lonely.deliver({ type: 'sync-request', vv: new Map() });
    void lonely.session.ae.start();
    await expect.poll(() => lonely.sent.some((f) => f.type === 'ae-buckets')).toBe(true);
    const ours = lonely.sent.find((f): f is Extract<Frame, { type: 'ae-buckets' }> => f.type === 'ae-buckets')!;
    const theirs = ours.buckets.map((d, i) => (i <= 1 ? d.map((x) => x ^ 0xff) : d));
    expect(theirs).toHaveLength(BUCKETS);
    await lonely.deliver({ type: 'ae-buckets', round: ours.round, buckets: theirs });
    return { ...lonely, b, round: ours.round };
  }
  const inBucket = (bucket: number, prefix: string): DocKey => {
    for (let i = 0; ; i++) if (bucketOf(docKey('ae', `${prefix}-${i}`)) === bucket) return docKey('ae', `${prefix}-${i}`);
  };
  const digest = new Uint8Array(32).fill(7);

  it('refuse a bucket the round does not wait for, a bucket listed twice, and a document listed under another bucket', async () => {
    const cases: { frames: (round: number) => Frame[]; reason: RegExp }[] = [
      { frames: (round) => [{ type: 'ae-docs', round, bucket: 2, docs: [] }], reason: /ae-docs for bucket 2, which round \d+ does not wait for/ },
      {
        frames: (round) => [{ type: 'ae-docs', round, bucket: 0, docs: [] }, { type: 'ae-docs', round, bucket: 0, docs: [{ doc: inBucket(0, 'again'), digest }] }],
        reason: /ae-docs for bucket 0, which round \d+ does not wait for/,
      },
      { frames: (round) => [{ type: 'ae-docs', round, bucket: 0, docs: [{ doc: inBucket(3, 'elsewhere'), digest }] }], reason: /lists a document of bucket 3/ },
    ];
    for (const c of cases) {
      const { closes, deliver, round, b } = await roundDifferingIn0And1();
      const before = b.docs.versionVector();
      for (const frame of c.frames(round)) if (closes.length === 0) await deliver(frame);
      expect(closes).toEqual([{ code: 4400, reason: expect.stringMatching(c.reason) }]);
      expect(b.docs.versionVector()).toEqual(before);
    }
  });
});

describe('floors and acknowledgements from a peer', () => {
  it('adopt the floor of a round that rebuilds an empty region, third writers included', async () => {
    const a = region('ap-south');
    const b = region('eu-west');
    const c = region('us-east');
    await c.docs.put(docKey('ae', 'from-c'), { by: 'c' });
    await a.docs.applyRemote(c.store.readLog(0, 100), c.name);
    await a.docs.put(docKey('ae', 'from-a'), { by: 'a' });
    // Neither side has sent a sync request or a ping: the floor must be stated within the round.
    const { sa } = join2(a, b);
    await within(sa.ae.start(), 5000, 'the rebuilding round');
    await expect.poll(() => b.docs.versionVector()).toEqual(a.docs.versionVector());
    // Stored too: a restart starts from the same version.
    expect(b.store.versionVector()).toEqual(b.docs.versionVector());
    expect(b.docs.read(docKey('ae', 'from-c')).value).toEqual({ by: 'c' });
  });

  it('adopt no floor from a round one of whose states failed to merge', async () => {
    const a = region('ap-south');
    const b = region('eu-west');
    const failing = docKey('ae', 'd3');
    for (let i = 0; i < 6; i++) await a.docs.put(docKey('ae', `d${i}`), { i });
    // b's write path fails one merge (a commit its store refused, say).
    const merge = b.docs.applyState.bind(b.docs);
    // It fails late, as a commit does: after the round's ae-done has arrived.
    const late = (): Promise<never> => new Promise((_, reject) => setTimeout(() => reject(new Error('the disk is full')), 300));
    b.docs.applyState = (doc, update, from) => (doc === failing ? late() : merge(doc, update, from));
    const reasons: string[] = [];
    const { sa } = join2(a, b, () => true, undefined, (reason) => void reasons.push(reason));
    void sa.ae.start();
    await expect.poll(() => reasons.join()).toMatch(/doc-state rejected: the disk is full/);
    // The link is closing; nothing claims b holds what the failed state carried.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(b.docs.versionVector().get(a.docs.writer) ?? 0).toBe(0);
  });

  it('read no further states from a peer while those waiting to merge hold 64 MiB, and merge them all once they commit', async () => {
    const b = region('eu-west');
    // b's merges wait until released (a slow disk, say), counting each one started.
    const merge = b.docs.applyState.bind(b.docs);
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let started = 0;
    b.docs.applyState = async (doc, update, from) => {
      started++;
      await released;
      return merge(doc, update, from);
    };
    const { session, closes } = lone(b, 'ap-south' as RegionId);
    session.receive(encodeFrame({ type: 'sync-request', vv: new Map() }));
    // Six states of 13 MiB each, each under a frame: the fifth takes those waiting past 64 MiB.
    const size = 13 * 1024 * 1024;
    const states = Array.from({ length: 6 }, (_, i) => {
      const doc = new Y.Doc();
      doc.getText('body').insert(0, String(i).repeat(size));
      return Y.encodeStateAsUpdate(doc);
    });
    for (const [i, update] of states.entries()) session.receive(encodeFrame({ type: 'doc-state', round: 3, doc: docKey('ae', `big-${i}`), update, sv: null }));
    await expect.poll(() => started).toBe(5);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(started).toBe(5);
    release();
    await expect.poll(() => started).toBe(6);
    for (let i = 0; i < 6; i++) {
      await expect.poll(() => textLength(b.docs.readYjs(docKey('ae', `big-${i}`))), { timeout: 15_000 }).toBe(size);
    }
    expect(closes).toEqual([]);
  }, 60_000);

  it('start no catch-up by state beside one still running, however often the peer asks', async () => {
    const b = region('eu-west');
    const c = region('us-east');
    // b holds c's writes by state only (a round rebuilt it): a peer that lacks them is caught up by state.
    for (let i = 0; i < 3; i++) await c.docs.put(docKey('ae', `c${i}`), { i });
    const { sa: fromC } = join2(c, b);
    await within(fromC.ae.start(), 5000, 'the round that gives b c\'s writes');
    await expect.poll(() => b.docs.versionVector().get(c.docs.writer)).toBe(3);
    expect(b.store.hasEntry(c.docs.writer, 1)).toBe(false);

    // A peer that never answers: the round b starts toward it stays running.
    const { sent, closes, deliver } = lone(b, 'ap-south' as RegionId);
    const roundsStarted = () => new Set(sent.filter((f) => f.type === 'ae-buckets').map((f) => (f as { round: number }).round)).size;
    await deliver({ type: 'sync-request', vv: new Map() });
    await expect.poll(() => roundsStarted()).toBe(1);
    // Past the 2 s between catch-ups, the peer asks again (as it would on every redial).
    await new Promise((resolve) => setTimeout(resolve, 2200));
    await deliver({ type: 'sync-request', vv: new Map() });
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(roundsStarted()).toBe(1);
    expect(closes).toEqual([]);
  }, 20_000);

  it('leave a peer to apply a round: none starts toward it again before it states the round\'s floor', async () => {
    const a = region('ap-south');
    const b = region('eu-west');
    for (let i = 0; i < 20; i++) await a.docs.put(docKey('ae', `d${i}`), { i });
    // What b states it holds (its acknowledgements) reaches a only once released.
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const { sa } = join2(a, b, async (frame, to) => {
      if (to === a.name && frame.type === 'ack') await released;
      return true;
    });
    await within(sa.ae.start(), 5000, 'the round');
    await expect.poll(() => b.docs.versionVector()).toEqual(a.docs.versionVector());
    expect(sa.peerApplyingRound()).toBe(true);
    release();
    await expect.poll(() => sa.peerApplyingRound()).toBe(false);
  });

  it('refuse, changing nothing, a floor for a round not answered, beyond what the peer stated, or beyond this region', async () => {
    const b = region('eu-west');
    await b.docs.put(docKey('ae', 'x'), { v: 1 });
    const before = b.docs.versionVector();
    const other = 'us-east~f0f0ed' as WriterId;
    const cases: { floor: VersionVector; answer: boolean; stated: VersionVector; reason: RegExp }[] = [
      { floor: new Map([[other, 5]]), answer: false, stated: new Map([[other, 5]]), reason: /not answered/ },
      { floor: new Map([[other, 6]]), answer: true, stated: new Map([[other, 5]]), reason: /beyond the 5 the peer stated/ },
      { floor: new Map([[b.docs.writer, 9]]), answer: true, stated: new Map([[b.docs.writer, 9]]), reason: /ack claims 9 of this region's writer/ },
    ];
    for (const c of cases) {
      const { closes, deliver } = lone(b, 'ap-south' as RegionId);
      await deliver({ type: 'sync-request', vv: new Map() });
      await deliver({ type: 'ack', vv: c.stated });
      if (c.answer) await deliver({ type: 'ae-buckets', round: 7, buckets: [] });
      if (closes.length === 0) await deliver({ type: 'ae-done', round: 7, floor: c.floor });
      expect(closes).toEqual([{ code: 4400, reason: expect.stringMatching(c.reason) }]);
      expect(b.docs.versionVector()).toEqual(before);
    }
  });

  it('refuse a floor naming this region beyond what it holds, even one the peer stated', async () => {
    const b = region('eu-west');
    await b.docs.put(docKey('ae', 'x'), { v: 1 });
    const before = b.docs.versionVector();
    const { closes, deliver } = lone(b, 'ap-south' as RegionId);
    // The restore path: a sync request may say it holds more of this writer, once. The
    // replicator then changes writer (not wired here); the floor must still not raise it.
    await deliver({ type: 'sync-request', vv: new Map([[b.docs.writer, 5]]) });
    await deliver({ type: 'ae-buckets', round: 3, buckets: [] });
    await deliver({ type: 'ae-done', round: 3, floor: new Map([[b.docs.writer, 2]]) });
    expect(closes[0]?.reason).toMatch(/floor names this region's writer at 2, beyond the 1 it holds/);
    expect(b.docs.versionVector()).toEqual(before);
  });

  it('record acknowledgements only up to what this region holds', async () => {
    const b = region('eu-west');
    await b.docs.put(docKey('ae', 'x'), { v: 1 });
    const mine = b.docs.writer;
    const { closes, acks, deliver } = lone(b, 'ap-south' as RegionId);
    await deliver({ type: 'sync-request', vv: new Map() });
    await deliver({ type: 'ack', vv: new Map([[mine, 1], ['us-east~a4ead' as WriterId, 40]]) });
    expect(closes).toEqual([]);
    expect(acks.at(-1)).toEqual(new Map([[mine, 1]]));
    await deliver({ type: 'ack', vv: new Map([[mine, 2]]) });
    expect(closes).toEqual([{ code: 4400, reason: expect.stringMatching(/ack claims 2 of this region's writer, which holds 1/) }]);
  });

  it('are not sent back: entries a peer sent are never streamed to it, and their duplicates change nothing', async () => {
    const a = region('ap-south');
    const b = region('eu-west');
    await a.docs.put(docKey('ae', 'from-a'), { by: 'a' });
    const { session, sent, closes, deliver } = lone(b, a.name);
    await deliver({ type: 'sync-request', vv: new Map() });
    const fromA = a.store.readLog(0, 10).map(({ lsn: _lsn, ...e }) => e);
    await deliver({ type: 'entries', entries: fromA });
    expect(b.docs.read(docKey('ae', 'from-a')).value).toEqual({ by: 'a' });
    session.wake(b.store.readLog(0, 10));
    session.wake();
    expect(sent.filter((f) => f.type === 'entries')).toEqual([]);
    // The same entries again (by another path): nothing to store, nothing sent.
    const stored = b.store.readLog(0, 10).length;
    await deliver({ type: 'entries', entries: fromA });
    session.wake();
    expect(b.store.readLog(0, 10).length).toBe(stored);
    expect(sent.filter((f) => f.type === 'entries')).toEqual([]);
    expect(closes).toEqual([]);
  });

  it('are never provoked by this region: a commit readable in the log is sent only once it counts as held', async () => {
    const b = region('eu-west', true);
    await b.docs.put(docKey('ae', 'x'), { v: 1 });
    const { session, sent, closes, deliver } = lone(b, 'ap-south' as RegionId);
    await deliver({ type: 'sync-request', vv: new Map() });
    const sentEntries = () => sent.flatMap((f) => (f.type === 'entries' ? f.entries.map((e) => e.seq) : []));
    expect(sentEntries()).toEqual([1]);
    // Another connection holds the write lock: the commit reaches the writer
    // thread and waits there.
    const blocker = new Database(join(b.dir, DB_FILE));
    blocker.exec('BEGIN IMMEDIATE');
    const written = b.docs.put(docKey('ae', 'y'), { v: 2 });
    await new Promise((r) => setTimeout(r, 100));
    expect(b.store.readLog(0, 10).length).toBe(1);
    // Released, it commits; this thread does not yield until the commit is
    // readable, so the region has not yet counted it as held.
    blocker.exec('COMMIT');
    blocker.close();
    const until = performance.now() + 5000;
    while (b.store.readLog(0, 10).length < 2 && performance.now() < until) { /* the commit is on another thread */ }
    expect(b.store.readLog(0, 10).length).toBe(2);
    expect(b.docs.versionVector().get(b.docs.writer)).toBe(1);
    session.wake();
    expect(sentEntries()).toEqual([1]);
    await written;
    session.wake(); // as the replicator does on every commit
    expect(sentEntries()).toEqual([1, 2]);
    // A peer that holds what it was sent claims no more than this region holds.
    await deliver({ type: 'ack', vv: new Map([[b.docs.writer, 2]]) });
    expect(closes).toEqual([]);
  });
});

describe('the window of unacknowledged entries', () => {
  it('holds a backlog in the log until the peer acknowledges what it was sent, then sends the rest', async () => {
    const a = region('ap-south');
    const value = 'x'.repeat(4000);
    for (let i = 0; i < 300; i++) await a.docs.put(docKey('w', `d${i}`), { value });
    const { sent, closes, deliver } = lone(a, 'eu-west' as RegionId);
    const entries = () => sent.flatMap((f) => (f.type === 'entries' ? f.entries : []));
    const bytes = () => entries().reduce((n, e) => n + e.update.byteLength + 64, 0);
    await deliver({ type: 'sync-request', vv: new Map() });
    await new Promise((r) => setTimeout(r, 200));
    // About 1.2 MB lacked: at most the 512 KiB window and the frame that crossed it are out.
    expect(bytes()).toBeGreaterThan(256 * 1024);
    expect(bytes()).toBeLessThanOrEqual(512 * 1024 + 64 * 1024 + 8 * 1024);
    expect(entries().length).toBeLessThan(300);
    // The peer acknowledges what it got: the window opens and the rest follows, once each.
    for (let round = 0; round < 10 && entries().length < 300; round++) {
      await deliver({ type: 'ack', vv: new Map([[a.docs.writer, Math.max(...entries().map((e) => e.seq))]]) });
    }
    expect(entries().map((e) => e.seq)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    expect(closes).toEqual([]);
  });

  it('cannot be stopped by a peer that never acknowledges: after 10 s without one, the rest is sent', async () => {
    const a = region('ap-south');
    const value = 'x'.repeat(4000);
    // About 640 KB: more than the 512 KiB window of unacknowledged entries.
    for (let i = 0; i < 160; i++) await a.docs.put(docKey('w', `d${i}`), { value });
    const { sent, closes, deliver } = lone(a, 'eu-west' as RegionId);
    const seqs = () => sent.flatMap((f) => (f.type === 'entries' ? f.entries.map((e) => e.seq) : []));
    await deliver({ type: 'sync-request', vv: new Map() });
    // The peer pings (stating it holds nothing) and never acknowledges.
    const ping = (id: number) => deliver({ type: 'ping', id, sentAt: performance.now(), vv: new Map(), links: [], lagMs: 0 });
    await ping(1);
    await new Promise((r) => setTimeout(r, 200));
    const held = seqs().length;
    expect(held).toBeLessThan(160);
    await new Promise((r) => setTimeout(r, 5000));
    await ping(2);
    expect(seqs().length).toBe(held);
    await new Promise((r) => setTimeout(r, 5500));
    // The stalled window is let go at the next heartbeat.
    await ping(3);
    await expect.poll(() => seqs().length).toBe(160);
    expect(seqs()).toEqual(Array.from({ length: 160 }, (_, i) => i + 1));
    expect(closes).toEqual([]);
  }, 30_000);
});
