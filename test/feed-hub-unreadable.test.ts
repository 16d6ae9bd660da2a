/**
 * A commit whose document cannot be read for one change feed (a document
 * that cannot be built) ends that feed, which its consumer resumes from the
 * position it holds, and still reaches every other feed: the error used to
 * end the commit's dispatch, and the feeds after it lost its events.
 * Real streams on real HTTP responses, the region's write path and store;
 * reads of the one document fail as a document too costly to build does.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, expect, it } from 'vitest';
import { FeedHub, FeedSubscriber } from '../src/api/feed-hub.js';
import { SseStream } from '../src/api/feed-stream.js';
import { createDocuments } from '../src/docs/documents.js';
import type { Documents } from '../src/docs/types.js';
import { docKey, type RegionId } from '../src/ids.js';
import { openStore } from '../src/storage/sqlite.js';

const logger = pino({ level: 'silent' });
const dir = mkdtempSync(join(tmpdir(), 'meridian-feed-unreadable-'));
const store = openStore({ dataDir: dir, region: 'eu-west' as RegionId, synchronous: 'normal', logger });
const documents = createDocuments({ store, logger, cacheDocs: 10, yjsUpdateBytes: 1 << 20, compactIntervalMs: 0 });
const BROKEN = docKey('broken', 'x');
const NOTE = docKey('notes', 'y');
/** The region's documents, but the one document cannot be read. */
const unreadable = new Proxy(documents, {
  get(target, prop) {
    if (prop === 'read') {
      return (doc: typeof BROKEN) => {
        if (doc === BROKEN) throw new Error('the document cannot be built within the bound');
        return target.read(doc);
      };
    }
    const value: unknown = Reflect.get(target, prop);
    return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
  },
}) as Documents;
let server: Server | null = null;

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined));
  await documents.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

it('ends the one feed whose document cannot be read, and still sends the commit to every other feed', async () => {
  const hub = new FeedHub(unreadable);
  server = createServer((req, res) => {
    const stream = new SseStream(res, { queueBytes: 1 << 20, heartbeatMs: 60_000 });
    const subscriber = new FeedSubscriber({ collection: req.url!.slice(1), id: null }, stream, documents.versionVector(), () => undefined);
    hub.add(subscriber);
    subscriber.goLive('live');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  const open = async (collection: string): Promise<{ res: IncomingMessage; text: () => string }> => {
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      httpRequest({ host: '127.0.0.1', port, path: `/${collection}` }, resolve).on('error', reject).end();
    });
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => (text += chunk));
    return { res, text: () => text };
  };
  // The feed that cannot read its document first: it is handed the commit first.
  const broken = await open('broken');
  const notes = await open('notes');
  const ready = async (feed: { text: () => string }) => {
    while (!feed.text().includes('event: ready')) await new Promise((r) => setTimeout(r, 10));
  };
  await Promise.all([ready(broken), ready(notes)]);
  // One commit changes both documents.
  await Promise.all([documents.put(BROKEN, { n: 1 }), documents.put(NOTE, { n: 2 })]);
  const deadline = Date.now() + 5_000;
  while (!notes.text().includes('event: change') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  expect(notes.text()).toMatch(/event: change\ndata: \{"collection":"notes","id":"y","version":"[^"]+","value":\{"n":2\}\}/);
  // The other feed is ended: its consumer resumes from where it was.
  if (!broken.res.complete) await once(broken.res, 'end');
  expect(broken.text()).not.toMatch(/event: change/);
});
