/**
 * A peer that holds the cluster secret sends
 * forged numbers. A real region is driven through a real WebSocket after a
 * valid handshake, impersonating its (stopped) peer; every forged frame must
 * close the link with 4400 and change nothing, and the region must keep
 * answering and taking writes, also after a restart. Unit tests at the end
 * pin the codec and storage bounds.
 */
import * as encoding from 'lib0/encoding';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { DocKey, RegionId, VersionVector, WriterId } from '../src/ids.js';
import {
  MAX_ROUND, MSG_ACK, MSG_AE_DONE, MSG_ENTRIES, MSG_SYNC_REQUEST, ProtocolError,
  decodeFrame, encodeFrame, type Frame,
} from '../src/replication/protocol.js';
import { DB_FILE, openStore } from '../src/storage/sqlite.js';
import { MAX_SEQ } from '../src/vv.js';
import { digestParts } from '../src/crdt/digest.js';
import * as Y from 'yjs';
import { http, startTestCluster, syncStatus, waitFor, waitForConvergence } from './helpers/cluster.js';
import { ImpostorLink } from './helpers/impostor.js';
import { presenceUpdate } from './helpers/presence.js';
import { rawFrame } from './helpers/raw-frame.js';

const IMPOSTOR = 'ap-south' as RegionId;
const TARGET = 'eu-west' as RegionId;
/** The target's `replication.writerChangeIntervalMs`. */
const WRITER_CHANGE_MS = 5000;
/** A forged number: the largest safe integer. */
const FORGED_SEQ = Number.MAX_SAFE_INTEGER;
/** Below every bound the codec checks, so only the semantic checks can refuse it. */
const PLAUSIBLE_SEQ = 2 ** 40;

type Cluster = Awaited<ReturnType<typeof startTestCluster>>;
let cluster: Cluster;
let target: string;

beforeAll(async () => {
  cluster = await startTestCluster([IMPOSTOR, TARGET], {}, { [TARGET]: { replication: { writerChangeIntervalMs: WRITER_CHANGE_MS } } });
  target = cluster.url(TARGET);
  await http(`${cluster.url(IMPOSTOR)}/v1/docs/peer/from-impostor`, { method: 'PUT', body: { by: 'ap-south' } });
  await http(`${target}/v1/docs/peer/from-target`, { method: 'PUT', body: { by: 'eu-west' } });
  await waitForConvergence(cluster);
  // The impostor takes the place of the real peer, which would otherwise supersede its link.
  await cluster.stopRegion(IMPOSTOR);
}, 90_000);

afterAll(async () => {
  await cluster?.dispose();
});

function writeVv(e: encoding.Encoder, vv: VersionVector): void {
  encoding.writeVarUint(e, vv.size);
  for (const [writer, seq] of vv) {
    encoding.writeVarString(e, writer);
    encoding.writeVarUint(e, seq);
  }
}

const rawAeDone = (round: number, floor: VersionVector): Uint8Array =>
  rawFrame(MSG_AE_DONE, (e) => {
    encoding.writeVarUint(e, round);
    writeVv(e, floor);
  });
const rawAck = (vv: VersionVector): Uint8Array => rawFrame(MSG_ACK, (e) => writeVv(e, vv));

// ---- what the target region holds ------------------------------------------------

interface Observed {
  vv: VersionVector;
  writer: string;
  pending: { outbound: number; inbound: number };
}

/** The target's current writer id, as `/v1/sync` reports it. */
async function writerOf(): Promise<string> {
  return (await http<{ writer: string }>(`${target}/v1/sync`)).body.writer;
}

/** The target's version vector (from the sync request it opens every link with), writer and pending counts. */
async function observe(): Promise<Observed> {
  const link = await ImpostorLink.open(target, IMPOSTOR, TARGET, cluster.secret);
  const request = await link.next('sync-request');
  link.close();
  await link.closed;
  const status = await syncStatus(target);
  const peer = status.peers.find((p) => p.region === IMPOSTOR)!;
  return { vv: request.vv, writer: await writerOf(), pending: { outbound: peer.outbound.pendingUpdates, inbound: peer.inbound.pendingUpdates } };
}

/** Opens a link and states that the impostor holds what the target holds (so nothing is streamed). */
async function linkHoldingAll(): Promise<{ link: ImpostorLink; theirs: VersionVector }> {
  const link = await ImpostorLink.open(target, IMPOSTOR, TARGET, cluster.secret);
  const theirs = (await link.next('sync-request')).vv;
  link.send({ type: 'sync-request', vv: theirs });
  link.keepAlive(theirs);
  return { link, theirs };
}

/**
 * After a link was closed for a flood: counted once as `reason`, the region
 * healthy, and the peer, linking again, kept while it keeps to the rate.
 */
async function expectClosedOnceAndLinkedAgain(reason: string): Promise<void> {
  const metrics = String((await http<string>(`${target}/metrics`)).body);
  expect(metrics).toMatch(new RegExp(`meridian_frames_rejected_total\\{[^}]*reason="${reason}"[^}]*\\} 1`));
  expect((await http(`${target}/healthz`)).status).toBe(200);
  const again = await linkHoldingAll();
  expect(await again.link.closeCode(300)).toBe('open');
  again.link.close();
  await again.link.closed;
}

/** Waits until the region has handled every frame sent before: doc-sv is answered in order. */
async function barrier(link: ImpostorLink): Promise<void> {
  link.send({ type: 'doc-sv', round: 1, doc: 'peer/barrier' as DocKey, sv: new Uint8Array([0]), parts: null });
  await link.next('doc-state');
}

/**
 * The target as it stands once the impostor has stated it holds everything
 * (a valid sync request changes the pending counts; a forged frame must not).
 */
async function baseline(): Promise<Observed> {
  const { link } = await linkHoldingAll();
  await barrier(link);
  link.close();
  await link.closed;
  return observe();
}

/** Takes part in a round as its initiator, as far as the target answering its ae-buckets. */
async function answeredRound(link: ImpostorLink): Promise<number> {
  const round = 1234;
  link.send({ type: 'ae-buckets', round, buckets: [] });
  await link.next('ae-buckets');
  return round;
}

async function expectServingAndUnchanged(before: Observed): Promise<void> {
  const health = await http(`${target}/healthz`, { timeoutMs: 5000 });
  expect(health.status).toBe(200);
  const after = await observe();
  expect(after.writer).toBe(before.writer);
  expect(after.vv).toEqual(before.vv);
  expect(after.pending).toEqual(before.pending);
}

function loadState(state: Uint8Array): Y.Doc {
  const doc = new Y.Doc();
  Y.applyUpdate(doc, state);
  return doc;
}

function ownWriter(o: Observed): WriterId {
  return o.writer as WriterId;
}

describe('forged numbers from a peer holding the cluster secret', () => {
  it('closes the link on an ae-done whose floor names this region at 2^53-1, and keeps taking writes', async () => {
    const before = await baseline();
    const { link } = await linkHoldingAll();
    const round = await answeredRound(link);
    link.send(rawAeDone(round, new Map([[ownWriter(before), FORGED_SEQ]])));
    expect(await link.closeCode()).toBe(4400);
    await expectServingAndUnchanged(before);

    const put = await http(`${target}/v1/docs/peer/after-forged-floor`, { method: 'PUT', body: { ok: 1 }, timeoutMs: 10_000 });
    expect(put.status).toBe(200);
    const after = await observe();
    expect(after.vv.get(ownWriter(before))).toBe((before.vv.get(ownWriter(before)) ?? 0) + 1);
  }, 60_000);

  it('closes the link on entries whose origin is not a writer id, and stores none of them', async () => {
    const before = await baseline();
    const update = new Uint8Array([0, 0]);
    for (const origin of [`${'z'.repeat(200)}~ab`, 'Mallory~beef', 'ap-south~not-hex', 'ap-south']) {
      const { link } = await linkHoldingAll();
      link.send({ type: 'entries', entries: [{ origin: origin as WriterId, seq: 1, doc: 'peer/made-up' as DocKey, ts: Date.now(), update }] });
      expect(await link.closeCode()).toBe(4400);
      expect((await syncStatus(target)).peers.find((p) => p.region === IMPOSTOR)?.lastError).toMatch(/is not a writer id/);
    }
    await expectServingAndUnchanged(before);
  }, 60_000);

  it('closes the link on entries beyond a gap that name more writers in all than a version vector may, and stores none of them', async () => {
    const before = await baseline();
    const { link } = await linkHoldingAll();
    const update = new Uint8Array([0, 0]);
    // Each frame within the bound on writers new to this region (its entries are skipped, not applied), but the
    // writers the peer is known to hold would grow by 1,000 a frame for as long as the link lasted.
    for (let frame = 0; frame < 5; frame++) {
      link.send({
        type: 'entries',
        entries: Array.from({ length: 1000 }, (_, i) => ({
          origin: `ap-south~${(frame * 1000 + i).toString(16).padStart(8, '0')}` as WriterId, seq: 2, doc: 'peer/made-up' as DocKey, ts: Date.now(), update,
        })),
      });
    }
    expect(await link.closeCode()).toBe(4400);
    expect((await syncStatus(target)).peers.find((p) => p.region === IMPOSTOR)?.lastError).toMatch(/entries states \d+ writers in all, beyond the 4096/);
    await expectServingAndUnchanged(before);
  }, 60_000);

  it('refuses a doc-replace nobody asked for, even one that would win the conflict rule, and keeps the document', async () => {
    const doc = 'peer/from-target' as DocKey;
    const held = new Uint8Array(await (await fetch(`${target}/v1/docs/${doc}/yjs`)).arrayBuffer());
    const mine = digestParts(loadState(held));
    // The same structure with other bytes in its one string: a content
    // conflict, forged to sort first (the rule's winner) when it can.
    const at = Buffer.from(held).indexOf('eu-west');
    expect(at).toBeGreaterThan(0);
    let forged: Uint8Array | null = null;
    for (let i = 0; i < 1000 && forged === null; i++) {
      const candidate = new Uint8Array(held);
      candidate.set(Buffer.from(`zz-${String(i).padStart(4, '0')}`), at);
      const theirs = digestParts(loadState(candidate));
      expect(Buffer.from(theirs.structure).equals(Buffer.from(mine.structure))).toBe(true);
      if (Buffer.compare(Buffer.from(theirs.content), Buffer.from(mine.content)) < 0) forged = candidate;
    }
    expect(forged).not.toBeNull();
    const before = await http<{ by: string }>(`${target}/v1/docs/${doc}`);
    for (const kind of ['offer', 'answer'] as const) {
      const { link } = await linkHoldingAll();
      link.send({ type: 'doc-replace', round: 77, doc, update: forged!, kind });
      expect(await link.closeCode()).toBe(4400);
    }
    const after = await http<{ by: string }>(`${target}/v1/docs/${doc}`);
    expect(after.body).toEqual(before.body);
    expect(after.body.by).toBe('eu-west');
    const status = await syncStatus(target);
    expect(status.peers.find((p) => p.region === IMPOSTOR)?.lastError).toMatch(/doc-replace rejected: an answer of peer\/from-target in round 77/);
  }, 60_000);

  it('closes the link on sequence numbers at or above MAX_SEQ anywhere in a frame', async () => {
    const before = await baseline();
    const other = 'us-east~f0f0ed' as WriterId;
    const forged: Uint8Array[] = [
      rawAck(new Map([[other, MAX_SEQ]])),
      rawFrame(MSG_SYNC_REQUEST, (e) => writeVv(e, new Map([[other, FORGED_SEQ]]))),
      rawFrame(MSG_ENTRIES, (e) => {
        encoding.writeVarUint(e, 1);
        encoding.writeVarString(e, other);
        encoding.writeVarUint(e, FORGED_SEQ);
        encoding.writeVarString(e, 'peer/forged');
        encoding.writeVarUint(e, 0);
        encoding.writeVarUint8Array(e, new Uint8Array([0, 0]));
      }),
    ];
    for (const bytes of forged) {
      const link = await ImpostorLink.open(target, IMPOSTOR, TARGET, cluster.secret);
      await link.next('sync-request');
      link.send(bytes);
      expect(await link.closeCode()).toBe(4400);
    }
    await expectServingAndUnchanged(before);
  }, 60_000);

  it('still takes writes after a restart that follows a forged floor', async () => {
    const before = await baseline();
    const { link } = await linkHoldingAll();
    const round = await answeredRound(link);
    link.send(rawAeDone(round, new Map([[ownWriter(before), MAX_SEQ - 1]])));
    expect(await link.closeCode()).toBe(4400);
    await cluster.restart(TARGET);
    const put = await waitFor('a write after restart', async () => {
      const r = await http(`${target}/v1/docs/peer/after-restart`, { method: 'PUT', body: { ok: 2 }, timeoutMs: 10_000 });
      return r.status === 200 ? r : undefined;
    }, 30_000, 250);
    expect(put.status).toBe(200);
    const after = await observe();
    expect(after.writer).toBe(before.writer);
    expect(after.vv.get(ownWriter(before))).toBe((before.vv.get(ownWriter(before)) ?? 0) + 1);
  }, 90_000);
});

describe('forged floors and acknowledgements', () => {
  it('refuses an ae-done for a round this region never answered', async () => {
    const before = await baseline();
    const { link, theirs } = await linkHoldingAll();
    link.send({ type: 'ae-done', round: 4321, floor: theirs });
    expect(await link.closeCode()).toBe(4400);
    await expectServingAndUnchanged(before);
  }, 60_000);

  it('refuses a floor for a writer the sender never said it holds', async () => {
    const before = await baseline();
    const { link } = await linkHoldingAll();
    const round = await answeredRound(link);
    link.send({ type: 'ae-done', round, floor: new Map([['us-east~f0f0ed' as WriterId, PLAUSIBLE_SEQ]]) });
    expect(await link.closeCode()).toBe(4400);
    await expectServingAndUnchanged(before);
  }, 60_000);

  it('refuses a floor above what the sender said it holds, and one above what this region holds of its own writer', async () => {
    const before = await baseline();
    const impostorWriter = [...before.vv.keys()].find((w) => w !== ownWriter(before))!;
    for (const floor of [
      new Map([[impostorWriter, PLAUSIBLE_SEQ]]),
      new Map([[ownWriter(before), (before.vv.get(ownWriter(before)) ?? 0) + 1]]),
    ]) {
      const { link } = await linkHoldingAll();
      const round = await answeredRound(link);
      link.send({ type: 'ae-done', round, floor });
      expect(await link.closeCode()).toBe(4400);
    }
    await expectServingAndUnchanged(before);
  }, 60_000);

  it('refuses an acknowledgement of more of its own writes than this region holds or sent', async () => {
    const before = await baseline();
    const { link } = await linkHoldingAll();
    link.send({ type: 'ack', vv: new Map([[ownWriter(before), PLAUSIBLE_SEQ]]) });
    expect(await link.closeCode()).toBe(4400);
    await expectServingAndUnchanged(before);
    const metrics = await http<string>(`${target}/metrics`);
    expect(String(metrics.body)).toMatch(/meridian_frames_rejected_total\{[^}]*peer="ap-south"[^}]*\} [1-9]/);
  }, 60_000);

  it('records acknowledgements of other writers only up to what this region holds', async () => {
    const before = await baseline();
    const impostorWriter = [...before.vv.keys()].find((w) => w !== ownWriter(before))!;
    const { link, theirs } = await linkHoldingAll();
    // A peer may hold more than this region (its own unsent writes, a third region's): not a protocol error.
    link.send({ type: 'ack', vv: new Map([...theirs, [impostorWriter, PLAUSIBLE_SEQ], ['us-east~07e7' as WriterId, PLAUSIBLE_SEQ]]) });
    link.send({ type: 'ping', id: 1, sentAt: 1, vv: theirs, links: [], lagMs: 0 });
    await link.next('pong');
    expect(await link.closeCode(500)).toBe('open');
    link.close();
    await link.closed;
    await expectServingAndUnchanged(before);
  }, 60_000);

  it('follows a restored peer that holds more of its writes, refuses a second claim on that link, and on any other for an interval', async () => {
    const before = await baseline();
    const link = await ImpostorLink.open(target, IMPOSTOR, TARGET, cluster.secret);
    const theirs = (await link.next('sync-request')).vv;
    const mine = ownWriter(before);
    // Legitimate for a data directory restored from a backup: write on as a new writer.
    link.send({ type: 'sync-request', vv: new Map([...theirs, [mine, (theirs.get(mine) ?? 0) + 5]]) });
    const rotated = await waitFor('writer rotation', async () => {
      const w = await writerOf();
      return w !== before.writer ? w : undefined;
    });
    const rotatedAt = performance.now();
    link.send({ type: 'sync-request', vv: new Map([[rotated as WriterId, 5]]) });
    expect(await link.closeCode()).toBe(4400);
    expect(await writerOf()).toBe(rotated);
    // On a new link too, within the interval: believed on every redial, the
    // claim would make the region change writer on every redial.
    const again = await ImpostorLink.open(target, IMPOSTOR, TARGET, cluster.secret);
    await again.next('sync-request');
    again.send({ type: 'sync-request', vv: new Map([[rotated as WriterId, 5]]) });
    expect(await again.closeCode()).toBe(4400);
    expect((await again.closed).reason).toMatch(/writer changed within writerChangeIntervalMs/);
    expect(await writerOf()).toBe(rotated);
    const put = await http(`${target}/v1/docs/peer/after-rotation`, { method: 'PUT', body: { ok: 3 } });
    expect(put.status).toBe(200);
    // Past it, followed again: a peer told by a faulty one that it holds more
    // of this writer (the claim is stored there) is not refused for good.
    await new Promise((r) => setTimeout(r, Math.max(0, rotatedAt + WRITER_CHANGE_MS + 200 - performance.now())));
    const later = await ImpostorLink.open(target, IMPOSTOR, TARGET, cluster.secret);
    await later.next('sync-request');
    later.send({ type: 'sync-request', vv: new Map([[rotated as WriterId, 5]]) });
    const third = await waitFor('a second writer rotation', async () => {
      const w = await writerOf();
      return w !== rotated ? w : undefined;
    });
    expect(third).not.toBe(before.writer);
    expect(await later.closeCode(500)).toBe('open');
    later.close();
    await later.closed;
    const written = await http<{ version: string }>(`${target}/v1/docs/peer/after-second-rotation`, { method: 'PUT', body: { ok: 4 } });
    expect(written.status).toBe(200);
  }, 60_000);
});

describe('heartbeats from a peer holding the cluster secret', () => {
  const ping = (link: Awaited<ReturnType<typeof linkHoldingAll>>['link'], id: number, vv: VersionVector): void =>
    link.send({ type: 'ping', id, sentAt: performance.now(), vv, links: [], lagMs: 0 });

  it('takes at most its rate of pings as acknowledgements, counts the rest, answers them all, and keeps the link', async () => {
    const { link, theirs } = await linkHoldingAll();
    // Over the rate (50 a second, bursts of 100), within what is tolerated before a link counts as flooding.
    const burst = 400;
    for (let id = 1; id <= burst; id++) ping(link, 1_000_000 + id, theirs);
    await barrier(link);
    // Answered all the same: a peer that does not read its pongs is closed by the backlog bound (replication-backlog.test.ts).
    expect(link.frames.filter((f) => f.type === 'pong' && f.id > 1_000_000).length).toBe(burst);
    const metrics = String((await http<string>(`${target}/metrics`)).body);
    const counted = /meridian_frames_rejected_total\{[^}]*reason="heartbeat_rate"[^}]*\} (\d+)/.exec(metrics);
    // A burst of 100 and 50 a second beyond it, whatever the test machine's pace: most of them.
    expect(Number(counted?.[1] ?? 0)).toBeGreaterThan(burst / 2);
    expect(await link.closeCode(300)).toBe('open');
    link.close();
    await link.closed;
  }, 60_000);

  it('keeps a link whose pings come at several hundred a second (a peer with a heartbeat of a few ms)', async () => {
    const { link, theirs } = await linkHoldingAll();
    let id = 2_000_000;
    for (let tick = 0; tick < 40; tick++) {
      for (let i = 0; i < 20; i++) ping(link, ++id, theirs);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(await link.closeCode(300)).toBe('open');
    link.close();
    await link.closed;
  }, 30_000);

  it('closes a link whose pings keep coming far over the rate, and stays healthy', async () => {
    const { link, theirs } = await linkHoldingAll();
    for (let id = 1; id <= 20_000; id++) ping(link, id, theirs);
    // 4400; or 1006 when the close is not answered within the second the
    // region gives it (this process is still busy sending the flood): the
    // region then ends the socket, with pings unread, and its reset can
    // overtake the close frame. Closed either way, and counted below.
    expect([4400, 1006]).toContain(await link.closeCode());
    // Answered until it was closed, not after.
    expect(link.frames.filter((f) => f.type === 'pong').length).toBeLessThan(20_000);
    await expectClosedOnceAndLinkedAgain('heartbeat_flood');
  }, 60_000);
});

describe('sync requests from a peer holding the cluster secret', () => {
  it('takes a few on a link, closes one that keeps sending them (each rewinds the stream), and stays healthy', async () => {
    const { link, theirs } = await linkHoldingAll();
    // The one the link opened with, and three more.
    for (let i = 0; i < 3; i++) link.send({ type: 'sync-request', vv: theirs });
    await barrier(link);
    expect(await link.closeCode(300)).toBe('open');
    for (let i = 0; i < 50; i++) link.send({ type: 'sync-request', vv: theirs });
    expect([4400, 1006]).toContain(await link.closeCode());
    await expectClosedOnceAndLinkedAgain('sync_request_flood');
  }, 60_000);
});

describe('presence from a peer holding the cluster secret', () => {
  const presence = presenceUpdate;
  const rejected = async (reason: string): Promise<number> => {
    const body = String((await http<string>(`${target}/metrics`)).body);
    const line = body.split('\n').find((l) => l.startsWith('meridian_frames_rejected_total') && l.includes(`reason="${reason}"`));
    return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
  };

  it('holds no more ids in a room than the peer\'s own clients could, and drops a flood over the link\'s rate; the link stays up', async () => {
    const doc = 'peer/presence' as DocKey;
    const watcher = new WebSocket(`${target.replace('http', 'ws')}/v1/live/${doc}`);
    const received: Uint8Array[] = [];
    watcher.on('message', (data: Buffer) => received.push(new Uint8Array(data)));
    await new Promise<void>((resolve, reject) => {
      watcher.once('open', () => resolve());
      watcher.once('error', reject);
    });
    const awarenessMessages = (): number => received.filter((m) => m[0] === 1).length;
    const { link } = await linkHoldingAll();
    try {
      // liveConnectionsPerDoc (500) clients of 4 ids each, and one more.
      const tooMany = Array.from({ length: 500 * 4 + 1 }, (_, i) => 1000 + i);
      link.send({ type: 'awareness', doc, update: presence(tooMany) });
      await waitFor('the oversized presence dropped', async () => (await rejected('awareness_bound')) >= 1);
      expect(awarenessMessages()).toBe(0);

      link.send({ type: 'awareness', doc, update: presence([7]) });
      await waitFor('a peer\'s ordinary presence relayed', async () => awarenessMessages() === 1);

      // Far beyond the link's bytes a second (4 MiB, bursts of 8), in frames well within its count.
      // Sent until the region says it dropped some: on a loaded machine the link may carry less than the burst and rate a second.
      const big = new Uint8Array(60 * 1024);
      for (let sent = 0; (await rejected('awareness_rate')) < 1; sent += 100) {
        if (sent >= 2000) throw new Error('120 MB of presence sent, none dropped over the link\'s rate');
        for (let i = 0; i < 100; i++) link.send({ type: 'awareness', doc: 'peer/nobody' as DocKey, update: big });
        await new Promise((r) => setTimeout(r, 100));
      }
      const afterBytes = await rejected('awareness_rate');
      // Far beyond the link's frames a second, for a document nobody here watches.
      for (let i = 0; i < 20_000; i++) link.send({ type: 'awareness', doc: 'peer/nobody' as DocKey, update: presence([i]) });
      await waitFor('the flood counted', async () => (await rejected('awareness_rate')) > afterBytes, 20_000);
      expect((await http(`${target}/healthz`, { timeoutMs: 5000 })).status).toBe(200);
      expect(await link.closeCode(500)).toBe('open');
    } finally {
      link.close();
      watcher.terminate();
    }
  });
});

// ---- unit: the bounds themselves -----------------------------------------------

describe('codec bounds', () => {
  const w = 'w~1' as WriterId;
  const decode = (bytes: Uint8Array): Frame => decodeFrame(bytes, 1 << 20);

  it('accepts sequence numbers below MAX_SEQ and refuses MAX_SEQ and above', () => {
    expect(MAX_SEQ).toBe(2 ** 48);
    expect(decode(rawAck(new Map([[w, MAX_SEQ - 1]])))).toEqual({ type: 'ack', vv: new Map([[w, MAX_SEQ - 1]]) });
    for (const seq of [MAX_SEQ, FORGED_SEQ]) {
      expect(() => decode(rawAck(new Map([[w, seq]])))).toThrow(ProtocolError);
      expect(() => decode(rawAeDone(1, new Map([[w, seq]])))).toThrow(/out of range/);
      expect(() => encodeFrame({ type: 'ack', vv: new Map([[w, seq]]) })).toThrow(RangeError);
    }
  });

  it('bounds entry timestamps, round ids, ping ids and times', () => {
    const entry = { origin: w, seq: 1, doc: 'a/b' as DocKey, ts: MAX_SEQ, update: new Uint8Array([0, 0]) };
    expect(() => encodeFrame({ type: 'entries', entries: [entry] })).toThrow(RangeError);
    expect(() => encodeFrame({ type: 'ae-done', round: MAX_ROUND, floor: new Map() })).toThrow(RangeError);
    expect(decode(encodeFrame({ type: 'ae-done', round: MAX_ROUND - 1, floor: new Map() })).type).toBe('ae-done');
    expect(() => decode(rawAeDone(MAX_ROUND, new Map()))).toThrow(/round: .* out of range/);
    expect(() => encodeFrame({ type: 'pong', id: MAX_SEQ, sentAt: 0 })).toThrow(RangeError);
    expect(() => encodeFrame({ type: 'pong', id: 1, sentAt: 1e300 })).toThrow(RangeError);
  });
});

describe('storage bounds', () => {
  const logger = pino({ level: 'silent' });

  function withStore(run: (dir: string) => void): void {
    const dir = mkdtempSync(join(tmpdir(), 'meridian-bounds-'));
    try {
      run(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it('never raises a version vector entry to MAX_SEQ or beyond', () => {
    withStore((dir) => {
      const store = openStore({ dataDir: dir, region: TARGET, synchronous: 'normal', logger });
      try {
        expect(() => store.commit({ entries: [], docs: [], raise: new Map([[store.writer, FORGED_SEQ]]) })).toThrow(/MAX_SEQ/);
        expect(store.versionVector().get(store.writer)).toBeUndefined();
      } finally {
        store.close();
      }
    });
  });

  it('refuses, with a message saying what to do, a database whose progress is already beyond MAX_SEQ', () => {
    withStore((dir) => {
      openStore({ dataDir: dir, region: TARGET, synchronous: 'normal', logger }).close();
      const db = new Database(join(dir, DB_FILE));
      db.prepare('INSERT INTO progress (origin, seq, missing_upto) VALUES (?, ?, ?)').run('eu-west~poisoned', FORGED_SEQ, FORGED_SEQ);
      db.close();
      const store = openStore({ dataDir: dir, region: TARGET, synchronous: 'normal', logger });
      try {
        expect(() => store.versionVector()).toThrow(/beyond MAX_SEQ.*data directory/s);
      } finally {
        store.close();
      }
    });
  });
});
