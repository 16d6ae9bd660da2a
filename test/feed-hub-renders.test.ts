/**
 * A change feed's value of a large document is rendered on the render
 * thread, not on the event loop: the commit waits for it, and every commit
 * after it waits behind it, so events keep their order. Commits that pile
 * up behind a render past the bound cut the feeds off with a position to
 * resume from (`region_busy`), instead of holding them without end. Real
 * streams on real HTTP responses, the region's write path, store, writer
 * thread and render thread.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { FeedHub, FeedSubscriber } from '../src/api/feed-hub.js';
import { OversizedSends, SseStream } from '../src/api/feed-stream.js';
import { ColdRenderer } from '../src/docs/cold-render.js';
import { createDocuments } from '../src/docs/documents.js';
import { docKey, type RegionId } from '../src/ids.js';
import { openStore } from '../src/storage/sqlite.js';

const logger = pino({ level: 'silent' });
const dir = mkdtempSync(join(tmpdir(), 'meridian-feed-renders-'));
// The threads as the region runs them (built by the test setup): commits on the writer thread are on their way
// (`settled`) while the event loop goes on.
const built = (file: string) => fileURLToPath(new URL(`../dist/src/${file}`, import.meta.url));
const store = openStore({ dataDir: dir, region: 'eu-west' as RegionId, synchronous: 'normal', writerThread: true, writerThreadFile: built('storage/writer-thread.js'), logger });
const renderer = new ColdRenderer(built('docs/render-thread.js'));
const documents = createDocuments({ store, logger, cacheDocs: 100, decodedDocs: 10, yjsUpdateBytes: 1 << 24, compactIntervalMs: 0, maxWriteNodes: 200_000, renderer });
const LARGE = docKey('c', 'large');
const SMALL = docKey('c', 'small');
const KEYS = 100_000;
let server: Server | null = null;
let port = 0;
let main: FeedHub;
let tight: FeedHub;
const oversized = new OversizedSends(64 << 20);
const failures: unknown[] = [];

beforeAll(async () => {
  const large: Record<string, number> = {};
  for (let i = 0; i < KEYS; i++) large[`k${i}`] = i;
  await documents.put(LARGE, large);
  main = new FeedHub(documents, (err) => failures.push(err));
  // Two commits may wait behind a render, no more.
  tight = new FeedHub(documents, (err) => failures.push(err), 2);
  server = createServer((req, res) => {
    // /<hub>/<collection>
    const [, which, collection] = req.url!.split('/');
    const hub = which === 'tight' ? tight : main;
    const stream = new SseStream(res, { queueBytes: 1 << 20, heartbeatMs: 60_000, oversized });
    const subscriber = new FeedSubscriber({ collection: collection!, id: null }, stream, documents.versionVector(), () => undefined);
    hub.add(subscriber);
    subscriber.goLive('live');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  port = typeof address === 'object' && address !== null ? address.port : 0;
}, 60_000);

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined));
  main?.close();
  tight?.close();
  await documents.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Feed {
  res: IncomingMessage;
  events: () => { event: string; data: Record<string, unknown> }[];
}

async function open(hub: 'main' | 'tight' = 'main', collection = 'c'): Promise<Feed> {
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    httpRequest({ host: '127.0.0.1', port, path: `/${hub}/${collection}` }, resolve).on('error', reject).end();
  });
  let text = '';
  res.setEncoding('utf8');
  res.on('data', (chunk: string) => (text += chunk));
  const feed = {
    res,
    // Whole events only: the last block may still be arriving.
    events: () => text.split('\n\n').slice(0, -1).flatMap((block) => {
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      return event && data ? [{ event, data: JSON.parse(data) as Record<string, unknown> }] : [];
    }),
  };
  await until(feed, (events) => events.some((e) => e.event === 'ready'));
  return feed;
}

async function until(feed: Feed, done: (events: ReturnType<Feed['events']>) => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!done(feed.events())) {
    if (Date.now() > deadline) throw new Error(`feed: ${JSON.stringify(feed.events().map((e) => [e.event, e.event === 'change' ? '' : e.data]))}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

it('sends a large document rendered on the thread, and the commits after it in order', async () => {
  const feed = await open();
  const rendered = documents.coldRenders();
  await documents.patch(LARGE, { n: 1 });
  await documents.patch(SMALL, { n: 1 });
  await until(feed, (events) => events.filter((e) => e.event === 'change').length >= 2);
  const changes = feed.events().filter((e) => e.event === 'change');
  expect(changes.map((e) => e.data['id'])).toEqual(['large', 'small']);
  const value = changes[0]!.data['value'] as Record<string, number>;
  expect(Object.keys(value)).toHaveLength(KEYS + 1);
  expect(value['n']).toBe(1);
  expect(changes[1]!.data['value']).toEqual({ n: 1 });
  expect(documents.coldRenders()).toBe(rendered + 1);
  feed.res.destroy();
});

it("keeps each document's values going forward while changes wait behind a render", async () => {
  const feed = await open();
  // Not held decoded when first written (a new document is held encoded), then changed twice, all while the large one renders.
  await documents.patch(LARGE, { n: 'x' as never });
  const fresh = docKey('c', 'fresh');
  await documents.put(fresh, { v: 1 });
  await documents.patch(fresh, { v: 2 });
  await documents.patch(fresh, { v: 3 });
  await until(feed, (events) => events.filter((e) => e.event === 'change').length >= 4);
  const values = feed.events().filter((e) => e.event === 'change' && e.data['id'] === 'fresh').map((e) => (e.data['value'] as { v: number }).v);
  expect(values).toHaveLength(3);
  expect(values).toEqual([...values].sort((a, b) => a - b));
  expect(values.at(-1)).toBe(3);
  feed.res.destroy();
});

it('cuts the feeds off with region_busy and the position they hold when more commits wait than the bound, and serves feeds after', async () => {
  const feed = await open('tight');
  const ready = feed.events().find((e) => e.event === 'ready')!.data['version'];
  // The render of the large document takes far longer than three small commits.
  await documents.patch(LARGE, { n: 2 });
  for (let i = 2; i <= 4; i++) await documents.patch(SMALL, { n: i });
  await until(feed, (events) => events.some((e) => e.event === 'cutoff'));
  if (!feed.res.complete) await once(feed.res, 'end');
  const events = feed.events();
  expect(events.filter((e) => e.event === 'change')).toEqual([]);
  expect(events.at(-1)).toEqual({ event: 'cutoff', data: { version: ready, reason: 'region_busy' } });
  // The hub goes on: a feed opened now gets the next change.
  const next = await open('tight');
  await documents.patch(SMALL, { n: 5 });
  await until(next, (e) => e.some((x) => x.event === 'change'));
  expect(next.events().filter((e) => e.event === 'change').map((e) => e.data['value'])).toEqual([{ n: 5 }]);
  expect(failures).toEqual([]);
  next.res.destroy();
});

it('neither delays nor cuts off a feed that does not follow the large document', async () => {
  const small = docKey('o', 'a');
  await documents.put(small, { i: 0 });
  expect(documents.rendersOffLoop(small)).toBe(false);
  const follows = await open('tight');
  const other = await open('tight', 'o');
  await documents.patch(LARGE, { n: 3 });
  for (let i = 1; i <= 4; i++) await documents.patch(small, { i });
  await until(other, (events) => events.filter((e) => e.event === 'change').length >= 4);
  expect(other.events().filter((e) => e.event === 'change').map((e) => (e.data['value'] as { i: number }).i)).toEqual([1, 2, 3, 4]);
  await until(follows, (events) => events.some((e) => e.event === 'cutoff'));
  expect(follows.events().at(-1)).toMatchObject({ event: 'cutoff', data: { reason: 'region_busy' } });
  expect(other.events().some((e) => e.event === 'cutoff')).toBe(false);
  follows.res.destroy();
  other.res.destroy();
});
