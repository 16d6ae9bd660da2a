/**
 * Frames from a buggy or hostile peer that holds the cluster secret, each
 * cheap to send and costly to take: answers to requests this region never
 * made, lists of millions of items, heartbeats far over their rate, error
 * frames by the thousand. Each must be refused clearly (the link closed with
 * 4400 and a reason, or the frame counted), change nothing, and cost no
 * more than its bound.
 *
 * Most cases drive a real region's session (its store and write path) with
 * encoded frames in memory, so that a test can act between two frames of a
 * round; the last ones go through a real WebSocket to a region process.
 */
import * as encoding from 'lib0/encoding';
import * as decoding from 'lib0/decoding';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import Database from 'better-sqlite3';
import { pino, type Logger } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { bucketOf } from '../src/buckets.js';
import { createDocuments } from '../src/docs/documents.js';
import type { Documents } from '../src/docs/types.js';
import { docKey, type DocKey, type RegionId, type VersionVector, type WriterId } from '../src/ids.js';
import {
  MAX_AE_DOCS, MAX_ENTRIES_PER_FRAME, MSG_AE_DOCS, MSG_ENTRIES, MSG_PING,
  decodeFrame, encodeFrame, type Frame,
} from '../src/replication/protocol.js';
import { Session } from '../src/replication/session.js';
import { openStore } from '../src/storage/sqlite.js';
import type { Store } from '../src/storage/types.js';
import { http, startTestCluster, syncStatus, waitForConvergence } from './helpers/cluster.js';
import { ImpostorLink } from './helpers/impostor.js';
import { rawFrame } from './helpers/raw-frame.js';

const PEER = 'ap-south' as RegionId;
const TARGET = 'eu-west' as RegionId;
const EMPTY_SV = Y.encodeStateVector(new Y.Doc());
const BARRIER = docKey('frames', 'barrier');
const silent = pino({ level: 'silent' });
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

// ---- a region in this process, and its session with a peer -------------------------

interface Region {
  name: RegionId;
  dir: string;
  docs: Documents;
  store: Store;
}

function region(name: RegionId): Region {
  const dir = mkdtempSync(join(tmpdir(), 'meridian-peer-frames-'));
  const store = openStore({ dataDir: dir, region: name, synchronous: 'normal', writerThread: false, logger: silent });
  const docs = createDocuments({ store, logger: silent, cacheDocs: 100, yjsUpdateBytes: 1 << 20, compactIntervalMs: 0 });
  cleanups.push(async () => {
    await docs.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { name, dir, docs, store };
}

/** The number of entries an entries frame says it carries, read without the codec's bound. */
function entryCount(bytes: Uint8Array): number {
  return decoding.readVarUint(decoding.createDecoder(bytes.subarray(3)));
}

/**
 * `me`'s session with `peer` over an in-memory transport: what it sends is
 * kept (entries frames as bytes), what closes it and what it refuses too.
 */
function link(me: Region, peer: RegionId, o: { batchBytes?: number; logger?: Logger } = {}) {
  const sent: Frame[] = [];
  const entries: Uint8Array[] = [];
  const closes: { code: number; reason: string }[] = [];
  const rejected: string[] = [];
  const noop = (): void => undefined;
  const session = new Session({
    peer, documents: me.docs, store: me.store, logger: o.logger ?? silent,
    transport: {
      send: (bytes) => {
        if (bytes[2] === MSG_ENTRIES) entries.push(Uint8Array.from(bytes));
        else sent.push(decodeFrame(bytes, 1 << 24));
      },
      buffered: () => 0,
      close: (code, reason) => closes.push({ code, reason }),
      pause: noop,
      resume: noop,
    },
    batchBytes: o.batchBytes ?? 64 * 1024, maxBufferedBytes: 1 << 20, maxFrameBytes: 1 << 24,
    onPeerRestarted: noop, onHeard: noop, onPong: noop, onAck: noop, leavesCatchUp: () => false,
    onRejected: (reason) => rejected.push(reason),
  });
  cleanups.unshift(async () => session.close());
  /** Delivers frames, then waits until the session handled them: a doc-sv after them is answered in order (or the link closed). */
  const deliver = async (...frames: (Frame | Uint8Array)[]): Promise<void> => {
    for (const f of frames) session.receive(f instanceof Uint8Array ? f : encodeFrame(f));
    const answered = sent.length;
    session.receive(encodeFrame({ type: 'doc-sv', round: 1, doc: BARRIER, sv: EMPTY_SV, parts: null }));
    await expect.poll(() => closes.length > 0 || sent.slice(answered).some((f) => f.type === 'doc-state' && f.doc === BARRIER)).toBe(true);
  };
  /** The doc-state frames this region sent in `round`, barriers aside. */
  const statesIn = (round: number): Frame[] => sent.filter((f) => f.type === 'doc-state' && f.round === round && f.doc !== BARRIER);
  return { session, sent, entries, closes, rejected, deliver, statesIn };
}

type Link = ReturnType<typeof link>;

/** Starts a round of this region's and answers it as far as its doc-sv about `doc`, whose digest differs at the peer. */
async function roundAskingAbout(l: Link, doc: DocKey): Promise<number> {
  void l.session.ae.start();
  await expect.poll(() => l.sent.some((f) => f.type === 'ae-buckets')).toBe(true);
  const ours = l.sent.find((f): f is Extract<Frame, { type: 'ae-buckets' }> => f.type === 'ae-buckets')!;
  const bucket = bucketOf(doc);
  const theirs = ours.buckets.map((d, i) => (i === bucket ? d.map((x) => x ^ 0xff) : d));
  await l.deliver(
    { type: 'ae-buckets', round: ours.round, buckets: theirs },
    { type: 'ae-docs', round: ours.round, bucket, docs: [{ doc, digest: new Uint8Array(32).fill(7) }] },
  );
  await expect.poll(() => l.sent.some((f) => f.type === 'doc-sv' && f.round === ours.round && f.doc === doc)).toBe(true);
  return ours.round;
}

/** The peer's state of `doc` after it wrote `fields` there. */
async function peerState(peer: Region, doc: DocKey, fields: Record<string, string>): Promise<Uint8Array> {
  await peer.docs.patch(doc, fields);
  return peer.docs.readYjs(doc)!;
}

describe('answers to doc-sv', () => {
  it('answers the peer\'s answer once, and closes the link, merging nothing, on one it did not ask for', async () => {
    const me = region(TARGET);
    const peer = region(PEER);
    const doc = docKey('frames', 'asked');
    await me.docs.put(doc, { from: 'me' });
    const l = link(me, PEER);
    await l.deliver({ type: 'sync-request', vv: new Map() });
    const round = await roundAskingAbout(l, doc);

    await l.deliver({ type: 'doc-state', round, doc, update: await peerState(peer, doc, { first: 'yes' }), sv: EMPTY_SV });
    await expect.poll(() => l.sent.some((f) => f.type === 'ae-done' && f.round === round)).toBe(true);
    expect(l.statesIn(round)).toHaveLength(1);
    await expect.poll(() => me.docs.read(doc).value).toMatchObject({ from: 'me', first: 'yes' });

    // Answered, it would be a copy of the document's state queued for every such frame.
    await l.deliver({ type: 'doc-state', round, doc, update: await peerState(peer, doc, { second: 'yes' }), sv: EMPTY_SV });
    expect(l.closes).toEqual([{ code: 4400, reason: expect.stringMatching(/^doc-state rejected: round \d+ did not ask about frames\/asked/) }]);
    expect(l.statesIn(round)).toHaveLength(1);
    expect(me.docs.read(doc).value).not.toHaveProperty('second');
  });

  it('closes the link on an answer in a round this region never ran', async () => {
    const me = region(TARGET);
    const peer = region(PEER);
    const doc = docKey('frames', 'never');
    await me.docs.put(doc, { from: 'me' });
    const l = link(me, PEER);
    await l.deliver({ type: 'sync-request', vv: new Map() });
    await l.deliver({ type: 'doc-state', round: 4242, doc, update: await peerState(peer, doc, { forged: 'yes' }), sv: EMPTY_SV });
    expect(l.closes).toEqual([{ code: 4400, reason: expect.stringMatching(/^doc-state rejected: round 4242 did not ask about frames\/never/) }]);
    expect(l.statesIn(4242)).toEqual([]);
    expect(me.docs.read(doc).value).toEqual({ from: 'me' });
  });

  it('merges, without answering, an answer still in flight when its round was given up, once', async () => {
    const me = region(TARGET);
    const peer = region(PEER);
    const doc = docKey('frames', 'given-up');
    await me.docs.put(doc, { from: 'me' });
    const l = link(me, PEER);
    await l.deliver({ type: 'sync-request', vv: new Map() });
    const round = await roundAskingAbout(l, doc);
    l.session.ae.abortIdle(Date.now() + 1, 0);
    expect(l.session.ae.running).toBe(false);

    const update = await peerState(peer, doc, { late: 'yes' });
    await l.deliver({ type: 'doc-state', round, doc, update, sv: EMPTY_SV });
    await expect.poll(() => me.docs.read(doc).value).toMatchObject({ from: 'me', late: 'yes' });
    expect(l.statesIn(round)).toEqual([]);
    expect(l.closes).toEqual([]);

    await l.deliver({ type: 'doc-state', round, doc, update, sv: EMPTY_SV });
    expect(l.closes).toEqual([{ code: 4400, reason: expect.stringMatching(/did not ask about frames\/given-up/) }]);
    expect(l.statesIn(round)).toEqual([]);
  });
});

describe('offers of a whole state (doc-replace)', () => {
  it('takes an offer still in flight when its round was given up, once', async () => {
    const me = region(TARGET);
    const peer = region(PEER);
    const doc = docKey('frames', 'offered');
    await me.docs.put(doc, { from: 'me' });
    await me.docs.digests.settled();
    const l = link(me, PEER);
    await l.deliver({ type: 'sync-request', vv: new Map() });
    const round = await roundAskingAbout(l, doc);
    // Asked with its digest parts: the peer may offer its state.
    expect(l.sent.find((f) => f.type === 'doc-sv' && f.round === round && f.doc === doc)).toMatchObject({ parts: expect.any(Uint8Array) });
    l.session.ae.abortIdle(Date.now() + 1, 0);

    const update = await peerState(peer, doc, { offered: 'yes' });
    await l.deliver({ type: 'doc-replace', round, doc, update, kind: 'offer' });
    expect(l.closes).toEqual([]);
    await expect.poll(() => l.sent.some((f) => f.type === 'doc-replace' && f.round === round && f.kind === 'answer')).toBe(true);

    await l.deliver({ type: 'doc-replace', round, doc, update, kind: 'offer' });
    expect(l.closes).toEqual([{ code: 4400, reason: expect.stringMatching(/which this region did not ask for/) }]);
  });
});

describe('lists of documents (ae-docs)', () => {
  it('counts a list for a round this region gave up, and closes the link on one for a round it never ran', async () => {
    const me = region(TARGET);
    const l = link(me, PEER);
    await l.deliver({ type: 'sync-request', vv: new Map() });
    void l.session.ae.start();
    await expect.poll(() => l.sent.some((f) => f.type === 'ae-buckets')).toBe(true);
    const round = l.sent.find((f): f is Extract<Frame, { type: 'ae-buckets' }> => f.type === 'ae-buckets')!.round;
    l.session.ae.abortIdle(Date.now() + 1, 0);

    await l.deliver({ type: 'ae-docs', round, bucket: 0, docs: [] });
    expect(l.closes).toEqual([]);
    expect(l.rejected).toEqual([expect.stringMatching(/^ae_docs_late: ae-docs for round \d+, which this region gave up/)]);

    const never = round === 777 ? 778 : 777;
    await l.deliver({ type: 'ae-docs', round: never, bucket: 0, docs: [] });
    expect(l.closes).toEqual([{ code: 4400, reason: `ae-docs rejected: ae-docs for round ${never}, which this region does not run` }]);
  });
});

describe('entries this region sends', () => {
  it('cuts a commit of more entries than a frame may carry into frames the peer takes, whatever batchBytes allows', async () => {
    const me = region(TARGET);
    await me.docs.put(docKey('frames', 'first'), { n: 0 });
    const [first] = me.store.readLog(0, 1);
    // batchBytes as large as a frame: only the count cuts the batch.
    const l = link(me, PEER, { batchBytes: 1 << 24 });
    await l.deliver({ type: 'sync-request', vv: me.docs.versionVector() });
    // The peer holds the log up to its end: the next commit is sent from memory, as a whole.
    l.session.wake([first!]);
    const writes = MAX_ENTRIES_PER_FRAME + 100;
    await Promise.all(Array.from({ length: writes }, (_, i) => me.docs.put(docKey('frames', `w${i}`), { i })));
    const committed = me.store.readLog(first!.lsn, writes + 1);
    expect(committed).toHaveLength(writes);
    l.session.wake(committed);
    expect(l.entries.length).toBeGreaterThan(0);
    expect(entryCount(l.entries[0]!)).toBe(MAX_ENTRIES_PER_FRAME);
    for (const frame of l.entries) expect(entryCount(frame)).toBeLessThanOrEqual(MAX_ENTRIES_PER_FRAME);
    expect(l.closes).toEqual([]);
  }, 60_000);
});

/** A small update of a Yjs client of its own. */
function thirdUpdate(): Uint8Array {
  const doc = new Y.Doc();
  doc.clientID = 33;
  doc.getMap('root').set('n', 3);
  return Y.encodeStateAsUpdate(doc);
}

describe('the log this region reads for a peer', () => {
  it('reads large entries a MiB at a time, and goes on past a page its bytes cut short', async () => {
    const me = region(TARGET);
    // First in the log, an entry of a third region's that the peer lacks: the log is read from its start.
    const third = 'us-east~01' as WriterId;
    await me.docs.applyRemote([{ origin: third, seq: 1, doc: docKey('frames', 'third'), ts: Date.now(), update: thirdUpdate() }], 'us-east' as RegionId);
    const editor = new Y.Doc();
    editor.clientID = 77;
    // 12 updates of 200 KB: the log's pages end after 6 of them.
    for (let i = 0; i < 12; i++) {
      const before = Y.encodeStateVector(editor);
      editor.getMap('root').set(`k${i}`, 'x'.repeat(200_000));
      await me.docs.applyYjs(docKey('frames', 'large'), Y.encodeStateAsUpdate(editor, before));
    }
    await me.docs.put(docKey('frames', 'small'), { n: 1 });
    const held = new Map(me.docs.versionVector());
    const writer = me.docs.writer;
    held.set(writer, held.get(writer)! - 1);
    held.delete(third);
    const l = link(me, PEER);
    // The peer lacks the first entry and the last: the large ones between are read and skipped.
    await l.deliver({ type: 'sync-request', vv: held });
    const sent = () => l.entries.flatMap((bytes) => (decodeFrame(bytes, 1 << 24) as Extract<Frame, { type: 'entries' }>).entries.map((e) => [e.origin, e.seq]));
    await expect.poll(sent).toEqual([[third, 1], [writer, held.get(writer)! + 1]]);
  });

  it('goes on past a page that entries failing their checksum left short', async () => {
    const me = region(TARGET);
    // First in the log, two large entries of a third region's, then damaged on disk: a page ends after them, and
    // once they are left out, it holds what follows them up to its count, short of a full page.
    const third = 'us-east~01' as WriterId;
    const editor = new Y.Doc();
    editor.clientID = 78;
    for (let seq = 1; seq <= 2; seq++) {
      const before = Y.encodeStateVector(editor);
      editor.getMap('root').set(`k${seq}`, 'x'.repeat(600_000));
      const update = Y.encodeStateAsUpdate(editor, before);
      await me.docs.applyRemote([{ origin: third, seq, doc: docKey('frames', 'damaged'), ts: Date.now(), update }], 'us-east' as RegionId);
    }
    const writes = 6;
    for (let i = 0; i < writes; i++) await me.docs.put(docKey('frames', `after${i}`), { i });
    const db = new Database(join(me.dir, 'meridian.db'));
    db.prepare('UPDATE log SET data = zeroblob(length(data)) WHERE origin = ?').run(third);
    db.close();
    const held = new Map(me.docs.versionVector());
    const writer = me.docs.writer;
    held.set(writer, 0);
    held.delete(third);
    const l = link(me, PEER);
    await l.deliver({ type: 'sync-request', vv: held });
    const sent = () => l.entries.flatMap((bytes) => (decodeFrame(bytes, 1 << 24) as Extract<Frame, { type: 'entries' }>).entries.map((e) => e.seq));
    await expect.poll(() => sent().length).toBe(writes);
    expect(sent()).toEqual(Array.from({ length: writes }, (_, i) => i + 1));
  });
});

describe('heartbeats over the rate', () => {
  /** A ping whose id and time are sound, and whose link list says it holds a million. */
  const pingWithBadLinks = (id: number, sentAt: number): Uint8Array =>
    rawFrame(MSG_PING, (e) => {
      encoding.writeVarUint(e, id);
      encoding.writeFloat64(e, sentAt);
      encoding.writeVarUint(e, 0);
      encoding.writeVarUint(e, 1_000_000);
    });

  it('answers a ping over the rate from its id and time alone, and still checks those', async () => {
    const me = region(TARGET);
    const l = link(me, PEER);
    await l.deliver({ type: 'sync-request', vv: me.docs.versionVector() });
    // Far over the rate (50 a second, bursts of 100), within what a link may send before it counts as a flood.
    for (let id = 1; id <= 300; id++) l.session.receive(encodeFrame({ type: 'ping', id, sentAt: id, vv: new Map(), links: [], lagMs: 0 }));
    expect(l.rejected.some((r) => r.startsWith('heartbeat_rate'))).toBe(true);

    // Within the rate this ping would close the link (its links are refused when decoded); over it, nothing past its time is read.
    l.session.receive(pingWithBadLinks(9001, 12.5));
    expect(l.closes).toEqual([]);
    expect(l.sent.filter((f) => f.type === 'pong' && f.id === 9001)).toEqual([{ type: 'pong', id: 9001, sentAt: 12.5 }]);

    l.session.receive(pingWithBadLinks(9002, Number.NaN));
    expect(l.closes).toEqual([{ code: 4400, reason: expect.stringMatching(/^sentAt: not a finite/) }]);
    expect(l.sent.some((f) => f.type === 'pong' && f.id === 9002)).toBe(false);
  });
});

describe('error frames from the peer', () => {
  it('logs a few a second, counts the rest, and keeps the link', async () => {
    const lines: { msg: string; notLogged?: number }[] = [];
    const logger = pino({ level: 'warn' }, new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString()) as { msg: string; notLogged?: number });
        done();
      },
    }));
    const me = region(TARGET);
    const l = link(me, PEER, { logger });
    const frames = 2000;
    const error = encodeFrame({ type: 'error', code: 'x', message: 'm'.repeat(1024) });
    const errors = Array.from({ length: frames }, () => error);
    await l.deliver(...errors);
    expect(l.closes).toEqual([]);
    const logged = lines.filter((line) => line.msg === 'peer reported an error');
    // Ten at once, five a second after: 200 lines only if handling them took half a minute.
    expect(logged.length).toBeLessThan(frames / 10);
    // Those not logged are counted, the last of them when the link closes.
    l.session.close();
    await expect.poll(() => lines.some((line) => line.msg === 'peer reported more errors than were logged')).toBe(true);
    const counted = lines.reduce((n, line) => n + (line.notLogged ?? 0), 0);
    expect(logged.length + counted).toBe(frames);
  });
});

// ---- through a real WebSocket, to a region process ---------------------------------

describe('frames with lists beyond their bounds, through a real link', () => {
  type Cluster = Awaited<ReturnType<typeof startTestCluster>>;
  let cluster: Cluster;
  let target: string;
  let peerWriter: WriterId;

  beforeAll(async () => {
    cluster = await startTestCluster([PEER, TARGET]);
    target = cluster.url(TARGET);
    await http(`${cluster.url(PEER)}/v1/docs/frames/from-peer`, { method: 'PUT', body: { by: PEER } });
    await http(`${target}/v1/docs/frames/from-target`, { method: 'PUT', body: { by: TARGET } });
    await waitForConvergence(cluster);
    const writer = (await http<{ writer: WriterId }>(`${cluster.url(PEER)}/v1/sync`)).body.writer;
    peerWriter = writer;
    // The impostor takes the place of the real peer, which would otherwise supersede its link.
    await cluster.stopRegion(PEER);
  }, 90_000);

  afterAll(async () => {
    await cluster?.dispose();
  });

  /** A link that states it holds what the target holds, so that nothing is streamed. */
  async function linkHoldingAll(): Promise<{ link: ImpostorLink; held: VersionVector }> {
    const l = await ImpostorLink.open(target, PEER, TARGET, cluster.secret);
    const held = (await l.next('sync-request')).vv;
    l.send({ type: 'sync-request', vv: held });
    l.keepAlive(held);
    return { link: l, held };
  }

  async function expectRefusedAndServing(bytes: Uint8Array, reason: RegExp): Promise<void> {
    const { link: l, held } = await linkHoldingAll();
    l.send(bytes);
    expect(await l.closeCode()).toBe(4400);
    expect((await syncStatus(target)).peers.find((p) => p.region === PEER)?.lastError).toMatch(reason);
    expect((await http(`${target}/healthz`, { timeoutMs: 5000 })).status).toBe(200);
    const { link: again } = await linkHoldingAll();
    const after = (await again.next('sync-request')).vv;
    again.close();
    await again.closed;
    expect(after).toEqual(held);
  }

  it('closes the link on an entries frame of more entries than a frame may carry, before reading them', async () => {
    const count = MAX_ENTRIES_PER_FRAME + 1;
    const bytes = rawFrame(MSG_ENTRIES, (e) => {
      encoding.writeVarUint(e, count);
      for (let i = 0; i < count; i++) {
        // Entries the region already holds: taken, they would change nothing and keep the link.
        encoding.writeVarString(e, peerWriter);
        encoding.writeVarUint(e, 1);
        encoding.writeVarString(e, 'frames/from-peer');
        encoding.writeVarUint(e, Date.now());
        encoding.writeVarUint8Array(e, new Uint8Array([0, 0]));
      }
    });
    await expectRefusedAndServing(bytes, new RegExp(`entries: ${count} out of range, more than the ${MAX_ENTRIES_PER_FRAME} items`));
  }, 60_000);

  it('closes the link on an ae-docs frame listing more documents than a bucket may, before reading them', async () => {
    const count = MAX_AE_DOCS + 1;
    const bytes = rawFrame(MSG_AE_DOCS, (e) => {
      encoding.writeVarUint(e, 5);
      encoding.writeVarUint(e, 0);
      encoding.writeVarUint(e, count);
      for (let i = 0; i < count; i++) {
        encoding.writeVarString(e, `f/${i.toString(36)}`);
        encoding.writeUint8Array(e, new Uint8Array(32));
      }
    });
    await expectRefusedAndServing(bytes, new RegExp(`docs: ${count} out of range, more than the ${MAX_AE_DOCS} items`));
  }, 60_000);
});
