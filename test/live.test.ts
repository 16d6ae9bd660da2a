/**
 * The live endpoint of one region process: access (header or `?token=`),
 * refusals, connection bounds, slow clients, the version message, and the
 * JSON view of editor content. Real region process, real sockets, real
 * y-websocket providers.
 */
import { readFileSync } from 'node:fs';
import Fastify from 'fastify';
import * as decoding from 'lib0/decoding';
import { pino } from 'pino';
import * as encoding from 'lib0/encoding';
import * as awarenessProtocol from 'y-protocols/awareness';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { WebSocket } from 'ws';
import { WebsocketProvider } from 'y-websocket';
import * as Y from 'yjs';
import type { DocKey, RegionId } from '../src/ids.js';
import { CHALLENGE_PATH, REPLICATE_PATH, createDialHeaders } from '../src/replication/handshake.js';
import { acceptLinks, dialLink, type Link, type LinkOptions } from '../src/replication/transport.js';
import {
  FEATURES_HEADER, FRAME_MAGIC, UNANNOUNCED_MAX_FRAME_BYTES, announcedMaxFrame, MAX_AWARENESS_BYTES, MSG_AWARENESS, PROTOCOL_VERSION, ProtocolError, decodeFrame, encodeFrame,
} from '../src/replication/protocol.js';
import { http, startTestCluster, waitFor } from './helpers/cluster.js';
import { presenceUpdate } from './helpers/presence.js';

const RW = 'live-test-token-read-write';
const RO = 'live-test-token-read-only!';
const RATED = 'live-test-token-two-writes-a-second';
const ONE_DOC = 'live-test-token-may-create-one-document';
const PER_DOC = 3;
const SEND_BUFFER = 64 * 1024;

type Cluster = Awaited<ReturnType<typeof startTestCluster>>;
let cluster: Cluster;
let base: string;
const providers: WebsocketProvider[] = [];
const sockets: WebSocket[] = [];

beforeAll(async () => {
  cluster = await startTestCluster(['solo'], {
    // A slow client is shown by a document of 12 MB (maxDocumentBytes raised for it).
    limits: { liveConnectionsPerDoc: PER_DOC, liveSendBufferBytes: SEND_BUFFER, yjsUpdateBytes: 256 * 1024, maxDocumentBytes: 32 * 1024 * 1024 },
    auth: {
      tokens: [
        { token: RW, scope: 'read-write' }, { token: RO, scope: 'read' },
        { token: RATED, scope: 'read-write', quota: { writesPerSecond: 2, writeBurst: 1 } },
        { token: ONE_DOC, scope: 'read-write', quota: { maxDocuments: 1 } },
      ],
    },
  });
  const solo = cluster.regions.get('solo');
  if (!solo) throw new Error('no region');
  base = solo.url;
}, 60_000);
afterAll(async () => {
  for (const p of providers) p.destroy();
  for (const s of sockets) s.terminate();
  await cluster?.dispose();
});

const wsBase = (): string => `${base.replace(/^http/, 'ws')}/v1/live`;
const auth = { authorization: `Bearer ${RW}` };

function provider(collection: string, id: string, token = RW, doc = new Y.Doc()): WebsocketProvider {
  const p = new WebsocketProvider(`${wsBase()}/${collection}`, id, doc, {
    WebSocketPolyfill: WebSocket as never, disableBc: true, params: { token },
  });
  providers.push(p);
  return p;
}

async function synced(p: WebsocketProvider): Promise<void> {
  await waitFor('provider synced', async () => p.synced, 15_000, 20);
}

/** A bare client: what the upgrade answered, the messages received, how it closed. */
interface Raw {
  ws: WebSocket;
  opened: Promise<void>;
  refusedWith: Promise<number>;
  closed: Promise<{ code: number; reason: string }>;
  messages: Uint8Array[];
}

function raw(path: string, headers: Record<string, string> = {}): Raw {
  const ws = new WebSocket(`${wsBase()}/${path}`, { headers });
  sockets.push(ws);
  const messages: Uint8Array[] = [];
  ws.on('message', (data: Buffer) => messages.push(new Uint8Array(data)));
  ws.on('error', () => undefined);
  return {
    ws, messages,
    opened: new Promise((resolve) => ws.once('open', () => resolve())),
    refusedWith: new Promise((resolve) => ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0))),
    closed: new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() }))),
  };
}

/** A y-websocket awareness message carrying `update`. */
function awarenessMessage(update: Uint8Array): Uint8Array {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, 1);
  encoding.writeVarUint8Array(e, update);
  return encoding.toUint8Array(e);
}

/** A y-websocket update message carrying `update`. */
function updateMessage(update: Uint8Array): Uint8Array {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, 0);
  encoding.writeVarUint(e, 2);
  encoding.writeVarUint8Array(e, update);
  return encoding.toUint8Array(e);
}

function textUpdate(text: string, clientID?: number): Uint8Array {
  const doc = new Y.Doc();
  if (clientID !== undefined) doc.clientID = clientID;
  doc.getText('body').insert(0, text);
  return Y.encodeStateAsUpdate(doc);
}

describe('access', () => {
  test('a token as query parameter connects and syncs; the header works too', async () => {
    const p = provider('acc', 'q');
    await synced(p);
    const viaHeader = raw('acc/q', auth);
    await viaHeader.opened;
    viaHeader.ws.close();
    const region = cluster.regions.get('solo');
    expect(readFileSync(region?.logPath ?? '', 'utf8')).not.toContain(RW);
  });

  test('a bad or missing token is refused before the upgrade', async () => {
    expect(await raw('acc/bad?token=not-a-token-at-all').refusedWith).toBe(401);
    expect(await raw('acc/bad').refusedWith).toBe(401);
  });

  test("a read-only client's update is refused (4403) and reaches nobody; the others keep working", async () => {
    const writer = provider('acc', 'ro');
    await synced(writer);
    const reader = raw(`acc/ro?token=${encodeURIComponent(RO)}`);
    await reader.opened;
    reader.ws.send(updateMessage(textUpdate('from a reader')));
    expect((await reader.closed).code).toBe(4403);
    writer.doc.getText('body').insert(0, 'from the writer');
    const r = await waitFor('the writer is stored', async () => {
      const got = await http<Record<string, unknown>>(`${base}/v1/docs/acc/ro`, { headers: auth });
      return got.status === 200 ? got : undefined;
    });
    expect(JSON.stringify(r.body)).toContain('from the writer');
    expect(JSON.stringify(r.body)).not.toContain('from a reader');
    expect(writer.doc.getText('body').toString()).toBe('from the writer');
  });
});

describe('bounds', () => {
  test('connections beyond limits.liveConnectionsPerDoc get 503 too_many_connections before the upgrade', async () => {
    const open = Array.from({ length: PER_DOC }, () => raw('bound/doc', auth));
    await Promise.all(open.map((c) => c.opened));
    const extra = raw('bound/doc', auth);
    expect(await extra.refusedWith).toBe(503);
    // Another document is not affected.
    const other = raw('bound/other', auth);
    await other.opened;
    for (const c of [...open, other]) c.ws.close();
  });

  test("a token's document quota holds for live updates, counted together with its HTTP writes", async () => {
    const oneDoc = { authorization: `Bearer ${ONE_DOC}` };
    expect((await http(`${base}/v1/docs/quota/first`, { method: 'PUT', headers: oneDoc, body: { n: 1 } })).status).toBe(200);
    const c = raw(`quota/second?token=${encodeURIComponent(ONE_DOC)}`);
    await c.opened;
    c.ws.send(updateMessage(textUpdate('a second document')));
    const closed = await c.closed;
    expect(closed.code).toBe(4403);
    expect(closed.reason).toBe('quota_exceeded');
    expect((await http(`${base}/v1/docs/quota/second`, { headers: oneDoc })).status).toBe(404);
    // Its existing document still takes live updates.
    const ok = raw(`quota/first?token=${encodeURIComponent(ONE_DOC)}`);
    await ok.opened;
    ok.ws.send(updateMessage(textUpdate('more')));
    await waitFor('the update to its own document is stored', async () => {
      const got = await http<Record<string, unknown>>(`${base}/v1/docs/quota/first`, { headers: oneDoc });
      return JSON.stringify(got.body).includes('more') ? true : undefined;
    });
    ok.ws.close();
  });

  test('an oversized update closes its connection with 4413; nothing of it is stored', async () => {
    const c = raw('bound/big', auth);
    await c.opened;
    // Just over limits.yjsUpdateBytes (256 KiB): within the message bound's framing slack, so decoded and refused.
    c.ws.send(updateMessage(textUpdate('x'.repeat(256 * 1024 + 100))));
    expect((await c.closed).code).toBe(4413);
    expect((await http(`${base}/v1/docs/bound/big`, { headers: auth })).status).toBe(404);
  });

  test('a message far over the update bound is refused from its header (1009), not buffered; the region keeps serving', async () => {
    const c = raw('bound/huge', auth);
    await c.opened;
    // The WebSocket server's own bound is the peer links' 16 MiB; this is 2 MiB.
    c.ws.send(updateMessage(textUpdate('x'.repeat(2 * 1024 * 1024))));
    // 1009; or 1006 when the server's TCP reset (the rest of the message
    // unread) overtakes its close frame on a loaded machine. The refusal
    // itself is counted below either way.
    expect([1009, 1006]).toContain((await c.closed).code);
    expect((await http(`${base}/v1/docs/bound/huge`, { headers: auth })).status).toBe(404);
    const metrics = await http<string>(`${base}/metrics`);
    expect(String(metrics.body)).toMatch(/meridian_requests_refused_total\{[^}]*reason="live_update_refused"[^}]*\} [1-9]/);
    const after = provider('bound', 'huge');
    await synced(after);
    // Counted and logged at a limited rate by the region, never as an error line per message.
    const log = readFileSync(cluster.region('solo').logPath, 'utf8');
    expect(log.split('\n').filter((line) => line.includes('"level":50') && line.includes('payload'))).toEqual([]);
  });

  test("a token's write rate covers its live updates and HTTP writes together: an update over it is held, then stored", async () => {
    const rated = { authorization: `Bearer ${RATED}` };
    const c = raw('rate/doc', rated);
    await c.opened;
    // The HTTP write takes the token's one-write burst; the live update must wait for the rate.
    expect((await http(`${base}/v1/docs/rate/other`, { method: 'PUT', headers: rated, body: { n: 1 } })).status).toBe(200);
    c.ws.send(updateMessage(textUpdate('held, not lost')));
    await waitFor('the held update counted', async () =>
      /reason="live_write_rate"[^}]*\} [1-9]/.test(String((await http<string>(`${base}/metrics`)).body)));
    const stored = await waitFor('the update stored', async () => {
      const got = await http<{ $yjs?: { body?: string } }>(`${base}/v1/docs/rate/doc`, { headers: auth });
      return got.body.$yjs?.body;
    });
    expect(stored).toBe('held, not lost');
    expect(c.ws.readyState).toBe(WebSocket.OPEN);
    c.ws.close();
  });

  test('awareness beyond its per-connection rate is dropped and counted; the connection stays open', async () => {
    const watcher = raw('bound/presence', auth);
    const flooder = raw('bound/presence', auth);
    await Promise.all([watcher.opened, flooder.opened]);
    const presence = new awarenessProtocol.Awareness(new Y.Doc());
    const sent = 400;
    for (let i = 0; i < sent; i++) {
      presence.setLocalStateField('cursor', i);
      flooder.ws.send(awarenessMessage(awarenessProtocol.encodeAwarenessUpdate(presence, [presence.clientID])));
    }
    const metrics = await waitFor('drops counted', async () => {
      const body = String((await http<string>(`${base}/metrics`)).body);
      return /reason="live_awareness_dropped"[^}]*\} [1-9]/.test(body) ? body : undefined;
    });
    expect(metrics).toBeTruthy();
    // A dropped message reaches nobody, so the watcher can never have them all.
    const awarenessOf = (m: Uint8Array): boolean => m[0] === 1;
    expect(watcher.messages.filter(awarenessOf).length).toBeLessThan(sent);
    expect(flooder.ws.readyState).toBe(WebSocket.OPEN);
    presence.destroy();
    watcher.ws.close();
    flooder.ws.close();
  });

  test('a client announcing more presence ids than a client holds is refused and counted; its own presence still goes through', async () => {
    const watcher = raw('bound/many-ids', auth);
    const greedy = raw('bound/many-ids', auth);
    await Promise.all([watcher.opened, greedy.opened]);
    const presence = presenceUpdate;
    const awarenessOf = (m: Uint8Array): boolean => m[0] === 1;
    greedy.ws.send(awarenessMessage(presence(Array.from({ length: 1000 }, (_, i) => 5000 + i))));
    await waitFor('the refusal counted', async () =>
      /reason="live_presence_ids"[^}]*\} [1-9]/.test(String((await http<string>(`${base}/metrics`)).body)));
    expect(watcher.messages.filter(awarenessOf)).toHaveLength(0);
    greedy.ws.send(awarenessMessage(presence([42])));
    await waitFor('its own presence relayed', async () => watcher.messages.filter(awarenessOf).length === 1);
    // A client that joins now is told of the one id, not the thousand.
    const late = raw('bound/many-ids', auth);
    await late.opened;
    const states = await waitFor('the states message', async () => late.messages.find(awarenessOf));
    const decoder = decoding.createDecoder(states);
    decoding.readVarUint(decoder);
    const update = decoding.readVarUint8Array(decoder);
    expect(decoding.readVarUint(decoding.createDecoder(update))).toBe(1);
    expect(greedy.ws.readyState).toBe(WebSocket.OPEN);
    for (const c of [watcher, greedy, late]) c.ws.close();
  });

  test('a client that does not read is dropped; another client of the document keeps receiving', async () => {
    const slow = raw('slow/doc', auth);
    await slow.opened;
    // Nothing is read from the socket any more: the region's send buffer for it fills.
    slow.ws.pause();
    const fast = provider('slow', 'doc');
    await synced(fast);
    // The writes come over HTTP: a live writer would get its own updates back
    // and, in a test process short of CPU, could itself be dropped as slow.
    const writer = new Y.Doc();
    const chunk = 'y'.repeat(200 * 1024);
    const rounds = 60;
    for (let i = 0; i < rounds; i++) {
      const before = Y.encodeStateVector(writer);
      writer.getText('body').insert(0, chunk);
      const res = await fetch(`${base}/v1/docs/slow/doc/yjs`, {
        method: 'POST', headers: { ...auth, 'content-type': 'application/octet-stream' }, body: Buffer.from(Y.encodeStateAsUpdate(writer, before)),
      });
      expect(res.status).toBe(200);
    }
    await waitFor('the fast client holds every write', async () => fast.doc.getText('body').length === rounds * chunk.length, 60_000);
    const metrics = await http<string>(`${base}/metrics`);
    expect(String(metrics.body)).toMatch(/meridian_requests_refused_total\{[^}]*reason="live_slow_client"[^}]*\} [1-9]/);
    slow.ws.resume();
    expect((await slow.closed).code).toBe(1006);
  }, 90_000);
});

describe('hostile bytes', () => {
  test('malformed messages close only their own connection; the region keeps serving', async () => {
    const watcher = provider('hostile', 'doc');
    await synced(watcher);
    const cases: Uint8Array[] = [
      new Uint8Array([]),
      new Uint8Array([0]),
      new Uint8Array([0, 9, 1, 1]),
      new Uint8Array([0, 2, 200]),
      new Uint8Array([0, 2, 3, 255, 255, 255]),
      new Uint8Array([1, 5, 1, 2]),
      updateMessage(new Uint8Array([7, 7, 7, 7])),
      new Uint8Array([1, 3, 1, 200, 200]),
    ];
    for (const bytes of cases) {
      const c = raw('hostile/doc', auth);
      await c.opened;
      c.ws.send(bytes);
      const { code } = await c.closed;
      expect([4400, 4500], `close code for [${[...bytes].join(',')}]`).toContain(code);
    }
    const text = raw('hostile/doc', auth);
    await text.opened;
    text.ws.send('not binary');
    expect((await text.closed).code).toBe(4400);
    watcher.doc.getText('body').insert(0, 'still here');
    await waitFor('the region still takes writes', async () => {
      const got = await http<{ $yjs?: { body?: string } }>(`${base}/v1/docs/hostile/doc`, { headers: auth });
      return got.body.$yjs?.body === 'still here';
    });
  });
});

describe('what the document is', () => {
  test('after a commit, a client that asked for it gets a meridian-version message (type 100)', async () => {
    const c = raw('ver/doc?versions=1', auth);
    await c.opened;
    const put = await http(`${base}/v1/docs/ver/doc`, { method: 'PUT', body: { a: 1 }, headers: auth });
    expect(put.status).toBe(200);
    const token = await waitFor('a version message', async () => {
      for (const m of c.messages) {
        const d = decoding.createDecoder(m);
        if (decoding.readVarUint(d) === 100) return decoding.readVarString(d);
      }
      return undefined;
    });
    expect(token).toMatch(/^v1\./);
    c.ws.close();
  });

  test("a client's own update is not sent back to it; the document's other clients get it", async () => {
    const writer = raw('echo/doc?versions=1', auth);
    const other = raw('echo/doc', auth);
    await Promise.all([writer.opened, other.opened]);
    // y-sync messages: type 0, then 1 (sync step 2) or 2 (update) carry document content.
    const carriesContent = (m: Uint8Array): boolean => {
      const d = decoding.createDecoder(m);
      return decoding.readVarUint(d) === 0 && decoding.readVarUint(d) !== 0 && decoding.readVarUint8Array(d).byteLength > 2;
    };
    await new Promise((r) => setTimeout(r, 100));
    const before = writer.messages.length;
    writer.ws.send(updateMessage(textUpdate('mine')));
    await waitFor('the other client gets the update', async () => other.messages.some(carriesContent));
    // The commit's version message reaches the writer (so it was told), its own update does not.
    await waitFor('the version message', async () => writer.messages.slice(before).some((m) => decoding.readVarUint(decoding.createDecoder(m)) === 100));
    expect(writer.messages.slice(before).filter(carriesContent)).toEqual([]);
    writer.ws.close();
    other.ws.close();
  });

  test('a document holding only editor content (an XmlFragment) is served by GET and listed', async () => {
    const p = provider('editor', 'page');
    await synced(p);
    const fragment = p.doc.getXmlFragment('prosemirror');
    const paragraph = new Y.XmlElement('paragraph');
    paragraph.insert(0, [new Y.XmlText('hello')]);
    fragment.insert(0, [paragraph]);
    p.doc.getText('title').insert(0, 'A page');
    const got = await waitFor('GET answers 200', async () => {
      const r = await http<Record<string, unknown>>(`${base}/v1/docs/editor/page`, { headers: auth });
      return r.status === 200 && JSON.stringify(r.body).includes('A page') ? r.body : undefined;
    });
    expect(got).toEqual({ $yjs: { prosemirror: '<paragraph>hello</paragraph>', title: 'A page' } });
    const list = await http<{ ids: string[] }>(`${base}/v1/docs/editor`, { headers: auth });
    expect(list.body.ids).toContain('page');
  });
});

describe('the awareness frame between regions', () => {
  test('round-trips, and a peer frame over the bound is refused as a protocol error', () => {
    const doc = 'notes/a' as DocKey;
    const update = new Uint8Array([1, 2, 3]);
    expect(decodeFrame(encodeFrame({ type: 'awareness', doc, update }), 1 << 20)).toEqual({ type: 'awareness', doc, update });
    const big = encodeFrame({ type: 'awareness', doc, update: new Uint8Array(MAX_AWARENESS_BYTES) });
    expect(decodeFrame(big, 1 << 20)).toMatchObject({ type: 'awareness' });
    // Written by hand: the encoder itself refuses an oversized update.
    const e = encoding.createEncoder();
    encoding.writeUint8(e, FRAME_MAGIC);
    encoding.writeUint8(e, PROTOCOL_VERSION);
    encoding.writeUint8(e, MSG_AWARENESS);
    encoding.writeVarString(e, doc);
    encoding.writeVarUint8Array(e, new Uint8Array(MAX_AWARENESS_BYTES + 1));
    expect(() => decodeFrame(encoding.toUint8Array(e), 1 << 20)).toThrow(ProtocolError);
    expect(() => encodeFrame({ type: 'awareness', doc, update: new Uint8Array(MAX_AWARENESS_BYTES + 1) })).toThrow(RangeError);
  });
});

describe('announcing the awareness frame in the link handshake', () => {
  test('a frame bound a peer announces is read only as a plain positive integer; anything else counts as unannounced', () => {
    expect(announcedMaxFrame('4194304')).toBe(4194304);
    for (const bad of [undefined, '', '0', '-1', '1e9', ' 1024', '0x100', 'abc', '99999999999999999', ['1024', '2048']]) {
      expect(announcedMaxFrame(bad)).toBe(UNANNOUNCED_MAX_FRAME_BYTES);
    }
  });

  const logger = pino({ level: 'silent' });
  const link = (region: string, peers: string[], maxFrameBytes = 1 << 20): LinkOptions => ({
    region: region as RegionId, cluster: 'test', secret: 'a-shared-secret', peers: peers as RegionId[],
    maxFrameBytes, heartbeatMs: 1000, tls: null,
  });

  test('a new dialer and acceptor both see the feature and each other\'s frame bound; a peer that announces neither is never marked for the feature', async () => {
    const app = Fastify();
    const accepted: Link[] = [];
    await acceptLinks(app, { link: link('eu-west', ['ap-south']), logger, onLink: (_r, l) => accepted.push(l), onRefused: () => undefined });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    const url = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
    try {
      const dialed = await dialLink({ region: 'eu-west' as RegionId, url }, { link: link('ap-south', ['eu-west'], 3 << 20), logger });
      expect(dialed.ephemeral).toBe(true);
      expect(dialed.peerMaxFrameBytes).toBe(1 << 20);
      await waitFor('accepted', async () => accepted.length === 1);
      expect(accepted[0]?.ephemeral).toBe(true);
      expect(accepted[0]?.peerMaxFrameBytes).toBe(3 << 20);
      dialed.close(1000, 'done');

      // A peer of the same protocol version from before the feature: its dial carries no features header.
      const challenge = await http<{ nonce: string }>(`${url}${CHALLENGE_PATH}`);
      const { headers } = createDialHeaders({
        secret: 'a-shared-secret', cluster: 'test', self: 'ap-south' as RegionId, peer: 'eu-west' as RegionId, serverNonce: challenge.body.nonce,
      });
      const old = new WebSocket(`${url.replace('http', 'ws')}${REPLICATE_PATH}`, { headers });
      const answered = await new Promise<Record<string, unknown>>((resolve) => old.once('upgrade', (res) => resolve(res.headers)));
      expect(answered[FEATURES_HEADER]).toBeUndefined();
      await waitFor('accepted', async () => accepted.length === 2);
      expect(accepted[1]?.ephemeral).toBe(false);
      // Nor its frame bound: taken as the one every node had before it was announced.
      expect(accepted[1]?.peerMaxFrameBytes).toBe(UNANNOUNCED_MAX_FRAME_BYTES);
      old.terminate();
    } finally {
      for (const l of accepted) l.close(1000, 'test over');
      await app.close();
    }
  });
});

describe("a caller's share of live connections", () => {
  const OTHER = 'live-test-token-another-caller';
  let own: Cluster;
  let url: string;

  beforeAll(async () => {
    own = await startTestCluster(['solo'], {
      limits: { liveConnectionsPerCaller: 2 },
      auth: { tokens: [{ token: RW, scope: 'read-write' }, { token: OTHER, scope: 'read-write' }] },
    });
    url = own.url('solo');
  }, 60_000);
  afterAll(async () => {
    await own?.dispose();
  });

  const connect = (doc: string, token: string): Raw => {
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/live/${doc}`, { headers: { authorization: `Bearer ${token}` } });
    sockets.push(ws);
    ws.on('error', () => undefined);
    return {
      ws, messages: [],
      opened: new Promise((resolve) => ws.once('open', () => resolve())),
      refusedWith: new Promise((resolve) => ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0))),
      closed: new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() }))),
    };
  };

  test('a caller beyond limits.liveConnectionsPerCaller gets 429 before the upgrade; other callers connect; a closed one frees its place', async () => {
    const mine = [connect('share/a', RW), connect('share/b', RW)];
    await Promise.all(mine.map((c) => c.opened));
    // Over its share, on any document.
    const over = connect('share/c', RW);
    expect(await over.refusedWith).toBe(429);
    // Another caller is not affected, on the same documents.
    const theirs = connect('share/a', OTHER);
    await theirs.opened;
    mine[0]?.ws.close();
    await mine[0]?.closed;
    await waitFor('a freed place', async () => {
      const again = connect('share/c', RW);
      const outcome = await Promise.race([again.opened.then(() => 'open'), again.refusedWith.then(String)]);
      if (outcome !== 'open') return undefined;
      again.ws.close();
      return true;
    });
    const metrics = String((await http<string>(`${url}/metrics`)).body);
    expect(metrics).toMatch(/meridian_requests_refused_total\{reason="live_caller_connections"[^}]*\} [1-9]/);
    for (const c of [...mine, theirs]) c.ws.close();
  });
});
