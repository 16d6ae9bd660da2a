/**
 * Documents are held to a count of Yjs structs as well as to bytes:
 * building one costs time per struct, and 8 MiB of one-character map keys
 * are 700,000 of them. Local writes past `limits.maxDocumentStructs` are
 * refused (413 `too_complex`) and change nothing; peers' entries and states
 * past what merges may reach are refused. Real SQLite files; the HTTP part
 * runs a real region process.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import * as Y from 'yjs';
import * as encoding from 'lib0/encoding';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { createDocuments } from '../src/docs/documents.js';
import type { Documents } from '../src/docs/types.js';
import { docKey, type DocKey, type RegionId } from '../src/ids.js';
import { openStore } from '../src/storage/sqlite.js';
import type { NewLogEntry, Store } from '../src/storage/types.js';
import { http, startTestCluster } from './helpers/cluster.js';

const logger = pino({ level: 'silent' });
const opened: { docs: Documents; store: Store; dir: string }[] = [];

function region(name: string, bounds: { maxDocumentStructs?: number; maxMergedDocumentStructs?: number; cacheDocs?: number } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'meridian-structs-'));
  const store = openStore({ dataDir: dir, region: name as RegionId, synchronous: 'full', logger });
  const docs = createDocuments({ store, logger, cacheDocs: 100, yjsUpdateBytes: 1 << 20, compactIntervalMs: 0, ...bounds });
  const handle = { docs, store, dir };
  opened.push(handle);
  return handle;
}

afterEach(async () => {
  for (const h of opened.splice(0)) {
    await h.docs.close();
    await h.store.close();
    rmSync(h.dir, { recursive: true, force: true });
  }
});

/** `count` new keys, `prefix0`, `prefix1`, ...: a struct each. */
function keys(prefix: string, count: number, value: number | null = 1): Record<string, number | null> {
  const out: Record<string, number | null> = {};
  for (let i = 0; i < count; i++) out[`${prefix}${i}`] = value;
  return out;
}

/** A peer's writes as entries of its log: each patch one entry. */
async function peerEntries(doc: DocKey, patches: Record<string, number | null>[]): Promise<NewLogEntry[]> {
  const peer = region('peer');
  const entries: NewLogEntry[] = [];
  peer.docs.onCommitted((committed) => committed.forEach((e) => entries.push({ origin: e.origin, seq: e.seq, doc: e.doc, ts: e.ts, update: e.update })));
  for (const p of patches) await peer.docs.patch(doc, p);
  return entries;
}

/** A peer's whole state of a document of `count` keys. */
async function peerState(doc: DocKey, prefix: string, count: number): Promise<Uint8Array> {
  const peer = region('peer');
  await peer.docs.patch(doc, keys(prefix, count));
  return peer.docs.readYjs(doc)!;
}

describe('a document held to a count of Yjs structs', () => {
  it('refuses a local write past limits.maxDocumentStructs, keeps nothing of it, and takes deletions', async () => {
    const r = region('r1', { maxDocumentStructs: 3000 });
    const doc = docKey('c', 'many');
    await r.docs.patch(doc, keys('a', 2000));
    await expect(r.docs.patch(doc, keys('b', 2000))).rejects.toMatchObject({ code: 'too_complex', details: { limit: 3000 } });
    expect(Object.keys(r.docs.read(doc).value!)).toHaveLength(2000);
    // Counted full for a while: a write that could add is refused before it is applied.
    await expect(r.docs.patch(doc, { one: 1 })).rejects.toMatchObject({ code: 'too_complex' });
    // One that only deletes is taken.
    await r.docs.patch(doc, keys('a', 10, null));
    expect(Object.keys(r.docs.read(doc).value!)).toHaveLength(1990);
    // And deleted: deleting adds no struct.
    expect(await r.docs.remove(doc)).not.toBeNull();
    expect(r.docs.read(doc).value).toBeNull();
    // Other documents are written as before.
    await r.docs.patch(docKey('c', 'other'), keys('a', 2000));
    expect(Object.keys(r.docs.read(docKey('c', 'other')).value!)).toHaveLength(2000);
  });

  it('quarantines a peer entry that would merge a document past the bound for merges, and takes the next document', async () => {
    const doc = docKey('c', 'merged');
    const entries = await peerEntries(doc, [keys('a', 2000), keys('b', 2000), keys('c', 10)]);
    const r = region('r1', { maxDocumentStructs: 1000, maxMergedDocumentStructs: 3000 });
    expect(await r.docs.applyRemote(entries.slice(0, 1), 'peer' as RegionId)).toMatchObject({ applied: 1, quarantined: 0 });
    expect(await r.docs.applyRemote(entries.slice(1, 2), 'peer' as RegionId)).toMatchObject({ applied: 0, quarantined: 1 });
    expect(Object.keys(r.docs.read(doc).value!).sort()).toEqual(Object.keys(keys('a', 2000)).sort());
    // The document it was refused for now counts as full for a while: an entry that would fit is refused too,
    // without being applied; another document's entries are taken.
    expect(await r.docs.applyRemote(entries.slice(2), 'peer' as RegionId)).toMatchObject({ applied: 0, quarantined: 1 });
    const other = await peerEntries(docKey('c', 'next'), [keys('a', 100)]);
    expect(await r.docs.applyRemote(other, 'peer' as RegionId)).toMatchObject({ applied: 1, quarantined: 0 });
  });

  it('refuses local writes to a document merged past the bound before building it again, and still takes its deletion', async () => {
    const doc = docKey('c', 'merged-over');
    const entries = await peerEntries(doc, [keys('a', 1500), keys('b', 1500)]);
    // One document held at a time: reading another evicts it.
    const r = region('r1', { maxDocumentStructs: 1000, maxMergedDocumentStructs: 10_000, cacheDocs: 1 });
    expect(await r.docs.applyRemote(entries, 'peer' as RegionId)).toMatchObject({ applied: 2, quarantined: 0 });
    const load = r.store.loadDoc.bind(r.store);
    let loads = 0;
    r.store.loadDoc = (key) => {
      if (key === doc) loads++;
      return load(key);
    };
    await r.docs.patch(docKey('c', 'other'), { x: 1 });
    await expect(r.docs.patch(doc, { one: 1 })).rejects.toMatchObject({ code: 'too_complex', details: { documentStructs: 3001, limit: 1000 } });
    expect(loads).toBe(1);
    // Evicted, then written to again, and again: refused from what the first build found.
    for (let i = 0; i < 3; i++) {
      await r.docs.patch(docKey('c', 'other'), { x: i });
      await expect(r.docs.ops(doc, [{ op: 'increment', path: ['n'], by: 1 }])).rejects.toMatchObject({ code: 'too_complex' });
    }
    expect(loads).toBe(1);
    expect(await r.docs.remove(doc)).not.toBeNull();
    expect(r.docs.read(doc).value).toBeNull();
  });

  it('counts a document full no longer once a delete left it under the bound', async () => {
    const r = region('r1', { maxDocumentStructs: 3000 });
    const doc = docKey('c', 'nested');
    // The nested map, its 2,998 keys and the live marker: the bound exactly.
    await r.docs.put(doc, { o: keys('a', 2998) });
    await expect(r.docs.patch(doc, { x: 1 })).rejects.toMatchObject({ code: 'too_complex', details: { documentStructs: 3000 } });
    await expect(r.docs.patch(doc, { x: 1 })).rejects.toMatchObject({ code: 'too_complex' });
    // Deleted, the nested map's items are dropped by Yjs: the document is far under the bound, and written again.
    expect(await r.docs.remove(doc)).not.toBeNull();
    await r.docs.put(doc, { y: 1 });
    expect(r.docs.read(doc).value).toEqual({ y: 1 });
  });

  it("refuses a peer's state past the bound for merges, whether it holds too many structs itself or would merge to them", async () => {
    const r = region('r1', { maxMergedDocumentStructs: 3000 });
    const alone = docKey('c', 'alone');
    expect((await r.docs.applyState(alone, await peerState(alone, 'a', 4000), 'peer' as RegionId)).refused).toMatch(/state of c\/alone holds 4001 Yjs structs/);
    expect(r.docs.read(alone).value).toBeNull();
    expect(await r.docs.replaceState(alone, await peerState(alone, 'a', 4000), 'peer' as RegionId)).toEqual({ outcome: 'unrelated', mine: null });

    const merging = docKey('c', 'merging');
    expect((await r.docs.applyState(merging, await peerState(merging, 'a', 2000), 'peer' as RegionId)).refused).toBeNull();
    expect((await r.docs.applyState(merging, await peerState(merging, 'b', 2000), 'peer' as RegionId)).refused).toMatch(/would leave .* Yjs structs/);
    expect(Object.keys(r.docs.read(merging).value!)).toHaveLength(2000);
  });
});

describe('a client Yjs update past limits.maxDocumentStructs, over HTTP', () => {
  let cluster: Awaited<ReturnType<typeof startTestCluster>>;
  let url: string;
  beforeAll(async () => {
    cluster = await startTestCluster(['solo'], { limits: { maxDocumentStructs: 5000 } });
    url = cluster.regions.get('solo')!.url;
  });
  afterAll(async () => {
    await cluster.dispose();
  });

  it('is refused with 413 too_complex, the document unchanged, and the region serves on', async () => {
    const editor = new Y.Doc();
    editor.clientID = 31_337;
    const map = editor.getMap('m');
    const post = async (from: Uint8Array) => {
      const res = await fetch(`${url}/v1/docs/c/tiny-keys/yjs`, {
        method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: Buffer.from(Y.encodeStateAsUpdate(editor, from)),
      });
      return { status: res.status, body: (await res.json()) as { error?: string; message?: string; documentStructs?: number } };
    };
    for (let i = 0; i < 4000; i++) editor.transact(() => map.set(i.toString(36), i & 1));
    expect((await post(new Uint8Array([0]))).status).toBe(200);
    const held = Y.encodeStateVector(editor);
    for (let i = 4000; i < 8000; i++) editor.transact(() => map.set(i.toString(36), i & 1));
    const refused = await post(held);
    expect(refused.status).toBe(413);
    expect(refused.body).toMatchObject({ error: 'too_complex', documentStructs: 8000 });
    expect(refused.body.message).toMatch(/limits\.maxDocumentStructs/);
    const read = await http<{ $yjs: { m: Record<string, number> } }>(`${url}/v1/docs/c/tiny-keys`);
    expect(Object.keys(read.body.$yjs.m)).toHaveLength(4000);
    expect((await http(`${url}/healthz`)).status).toBe(200);
    expect((await http(`${url}/v1/docs/c/fine`, { method: 'PUT', body: { ok: true } })).status).toBe(200);
  });

  it("from a live client closes its connection with 4413 (too_complex), nothing of it kept", async () => {
    const editor = new Y.Doc();
    editor.clientID = 27_182;
    editor.transact(() => {
      for (let i = 0; i < 6000; i++) editor.getMap('m').set(i.toString(36), i & 1);
    });
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/live/c/live-keys`);
    const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    ws.on('error', () => undefined);
    await new Promise((resolve) => ws.once('open', resolve));
    // A y-websocket sync update message.
    const message = encoding.createEncoder();
    encoding.writeVarUint(message, 0);
    encoding.writeVarUint(message, 2);
    encoding.writeVarUint8Array(message, Y.encodeStateAsUpdate(editor));
    ws.send(encoding.toUint8Array(message));
    expect(await closed).toEqual({ code: 4413, reason: 'too_complex' });
    expect((await http(`${url}/v1/docs/c/live-keys`)).status).toBe(404);
  });
});
