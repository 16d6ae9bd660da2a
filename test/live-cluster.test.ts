/**
 * Live clients across regions: unmodified y-websocket providers (in Node,
 * over `ws`) connected to different region processes edit one document and
 * see each other's edits and presence.
 */
import * as encoding from 'lib0/encoding';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { WebSocket } from 'ws';
import { WebsocketProvider } from 'y-websocket';
import * as Y from 'yjs';
import { live } from '../src/client/live.js';
import { http, startTestCluster, syncStatus, waitFor } from './helpers/cluster.js';

type Cluster = Awaited<ReturnType<typeof startTestCluster>>;
let cluster: Cluster;
const providers: WebsocketProvider[] = [];

beforeAll(async () => {
  cluster = await startTestCluster(['ap-south', 'us-east']);
}, 60_000);
afterAll(async () => {
  for (const p of providers) p.destroy();
  await cluster?.dispose();
});

function urlOf(region: string): string {
  const r = cluster.regions.get(region);
  if (!r) throw new Error(`no region ${region}`);
  return r.url;
}

/** A provider for `collection/id` at a region, as an editor would open it. */
function connect(region: string, collection: string, id: string, doc = new Y.Doc()): WebsocketProvider {
  const serverUrl = `${urlOf(region).replace(/^http/, 'ws')}/v1/live/${collection}`;
  const provider = new WebsocketProvider(serverUrl, id, doc, { WebSocketPolyfill: WebSocket as never, disableBc: true });
  providers.push(provider);
  return provider;
}

async function synced(provider: WebsocketProvider): Promise<void> {
  await waitFor('provider synced', async () => provider.synced, 15_000, 20);
}

describe('live clients at two regions', () => {
  test('concurrent edits of one Y.Text converge at both regions and reach the JSON view', async () => {
    const a = connect('ap-south', 'notes', 'shared');
    const b = connect('us-east', 'notes', 'shared');
    await Promise.all([synced(a), synced(b)]);
    const ta = a.doc.getText('body');
    const tb = b.doc.getText('body');
    for (let i = 0; i < 20; i++) {
      ta.insert(0, `a${i} `);
      tb.insert(tb.length, `b${i} `);
    }
    await waitFor('both providers hold every edit', async () =>
      ta.toString() === tb.toString() && ta.toString().split(' ').filter(Boolean).length === 40, 20_000);
    expect(ta.toString()).toBe(tb.toString());
    // The root-level Y.Text is not part of the JSON model: GET shows it under $yjs, at either region.
    const expected = ta.toString();
    await waitFor('GET shows the editor text', async () => {
      const got = await http<{ $yjs?: { body?: string } }>(`${urlOf('us-east')}/v1/docs/notes/shared`);
      return got.status === 200 && got.body.$yjs?.body === expected;
    }, 20_000);
  });

  test('a region cut off keeps serving its live clients; after the heal both sides converge', async () => {
    const a = connect('ap-south', 'notes', 'cut');
    const b = connect('us-east', 'notes', 'cut');
    await Promise.all([synced(a), synced(b)]);
    cluster.isolate('us-east');
    try {
      await waitFor('us-east sees itself isolated', async () => (await syncStatus(urlOf('us-east'))).isolated, 20_000);
      for (let i = 0; i < 10; i++) {
        a.doc.getText('body').insert(0, `a${i} `);
        b.doc.getText('body').insert(0, `b${i} `);
      }
      // Each side's own edits are durable at its region while the link is down.
      await waitFor('us-east stores its side', async () => {
        const got = await http<{ $yjs?: { body?: string } }>(`${urlOf('us-east')}/v1/docs/notes/cut`);
        return got.body.$yjs?.body?.includes('b9') === true;
      }, 20_000);
    } finally {
      cluster.heal();
    }
    const words = (d: Y.Doc): number => d.getText('body').toString().split(' ').filter(Boolean).length;
    await waitFor('both providers hold both sides', async () =>
      words(a.doc) === 20 && a.doc.getText('body').toString() === b.doc.getText('body').toString(), 30_000);
  }, 60_000);

  test('a JSON PUT at one region reaches a provider at the other as a Yjs update', async () => {
    const b = connect('us-east', 'notes', 'json');
    await synced(b);
    const put = await http(`${urlOf('ap-south')}/v1/docs/notes/json`, { method: 'PUT', body: { title: 'hello' } });
    expect(put.status).toBe(200);
    const root = b.doc.getMap('root');
    await waitFor('the PUT reaches the provider', async () => root.get('title') === 'hello', 20_000);
  });

  test('an update under a region client id is refused (4409); other clients and replication keep working', async () => {
    const a = connect('ap-south', 'notes', 'refused');
    const b = connect('us-east', 'notes', 'refused');
    await Promise.all([synced(a), synced(b)]);
    const bad = new WebSocket(`${urlOf('ap-south').replace(/^http/, 'ws')}/v1/live/notes/refused`);
    bad.on('error', () => undefined);
    await new Promise((resolve) => bad.once('open', resolve));
    const forged = new Y.Doc();
    forged.clientID = 2 ** 32 + 7;
    forged.getText('body').insert(0, 'forged');
    const e = encoding.createEncoder();
    encoding.writeVarUint(e, 0);
    encoding.writeVarUint(e, 2);
    encoding.writeVarUint8Array(e, Y.encodeStateAsUpdate(forged));
    bad.send(encoding.toUint8Array(e));
    const code = await new Promise<number>((resolve) => bad.once('close', (c) => resolve(c)));
    expect(code).toBe(4409);
    a.doc.getText('body').insert(0, 'after');
    await waitFor('the next edit crosses regions', async () => b.doc.getText('body').toString() === 'after', 20_000);
    expect(a.doc.getText('body').toString()).toBe('after');
  });

  test('presence crosses regions and is removed when its client leaves', async () => {
    const a = connect('ap-south', 'notes', 'presence');
    const b = connect('us-east', 'notes', 'presence');
    await Promise.all([synced(a), synced(b)]);
    b.awareness.setLocalStateField('user', { name: 'bo' });
    const seenAtA = (): boolean =>
      [...a.awareness.getStates().values()].some((s) => (s as { user?: { name?: string } }).user?.name === 'bo');
    await waitFor('the user at us-east is seen at ap-south', async () => seenAtA(), 20_000, 50);
    b.destroy();
    await waitFor('the state is removed after disconnect', async () => !seenAtA(), 20_000, 50);
  });
});

describe('the SDK live session', () => {
  // Last in the file: it kills a region.
  test('moves to the next region when its region dies, without losing unsynced edits, and re-announces presence', async () => {
    const order = [
      { name: 'ap-south', url: urlOf('ap-south') },
      { name: 'us-east', url: urlOf('us-east') },
    ];
    const session = live('notes', 'failover', new Y.Doc(), { regions: () => order, WebSocketPolyfill: WebSocket, failuresBeforeMove: 2 });
    try {
      await synced(session.provider);
      expect(session.region.name).toBe('ap-south');
      const text = session.provider.doc.getText('body');
      text.insert(0, 'before ');
      session.awareness.setLocalStateField('user', { name: 'mover' });
      const atUsEast = async (): Promise<string | undefined> =>
        (await http<{ $yjs?: { body?: string } }>(`${urlOf('us-east')}/v1/docs/notes/failover`)).body.$yjs?.body;
      await waitFor('the first edit replicates', async () => (await atUsEast())?.includes('before'), 20_000);
      await cluster.kill('ap-south');
      // Made while no region holds it: only the client has this edit.
      text.insert(text.length, 'during');
      await waitFor('the session moves to us-east', async () => session.region.name === 'us-east' && session.provider.synced, 30_000);
      await waitFor('the unsynced edit reaches us-east', async () => (await atUsEast()) === 'before during', 20_000);
      const observer = connect('us-east', 'notes', 'failover');
      await waitFor('presence is announced again at the new region', async () =>
        [...observer.awareness.getStates().values()].some((st) => (st as { user?: { name?: string } }).user?.name === 'mover'), 20_000, 50);
    } finally {
      session.destroy();
    }
  }, 90_000);
});

