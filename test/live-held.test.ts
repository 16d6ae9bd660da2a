/**
 * A live client whose updates wait for its token's write rate: its socket
 * is paused while they wait (bounded by their bytes, not only their count),
 * and it is not taken for dead meanwhile. Real region process, real socket.
 */
import * as encoding from 'lib0/encoding';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { WebSocket } from 'ws';
import * as Y from 'yjs';
import { http, startTestCluster, waitFor } from './helpers/cluster.js';

const RATED = 'live-held-token-twenty-writes-a-second';
const KEEP_ALIVE_MS = 300;

let cluster: Awaited<ReturnType<typeof startTestCluster>>;
let base: string;

beforeAll(async () => {
  cluster = await startTestCluster(['solo'], {
    limits: { yjsUpdateBytes: 256 * 1024, liveKeepAliveMs: KEEP_ALIVE_MS },
    auth: { tokens: [{ token: RATED, scope: 'read-write', quota: { writesPerSecond: 20, writeBurst: 1 } }] },
  });
  base = cluster.region('solo').url;
}, 60_000);
afterAll(async () => {
  await cluster?.dispose();
});

/** A y-websocket update message inserting `text` at the start of the document's text. */
function textMessage(text: string): Uint8Array {
  const doc = new Y.Doc();
  doc.getText('body').insert(0, text);
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, 0);
  encoding.writeVarUint(e, 2);
  encoding.writeVarUint8Array(e, Y.encodeStateAsUpdate(doc));
  return encoding.toUint8Array(e);
}

test('updates held for the write rate pause the socket and are all stored; the connection is not cut for its pongs meanwhile', async () => {
  const headers = { authorization: `Bearer ${RATED}` };
  const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/v1/live/held/doc`, { headers });
  ws.on('error', () => undefined);
  await new Promise<void>((resolve) => ws.once('open', () => resolve()));
  let closed: number | null = null;
  ws.once('close', (code) => (closed = code));
  // Forty updates at twenty a second: about 2 s held, more messages than wait before the socket is paused, so
  // its pongs go unread for several keep-alive intervals.
  const parts = 40;
  const size = 10_000;
  for (let i = 0; i < parts; i++) ws.send(textMessage(String(i % 10).repeat(size)));
  const length = await waitFor('every held update stored', async () => {
    const got = await http<{ $yjs?: { body?: string } }>(`${base}/v1/docs/held/doc`, { headers });
    const n = got.body.$yjs?.body?.length ?? 0;
    return n === parts * size ? n : undefined;
  }, 20_000, 100);
  expect(length).toBe(parts * size);
  // Several intervals after: still open, and still answering pings.
  await new Promise((resolve) => setTimeout(resolve, 3 * KEEP_ALIVE_MS));
  expect(closed).toBeNull();
  expect(ws.readyState).toBe(WebSocket.OPEN);
  ws.close();
});
