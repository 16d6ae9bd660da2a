/**
 * Changes that reach a region by state, not by log entries: catch-up by
 * state after a partition outlived the log, and a content conflict that
 * replaces a document. Live clients (y-websocket) and change-feed consumers
 * at the region that takes the state must learn of it at once, without any
 * further write.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { WebSocket } from 'ws';
import { WebsocketProvider } from 'y-websocket';
import * as Y from 'yjs';
import { LIVE_CLOSE } from '../src/contract.js';
import { live } from '../src/client/live.js';
import { http, startTestCluster, syncStatus, waitFor } from './helpers/cluster.js';
import { openFeed, type FeedReader } from './helpers/feed-reader.js';

type Cluster = Awaited<ReturnType<typeof startTestCluster>>;
let cluster: Cluster;
const A = 'ap-south';
const B = 'us-east';
const providers: WebsocketProvider[] = [];
const feeds: FeedReader[] = [];

beforeAll(async () => {
  // Entries older than one second are collected even if a peer lacks them: a long enough cut forces catch-up by state.
  cluster = await startTestCluster([A, B], { storage: { logRetentionMs: 1000, gcIntervalMs: 200, compactIntervalMs: 100 } });
  await waitFor('links up', async () => (await syncStatus(cluster.url(A))).peers.every((p) => p.state === 'up'), 20_000);
}, 60_000);
afterAll(async () => {
  for (const p of providers) p.destroy();
  for (const f of feeds) f.close();
  await cluster?.dispose();
});

function connect(region: string, collection: string, id: string): WebsocketProvider {
  const serverUrl = `${cluster.url(region).replace(/^http/, 'ws')}/v1/live/${collection}`;
  const provider = new WebsocketProvider(serverUrl, id, new Y.Doc(), { WebSocketPolyfill: WebSocket as never, disableBc: true });
  providers.push(provider);
  return provider;
}

async function synced(provider: WebsocketProvider): Promise<void> {
  await waitFor('provider synced', async () => provider.synced, 15_000, 20);
}

async function cutOff(region: string): Promise<void> {
  cluster.isolate(region);
  await waitFor(`${region} isolated`, async () => (await syncStatus(cluster.url(region))).isolated, 20_000);
}

describe('changes that arrive by state', () => {
  test('reach live clients and feed consumers at the healed region without any further write', async () => {
    const path = '/v1/docs/notes/healed';
    expect((await http(`${cluster.url(A)}${path}`, { method: 'PUT', body: { step: 0 } })).status).toBe(200);
    await waitFor('B holds the document', async () => (await http(`${cluster.url(B)}${path}`)).status === 200, 20_000);
    const provider = connect(B, 'notes', 'healed');
    await synced(provider);
    const feed = await openFeed(`${cluster.url(B)}/v1/events/notes/healed`);
    feeds.push(feed);
    expect(feed.status).toBe(200);
    await feed.until('ready', (f) => f.messages.some((m) => m.event === 'ready'));

    await cutOff(B);
    expect((await http(`${cluster.url(A)}${path}`, { method: 'PUT', body: { step: 1 } })).status).toBe(200);
    // Past the log retention: A no longer holds the entry B lacks.
    await new Promise((r) => setTimeout(r, 2500));
    cluster.heal();

    const root = provider.doc.getMap('root');
    await waitFor('the live client holds the change', async () => root.get('step') === 1, 30_000, 50);
    await feed.until('the feed reports the change', (f) => f.changes().some((c) => c.value?.['step'] === 1), 30_000);
    const change = feed.changes().find((c) => c.value?.['step'] === 1);
    expect(change).toMatchObject({ collection: 'notes', id: 'healed', value: { step: 1 } });
    // It came by state: the log could not serve it.
    const logs = await Promise.all([A, B].map((r) => readFile(cluster.region(r).logPath, 'utf8')));
    expect(logs.join('\n')).toMatch(/catching it up by state/);
  }, 90_000);

  test('a replaced document ends its live connections with 4410 and the SDK reports it', async () => {
    const path = '/v1/docs/notes/collide';
    const colliding = (text: string): Uint8Array => {
      const doc = new Y.Doc();
      doc.clientID = 31337;
      doc.getMap('root').set('title', text);
      return Y.encodeStateAsUpdate(doc);
    };
    await cutOff(A);
    for (const [region, text] of [[A, 'written at A'], [B, 'written at B']] as const) {
      const res = await fetch(`${cluster.url(region)}${path}/yjs`, {
        method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: Buffer.from(colliding(text)),
      });
      expect(res.status).toBe(200);
    }
    const closes: { region: string; code: number; reason: string }[] = [];
    const replaced: string[] = [];
    for (const region of [A, B]) {
      const provider = connect(region, 'notes', 'collide');
      provider.on('closed', (event: { code: number; reason: string }) => closes.push({ region, ...event }));
      await synced(provider);
      const session = live('notes', 'collide', new Y.Doc(), {
        regions: () => [{ name: region, url: cluster.url(region) }],
        WebSocketPolyfill: WebSocket,
        onReplaced: () => replaced.push(region),
      });
      await waitFor('session synced', async () => session.provider.synced, 15_000, 20);
    }
    cluster.heal();

    await waitFor('the losing region closed its clients', async () => closes.length > 0 && replaced.length > 0, 30_000, 50);
    expect(closes).toHaveLength(1);
    expect(closes[0]).toMatchObject({ code: LIVE_CLOSE.documentReplaced, reason: 'document_replaced' });
    expect(replaced).toEqual([closes[0]!.region]);
    // Opened again with a new Y.Doc, the client gets the winning content.
    const loser = closes[0]!.region;
    const winner = await waitFor('one content everywhere', async () => {
      const [a, b] = await Promise.all([A, B].map((r) => http<{ title: string }>(`${cluster.url(r)}${path}`)));
      return a!.body.title === b!.body.title ? a!.body.title : undefined;
    }, 30_000);
    const again = connect(loser, 'notes', 'collide');
    await synced(again);
    expect(again.doc.getMap('root').get('title')).toBe(winner);
  }, 90_000);
});
