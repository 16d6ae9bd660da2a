/**
 * Change feeds at one region, over a real socket: scope, resume, the bound
 * on a slow consumer, the subscriber limit and access control.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { DEFAULTS, type LimitsConfig } from '../src/config.js';
import { docKey, splitDocKey, type DocKey, type RegionId, type WriterId } from '../src/ids.js';
import { inScope } from '../src/docs/feed.js';
import { createDocuments } from '../src/docs/documents.js';
import type { Documents } from '../src/docs/types.js';
import { putDocument } from '../src/crdt/model.js';
import * as Y from 'yjs';
import { openStore } from '../src/storage/sqlite.js';
import type { Store } from '../src/storage/types.js';
import { createMetrics, type Metrics } from '../src/metrics.js';
import { buildApp } from '../src/api/app.js';
import { SseParser, type SseMessage } from '../src/client/sse.js';
import { standaloneReplicationView } from './helpers/api-node.js';
import { http, waitFor } from './helpers/cluster.js';
import { openFeed, type FeedReader } from './helpers/feed-reader.js';

const RW = 'events-test-read-write-token';
const READ_NOTES = 'events-test-read-notes-token';
const AUTH = { authorization: `Bearer ${RW}` };

interface Node {
  url: string;
  app: FastifyInstance;
  documents: Documents;
  metrics: Metrics;
  store: Store;
  close(): Promise<void>;
}

/** A region node with the real store, write path and API, listening on a free port. */
async function startNode(
  limits: Partial<LimitsConfig> = {},
  logger: Logger = pino({ level: 'silent' }),
  beforeListen: (app: FastifyInstance) => void = () => undefined,
): Promise<Node> {
  const region = 'events' as RegionId;
  const dir = mkdtempSync(path.join(tmpdir(), 'meridian-events-'));
  const store = openStore({ dataDir: dir, region, synchronous: 'off', logger });
  // Compacting every document at once lets a test collect the log behind a consumer.
  const documents = createDocuments({
    store, logger, cacheDocs: 100, yjsUpdateBytes: DEFAULTS.limits.yjsUpdateBytes, compactAfterEntries: 1, compactIntervalMs: 50,
  });
  const metrics = createMetrics(region);
  const auth = {
    tokens: [
      { token: RW, scope: 'read-write' as const, collections: ['*'], name: 'rw' },
      { token: READ_NOTES, scope: 'read' as const, collections: ['notes'], name: 'notes reader' },
    ],
    protectMetrics: false,
  };
  const app = buildApp({
    config: { region, limits: { ...DEFAULTS.limits, ...limits }, auth },
    documents, replication: standaloneReplicationView(documents, region), metrics, logger, feedLog: store,
  });
  beforeListen(app);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    app,
    documents,
    metrics,
    store,
    async close() {
      await app.close();
      await documents.close();
      store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

let node: Node;
const open: FeedReader[] = [];

beforeAll(async () => {
  node = await startNode({ feedQueueBytes: 64 * 1024 });
});

afterAll(async () => {
  for (const feed of open) feed.close();
  await node.close();
});

async function feed(pathAndQuery: string, headers: Record<string, string> = AUTH) {
  const f = await openFeed(node.url + pathAndQuery, headers);
  open.push(f);
  return f;
}

async function put(collection: string, id: string, value: Record<string, unknown>, url = node.url): Promise<string> {
  const res = await http<{ version: string }>(`${url}/v1/docs/${collection}/${id}`, { method: 'PUT', body: value, headers: AUTH });
  expect(res.status).toBe(200);
  return res.body.version;
}

const ready = (f: FeedReader) => f.until('ready', (r) => r.messages.some((m) => m.event === 'ready'));

/** A feed position in `collection` of `node`, then 400 documents of 200 keys written after it; returns the position. */
async function positionBehindWideDocs(node: Node, collection: string): Promise<string> {
  const first = await openFeed(`${node.url}/v1/events/${collection}`, AUTH);
  await ready(first);
  await put(collection, 'first', { n: 0 }, node.url);
  await first.until('the first change', (r) => r.changes().length === 1);
  first.close();
  const wide = Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`k${i}`, i]));
  for (let i = 0; i < 400; i++) await put(collection, `d${i}`, wide, node.url);
  return first.lastId() ?? '';
}

describe('feed scope', () => {
  it('matches a document exactly as its collection and id read, prefixes included', () => {
    const docs = ['notes/a', 'notes/ab', 'notes2/a', 'note/a', 'notes/a.b', 'x/notes'].map((d) => d as DocKey);
    const scopes = [{ collection: 'notes', id: null }, { collection: 'notes', id: 'a' }, { collection: 'note', id: 'a' }, { collection: 'notes2', id: null }];
    for (const scope of scopes) {
      for (const doc of docs) {
        const { collection, id } = splitDocKey(doc);
        expect(inScope(scope, doc), `${scope.collection}/${scope.id} ∋ ${doc}`).toBe(collection === scope.collection && (scope.id === null || scope.id === id));
      }
    }
  });
});

describe('change feeds', () => {
  it('reports the changes in scope: a document feed its document, a collection feed every document of it', async () => {
    const docFeed = await feed('/v1/events/scope/a');
    const collectionFeed = await feed('/v1/events/scope');
    expect(docFeed.status).toBe(200);
    await Promise.all([ready(docFeed), ready(collectionFeed)]);
    await put('scope', 'a', { n: 1 });
    await put('scope', 'b', { n: 1 });
    await put('other', 'a', { n: 1 });
    await put('scope', 'a', { n: 2 });
    const del = await http(`${node.url}/v1/docs/scope/b`, { method: 'DELETE', headers: AUTH });
    expect(del.status).toBe(200);
    await collectionFeed.until('four changes', (r) => r.changes().length === 4);
    await docFeed.until('two changes', (r) => r.changes().length === 2);

    expect(docFeed.changes().map((c) => [c.id, c.value])).toEqual([['a', { n: 1 }], ['a', { n: 2 }]]);
    expect(collectionFeed.changes().map((c) => [c.collection, c.id, c.value])).toEqual([
      ['scope', 'a', { n: 1 }], ['scope', 'b', { n: 1 }], ['scope', 'a', { n: 2 }], ['scope', 'b', null],
    ]);
    // The event id is the version token, also in the data.
    const changeMessages = collectionFeed.messages.filter((m) => m.event === 'change');
    for (const m of changeMessages) expect(JSON.parse(m.data).version).toBe(m.id);
    expect(new Set(changeMessages.map((m) => m.id)).size).toBe(4);
  });

  it('resumes from Last-Event-ID or ?after= without missing or repeating a change', async () => {
    const first = await feed('/v1/events/resume');
    await ready(first);
    for (let i = 1; i <= 5; i++) await put('resume', `d${i % 3}`, { n: i });
    await first.until('five changes', (r) => r.changes().length === 5);
    first.close();
    const position = first.lastId();
    expect(position).toBeDefined();
    for (let i = 6; i <= 12; i++) await put('resume', `d${i % 3}`, { n: i });

    const byHeader = await feed('/v1/events/resume', { ...AUTH, 'last-event-id': position ?? '' });
    const byQuery = await feed(`/v1/events/resume?after=${encodeURIComponent(position ?? '')}`);
    for (const resumed of [byHeader, byQuery]) {
      await ready(resumed);
      // Each of d0, d1, d2 changed since: each is sent once, as it is now.
      const values = resumed.changes().map((c) => [c.id, c.value?.['n']]).sort();
      expect(values).toEqual([['d0', 12], ['d1', 10], ['d2', 11]]);
    }
    await put('resume', 'd1', { n: 13 });
    await byHeader.until('the live change after the resume', (r) => r.changes().length === 4);
    expect(byHeader.changes().at(-1)?.value).toEqual({ n: 13 });
    // Resuming from the last id again sends nothing already seen.
    const again = await feed('/v1/events/resume', { ...AUTH, 'last-event-id': byHeader.lastId() ?? '' });
    await ready(again);
    expect(again.changes()).toEqual([]);
  });

  it('resumes by state (reset, every document, ready) when the log behind the position was collected', async () => {
    const first = await feed('/v1/events/collected');
    await ready(first);
    await put('collected', 'a', { n: 1 });
    await first.until('the first change', (r) => r.changes().length === 1);
    first.close();
    await put('collected', 'b', { n: 2 });
    await put('collected', 'c', { n: 3 });
    expect((await http(`${node.url}/v1/docs/collected/a`, { method: 'DELETE', headers: AUTH })).status).toBe(200);
    // Once compacted, entries are collected (no peers need them): the log no longer reaches back.
    await waitFor('the log collected', async () => {
      await node.store.collectGarbage([], Date.now() + 1);
      return node.store.stats().logEntries === 0;
    });

    const resumed = await feed('/v1/events/collected', { ...AUTH, 'last-event-id': first.lastId() ?? '' });
    await ready(resumed);
    expect(resumed.messages.map((m) => m.event)).toEqual(['reset', 'change', 'change', 'ready']);
    expect(resumed.changes().map((c) => [c.id, c.value])).toEqual([['b', { n: 2 }], ['c', { n: 3 }]]);
    const readyData = JSON.parse(resumed.messages.at(-1)?.data ?? '{}') as { mode: string };
    expect(readyData.mode).toBe('state');
    // The changes of a resume by state carry no id: the position moves with `ready` only.
    expect(resumed.messages.filter((m) => m.id !== undefined).map((m) => m.event)).toEqual(['ready']);
  });

  it('lists a collection it resumes by state a page at a time, sending each before it lists the next', async () => {
    const roomy = await startNode({ feedQueueBytes: 256 * 1024 * 1024 });
    try {
      const first = await openFeed(`${roomy.url}/v1/events/paged`, AUTH);
      await ready(first);
      await put('paged', 'first', { n: 0 }, roomy.url);
      await first.until('the first change', (r) => r.changes().length === 1);
      first.close();
      for (let i = 0; i < 2500; i++) await roomy.documents.put(docKey('paged', `d${String(i).padStart(4, '0')}`), { n: i });
      await waitFor('the log collected', async () => {
        await roomy.store.collectGarbage([], Date.now() + 1);
        return roomy.store.stats().logEntries === 0;
      }, 30_000);
      // What the resume asks of the write path, in order: a listing of ids, or a document read.
      const asked: string[] = [];
      const { list, read } = roomy.documents;
      roomy.documents.list = (collection, after, limit) => {
        const page = list.call(roomy.documents, collection, after, limit);
        asked.push(`list ${page.ids.length}`);
        return page;
      };
      roomy.documents.read = (doc) => {
        asked.push('read');
        return read.call(roomy.documents, doc);
      };
      const resumed = await openFeed(`${roomy.url}/v1/events/paged`, { ...AUTH, 'last-event-id': first.lastId() ?? '' });
      try {
        await ready(resumed);
        expect(resumed.changes()).toHaveLength(2501);
      } finally {
        resumed.close();
        roomy.documents.list = list;
        roomy.documents.read = read;
      }
      // Each page is read before the next is listed (before, every id was listed first, in one turn).
      const lists = asked.flatMap((a, i) => (a.startsWith('list') ? [[i, a] as const] : []));
      expect(lists.map(([, a]) => a)).toEqual(['list 1000', 'list 1000', 'list 501']);
      const readBefore = lists.map(([at]) => asked.slice(0, at).filter((a) => a === 'read').length);
      expect(readBefore).toEqual([0, 1000, 2000]);
    } finally {
      await roomy.close();
    }
  }, 60_000);

  it('lets other requests in while it resumes a large collection by state to a consumer that reads at once', async () => {
    // A bound the resume never reaches: the consumer keeps up, so nothing but the resume itself may pause it.
    const roomy = await startNode({ feedQueueBytes: 256 * 1024 * 1024 });
    try {
      const position = await positionBehindWideDocs(roomy, 'bulk');
      await waitFor('the log collected', async () => {
        await roomy.store.collectGarbage([], Date.now() + 1);
        return roomy.store.stats().logEntries === 0;
      }, 30_000);

      const resumed = await openFeed(`${roomy.url}/v1/events/bulk`, { ...AUTH, 'last-event-id': position });
      try {
        await resumed.until('the reset', (r) => r.messages.some((m) => m.event === 'reset'));
        // Rendering 401 documents of 200 keys takes far longer than one turn; a
        // request sent once the resume has begun is answered before it ends.
        expect((await http(`${roomy.url}/healthz`)).status).toBe(200);
        const changesBeforeHealth = resumed.changes().length;
        await ready(resumed);
        expect(resumed.changes()).toHaveLength(401);
        expect(changesBeforeHealth).toBeLessThan(401);
      } finally {
        resumed.close();
      }
    } finally {
      await roomy.close();
    }
  }, 60_000);

  it('lets other work run while it resumes a large collection from the log to a consumer that reads at once', async () => {
    const roomy = await startNode({ feedQueueBytes: 256 * 1024 * 1024 });
    try {
      const position = await positionBehindWideDocs(roomy, 'wide');

      // The longest the event loop (region and test share it) went without a turn while the resume ran.
      let longest = 0;
      let last = performance.now();
      let ticking = true;
      const tick = (): void => {
        const now = performance.now();
        longest = Math.max(longest, now - last);
        last = now;
        if (ticking) setTimeout(tick, 1);
      };
      setTimeout(tick, 1);
      const started = performance.now();
      const resumed = await openFeed(`${roomy.url}/v1/events/wide`, { ...AUTH, 'last-event-id': position });
      try {
        // Writes while the resume runs: each new version reaches the consumer once, in the resume or live.
        const late = Array.from({ length: 10 }, (_, i) => `d${i * 40 + 39}`);
        for (const id of late) await put('wide', id, { late: true }, roomy.url);
        await ready(resumed);
        const took = performance.now() - started;
        ticking = false;
        expect(resumed.messages.some((m) => m.event === 'reset')).toBe(false);
        // Rendering 400 documents of 200 keys takes many turns; sent in one, the stall would be nearly all of it.
        expect(longest).toBeLessThan(took / 4);
        await resumed.until('every late write', (r) => late.every((id) => r.changes().some((c) => c.id === id && c.value?.['late'] === true)));
        const seen = resumed.changes().map((c) => `${c.id} ${JSON.stringify(c.value)}`);
        expect(new Set(seen).size).toBe(seen.length);
        expect(new Set(resumed.changes().map((c) => c.id)).size).toBe(400);
      } finally {
        ticking = false;
        resumed.close();
      }
    } finally {
      await roomy.close();
    }
  }, 60_000);

  it('sends, before ready, a document a peer repaired by state while the resume ran, though the log does not name it', async () => {
    const roomy = await startNode({ feedQueueBytes: 256 * 1024 * 1024 });
    try {
      await put('repair', 'target', { v: 'before' }, roomy.url);
      const position = await positionBehindWideDocs(roomy, 'repair');

      // A peer's state for the target: a change made elsewhere, merged with no log entry and no new version.
      const target = docKey('repair', 'target');
      const elsewhere = new Y.Doc();
      Y.applyUpdate(elsewhere, roomy.documents.stateForPeer(target)!);
      const before = Y.encodeStateVector(elsewhere);
      putDocument(elsewhere, { v: 'repaired' }, { writer: 'peer~1' as WriterId }, null);
      const repair = Y.encodeStateAsUpdate(elsewhere, before);

      const resumed = await openFeed(`${roomy.url}/v1/events/repair`, { ...AUTH, 'last-event-id': position });
      try {
        await roomy.documents.applyState(target, repair, 'peer' as RegionId);
        // Merged while the 400 documents were being sent: not live yet, so only the resume can send it.
        expect(resumed.messages.some((m) => m.event === 'ready')).toBe(false);
        await ready(resumed);
        const readyAt = resumed.messages.findIndex((m) => m.event === 'ready');
        const repaired = resumed.messages.findIndex((m) => m.event === 'change' && (JSON.parse(m.data) as { id: string; value: { v?: string } | null }).value?.v === 'repaired');
        expect(repaired).toBeGreaterThanOrEqual(0);
        expect(repaired).toBeLessThan(readyAt);
      } finally {
        resumed.close();
      }
    } finally {
      await roomy.close();
    }
  }, 60_000);

  it('cuts off a consumer that stops reading, with a position to resume from, while others keep receiving', async () => {
    const reader = await feed('/v1/events/slow');
    await ready(reader);
    const slow = await pausedFeed(`${node.url}/v1/events/slow`);
    const cutoffs = async () => (await node.metrics.feedCutoffs.get()).values.find((v) => v.labels.reason === 'slow_consumer')?.value ?? 0;
    const before = await cutoffs();
    // Writes go on until the slow consumer is cut off: its unread events pass the 64 KiB bound,
    // once the kernel's socket buffers are full too.
    const pad = 'x'.repeat(100_000);
    let written = 0;
    while ((await cutoffs()) === before) {
      written += 1;
      await put('slow', `d${written}`, { n: written, pad });
      if (written > 600) throw new Error('the slow consumer was never cut off');
    }
    for (let i = 0; i < 5; i++) await put('slow', `d${++written}`, { n: written, pad });
    await reader.until('every change at the reading consumer', (r) => r.changes().length === written);

    // The slow consumer reads what was sent before the cut-off, ending with the position to resume from.
    const sent = await slow.drain();
    const last = sent.at(-1);
    expect(last?.event).toBe('cutoff');
    expect(JSON.parse(last?.data ?? '{}')).toMatchObject({ reason: 'slow_consumer', version: last?.id });
    const resumed = await feed('/v1/events/slow', { ...AUTH, 'last-event-id': last?.id ?? '' });
    await ready(resumed);
    const seen = [...sent.filter((m) => m.event === 'change').map((m) => JSON.parse(m.data) as { id: string }), ...resumed.changes()];
    const ids = seen.map((c) => c.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.length).toBe(written);
    expect(seen.length).toBeGreaterThan(resumed.changes().length);
  });

  it('refuses a malformed position (400), a missing token (401) and another collection (403); accepts ?token=', async () => {
    const bad = await feed('/v1/events/notes', { ...AUTH, 'last-event-id': 'v1.not-a-token' });
    expect(bad.status).toBe(400);
    expect(bad.errorBody).toMatchObject({ error: 'invalid_token' });
    const badQuery = await feed('/v1/events/notes?after=v2.x');
    expect(badQuery.status).toBe(400);
    const none = await feed('/v1/events/notes', {});
    expect(none.status).toBe(401);
    expect(none.errorBody).toMatchObject({ error: 'unauthorized' });
    const other = await feed(`/v1/events/secrets?token=${READ_NOTES}`, {});
    expect(other.status).toBe(403);
    const viaQuery = await feed(`/v1/events/notes/n1?token=${READ_NOTES}`, {});
    expect(viaQuery.status).toBe(200);
    await ready(viaQuery);
    await put('notes', 'n1', { n: 1 });
    await viaQuery.until('the change', (r) => r.changes().length === 1);
  });
});

describe('change feed tokens', () => {
  it('never lets a ?token= reach the log, a hook or the routed URL', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'trace' }, { write: (line: string) => void lines.push(line) });
    // What any hook, plugin or log line could take of a request: its URL, original URL and query.
    const seen: string[] = [];
    const logged = await startNode({}, logger, (app) => app.addHook('onRequest', async (request) => {
      seen.push(JSON.stringify({ url: request.url, originalUrl: request.originalUrl, query: request.query }));
    }));
    try {
      const reader = await openFeed(`${logged.url}/v1/events/notes/n1?token=${READ_NOTES}&after=`);
      expect(reader.status).not.toBe(401);
      reader.close();
      const denied = await openFeed(`${logged.url}/v1/events/secrets?token=${READ_NOTES}`);
      expect(denied.status).toBe(403);
    } finally {
      await logged.close();
    }
    // The other parameters stay.
    expect(seen[0]).toContain('after');
    expect(seen.join('\n')).not.toContain(READ_NOTES);
    expect(lines.join('\n')).not.toContain(READ_NOTES);
  });
});

describe('change feed limits', () => {
  it('refuses streams beyond limits.maxFeedSubscribers with 503, and takes them again once one closes', async () => {
    const small = await startNode({ maxFeedSubscribers: 2 });
    const feeds: FeedReader[] = [];
    try {
      for (let i = 0; i < 2; i++) feeds.push(await openFeed(`${small.url}/v1/events/c`, AUTH));
      const refused = await openFeed(`${small.url}/v1/events/c`, AUTH);
      expect(refused.status).toBe(503);
      expect(refused.errorBody).toMatchObject({ error: 'unavailable' });
      feeds[0]?.close();
      await waitFor('a free slot', async () => {
        const next = await openFeed(`${small.url}/v1/events/c`, AUTH);
        feeds.push(next);
        return next.status === 200;
      });
      const metrics = await small.metrics.scrape();
      expect(metrics).toMatch(/meridian_feed_cutoffs_total\{reason="subscriber_limit",region="events"\} [1-9]/);
      expect(metrics).toMatch(/meridian_feed_subscribers\{region="events"\} 2/);
    } finally {
      for (const f of feeds) f.close();
      await small.close();
    }
  });
});

describe("a caller's share of change feeds", () => {
  it('refuses a caller its feeds beyond limits.maxFeedSubscribersPerCaller with 429; another caller opens one; a closed one frees its place', async () => {
    const small = await startNode({ maxFeedSubscribersPerCaller: 2 });
    const feeds: FeedReader[] = [];
    const readNotes = { authorization: `Bearer ${READ_NOTES}` };
    try {
      for (const path of ['/v1/events/c', '/v1/events/notes']) feeds.push(await openFeed(`${small.url}${path}`, AUTH));
      const refused = await openFeed(`${small.url}/v1/events/notes/one`, AUTH);
      expect(refused.status).toBe(429);
      expect(refused.errorBody).toMatchObject({ error: 'too_many_requests' });
      const other = await openFeed(`${small.url}/v1/events/notes`, readNotes);
      feeds.push(other);
      expect(other.status).toBe(200);
      feeds[0]?.close();
      await waitFor('a freed place', async () => {
        const next = await openFeed(`${small.url}/v1/events/c`, AUTH);
        feeds.push(next);
        return next.status === 200;
      });
      const metrics = await small.metrics.scrape();
      expect(metrics).toMatch(/meridian_feed_cutoffs_total\{reason="caller_limit",region="events"\} [1-9]/);
      expect(metrics).toMatch(/meridian_feed_subscribers\{region="events"\} 3/);
    } finally {
      for (const f of feeds) f.close();
      await small.close();
    }
  });
});

/** A feed read with node:http whose response is paused: the consumer stops reading. */
async function pausedFeed(url: string): Promise<{ drain(): Promise<SseMessage[]> }> {
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = httpRequest(url, { headers: { ...AUTH, accept: 'text/event-stream' } }, resolve);
    req.on('error', reject);
    req.end();
  });
  expect(res.statusCode).toBe(200);
  res.pause();
  return {
    drain: () =>
      new Promise((resolve, reject) => {
        const parser = new SseParser();
        const messages: SseMessage[] = [];
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => messages.push(...parser.push(chunk)));
        res.on('end', () => resolve(messages));
        res.on('error', reject);
        res.resume();
      }),
  };
}

