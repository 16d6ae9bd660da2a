/**
 * A JSON read of a large document not held in memory is built and rendered
 * on a thread of its own, so that the region's event loop goes on serving
 * (building a document costs time per Yjs struct: seconds for a few hundred
 * thousand). A real region process and SQLite file; a restart empties its
 * document cache.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import * as decoding from 'lib0/decoding';
import { WebSocket } from 'ws';
import { readDocument } from '../src/crdt/model.js';
import { http, startTestCluster } from './helpers/cluster.js';
import { openFeed } from './helpers/feed-reader.js';

type Cluster = Awaited<ReturnType<typeof startTestCluster>>;

/** `count` keys `prefix-00000`, ... in PATCHes under the per-write node bound. */
async function fill(url: string, doc: string, prefix: string, count: number): Promise<Record<string, number>> {
  const all: Record<string, number> = {};
  for (let start = 0; start < count; start += 4500) {
    const patch: Record<string, number> = {};
    for (let i = start; i < Math.min(count, start + 4500); i++) patch[`${prefix}-${String(i).padStart(5, '0')}`] = i;
    const res = await http(`${url}/v1/docs/big/${doc}`, { method: 'PATCH', body: patch });
    expect(res.status).toBe(200);
    Object.assign(all, patch);
  }
  return all;
}

async function metric(url: string, name: string): Promise<number> {
  const res = await fetch(`${url}/metrics`);
  const line = (await res.text()).split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return Number(line?.split(' ').at(-1) ?? NaN);
}

const coldRenders = (url: string) => metric(url, 'meridian_cold_renders_total');

describe('JSON reads of large documents not held in memory', () => {
  let cluster: Cluster | undefined;
  let url = '';
  const expected: Record<string, Record<string, number | string>> = {};

  beforeAll(async () => {
    cluster = await startTestCluster(['solo']);
    url = cluster.url('solo');
    // 1.2 MB of state: always rendered off the event loop. 210 KB: rendered there once, then held.
    expected.large = await fill(url, 'large', 'key', 90_000);
    // Overwritten before the restart: no read may send the old value.
    for (const secret of ['S3CRET-VALUE-1234', 'redacted']) {
      expect((await http(`${url}/v1/docs/big/large`, { method: 'PATCH', body: { secret } })).status).toBe(200);
    }
    expected.large = { ...expected.large, secret: 'redacted' };
    expected.medium = await fill(url, 'medium', 'key', 15_000);
    expected.small = await fill(url, 'small', 'key', 100);
    await cluster.restart('solo');
    url = cluster.url('solo');
  }, 120_000);

  afterAll(async () => {
    await cluster?.dispose();
  });

  /** PATCHes `doc` and returns what it now holds. */
  const write = async (doc: string, body: Record<string, number>) => {
    expect((await http(`${url}/v1/docs/big/${doc}`, { method: 'PATCH', body })).status).toBe(200);
    expected[doc] = { ...expected[doc], ...body };
    return { ...expected[doc] };
  };

  it('are rendered on a thread of their own; smaller ones on the event loop, held once read again', async () => {
    expect(await coldRenders(url)).toBe(0);
    const read = async (doc: string) => {
      const res = await http<Record<string, number | string>>(`${url}/v1/docs/big/${doc}`);
      expect(res.status).toBe(200);
      expect(res.headers.get('meridian-version')).toBeTruthy();
      expect(res.body).toEqual(expected[doc]);
    };
    await read('large');
    expect(await coldRenders(url)).toBe(1);
    // Past the size a read makes the region hold decoded: rendered there at each read.
    await read('large');
    expect(await coldRenders(url)).toBe(2);
    await read('medium');
    expect(await coldRenders(url)).toBe(3);
    // Read again: built and held, then read from memory.
    await read('medium');
    await read('medium');
    await read('small');
    expect(await coldRenders(url)).toBe(3);
    // Written, the large one is held decoded, and still rendered there (from its state encoded here): 90,000 structs.
    expect((await http(`${url}/v1/docs/big/large`, { method: 'PATCH', body: { extra: 1 } })).status).toBe(200);
    expected.large = { ...expected.large, extra: 1 };
    await read('large');
    expect(await coldRenders(url)).toBe(4);
    // The medium one (15,000 structs) is held decoded and rendered here.
    await read('medium');
    expect(await coldRenders(url)).toBe(4);
  });

  it('serve reads of the same document at once from one render, and other requests meanwhile', async () => {
    await cluster!.restart('solo');
    url = cluster!.url('solo');
    const before = await coldRenders(url);
    const done: string[] = [];
    const reads = Array.from({ length: 4 }, () => http<Record<string, number | string>>(`${url}/v1/docs/big/large`).then((res) => (done.push('large'), res)));
    // Other requests are answered while the document is built and rendered elsewhere: on the event loop,
    // the first large read would be answered before this one was even parsed.
    expect((await http(`${url}/v1/docs/big/small`)).status).toBe(200);
    done.push('small');
    for (const res of await Promise.all(reads)) {
      expect(res.status).toBe(200);
      expect(res.body).toEqual(expected.large);
    }
    expect(done[0]).toBe('small');
    expect(await coldRenders(url)).toBeGreaterThan(before);
    expect(await coldRenders(url)).toBeLessThanOrEqual(before + 2);
  });

  it('render binary reads there too: the whole state, or what a state vector lacks', async () => {
    await cluster!.restart('solo');
    url = cluster!.url('solo');
    const before = await coldRenders(url);
    const res = await fetch(`${url}/v1/docs/big/large/yjs`);
    expect(res.status).toBe(200);
    expect(res.headers.get('meridian-version')).toBeTruthy();
    const replica = new Y.Doc();
    const state = new Uint8Array(await res.arrayBuffer());
    expect(Buffer.from(state).includes('S3CRET')).toBe(false);
    Y.applyUpdate(replica, state);
    expect(readDocument(replica)).toEqual(expected.large);
    expect(await coldRenders(url)).toBe(before + 1);
    // What the region holds beyond a client's state vector: nothing, and then one write.
    const sv = Buffer.from(Y.encodeStateVector(replica)).toString('base64url');
    const none = new Uint8Array(await (await fetch(`${url}/v1/docs/big/large/yjs?sv=${sv}`)).arrayBuffer());
    expect(none.byteLength).toBeLessThan(64);
    expect(await coldRenders(url)).toBe(before + 2);
    const small = new Uint8Array(await (await fetch(`${url}/v1/docs/big/small/yjs?sv=${sv}`)).arrayBuffer());
    expect(small.byteLength).toBeGreaterThan(100);
    expect(await coldRenders(url)).toBe(before + 2);
  });

  it('answer whether a document has conflicts without building it', async () => {
    await cluster!.restart('solo');
    url = cluster!.url('solo');
    const held = await metric(url, 'meridian_documents_loaded');
    const page = await http<{ conflicts: unknown[] }>(`${url}/v1/docs/big/large/conflicts`);
    expect(page.status).toBe(200);
    expect(page.body.conflicts).toEqual([]);
    expect((await http(`${url}/v1/docs/big/never-written/conflicts`)).status).toBe(404);
    expect(await metric(url, 'meridian_documents_loaded')).toBe(held);
  });

  it("render a change feed's events of a large document there, sent in commit order with the others", async () => {
    await cluster!.restart('solo');
    url = cluster!.url('solo');
    const before = await coldRenders(url);
    const feed = await openFeed(`${url}/v1/events/big`);
    try {
      await feed.until('ready', (r) => r.messages.some((m) => m.event === 'ready'));
      // Written without waiting for the feed: the small change waits behind the large one rendered elsewhere.
      const large1 = await write('large', { feed: 1 });
      const small = await write('small', { feed: 1 });
      const large2 = await write('large', { feed: 2 });
      await feed.until('three changes', (r) => r.changes().length >= 3);
      const changes = feed.changes();
      expect(changes.map((c) => c.id)).toEqual(['large', 'small', 'large']);
      expect(changes[0]!.value).toEqual(large1);
      expect(changes[1]!.value).toEqual(small);
      expect(changes[2]!.value).toEqual(large2);
      expect(feed.messages.some((m) => m.event === 'cutoff')).toBe(false);
      // Each large value rendered on the thread (encoded here: 90,000 structs held decoded once written).
      expect(await coldRenders(url)).toBe(before + 2);
    } finally {
      feed.close();
    }
  });

  it("render a resumed change feed's large documents there too", async () => {
    await cluster!.restart('solo');
    url = cluster!.url('solo');
    const live = await openFeed(`${url}/v1/events/big`);
    await live.until('ready', (r) => r.messages.some((m) => m.event === 'ready'));
    const from = live.lastId()!;
    live.close();
    const before = await coldRenders(url);
    const large = await write('large', { resumed: 1 });
    const small = await write('small', { resumed: 1 });
    const resumed = await openFeed(`${url}/v1/events/big?after=${from}`);
    try {
      await resumed.until('ready', (r) => r.messages.some((m) => m.event === 'ready'));
      expect(JSON.parse(resumed.messages.find((m) => m.event === 'ready')!.data)).toMatchObject({ mode: 'log' });
      const changes = resumed.changes();
      expect(changes.map((c) => c.id)).toEqual(['large', 'small']);
      expect(changes[0]!.value).toEqual(large);
      expect(changes[1]!.value).toEqual(small);
      expect(await coldRenders(url)).toBe(before + 1);
    } finally {
      resumed.close();
    }
  });

  it("find a live client's first sync step there: its connection opens without building the document here", async () => {
    await cluster!.restart('solo');
    url = cluster!.url('solo');
    const before = await coldRenders(url);
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/live/big/large`);
    const first = await new Promise<Uint8Array>((resolve, reject) => {
      ws.once('message', (data: Buffer) => resolve(new Uint8Array(data)));
      ws.once('error', reject);
    });
    ws.close();
    // y-websocket: message type 0 (sync), sync step 1, the region's state vector.
    const decoder = decoding.createDecoder(first);
    expect(decoding.readVarUint(decoder)).toBe(0);
    expect(decoding.readVarUint(decoder)).toBe(0);
    const sv = Y.decodeStateVector(decoding.readVarUint8Array(decoder));
    expect(await coldRenders(url)).toBe(before + 1);
    const whole = new Y.Doc();
    Y.applyUpdate(whole, new Uint8Array(await (await fetch(`${url}/v1/docs/big/large/yjs`)).arrayBuffer()));
    expect(sv).toEqual(Y.decodeStateVector(Y.encodeStateVector(whole)));
  });
});
