/**
 * Change feeds across real region processes: replicated changes, resuming
 * at another region, and the SDK's subscription following a failover.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type ChangeEvent } from '../src/client/index.js';
import { http, startTestCluster, waitFor } from './helpers/cluster.js';
import { openFeed, valuesByDoc, type FeedReader } from './helpers/feed-reader.js';
import { decodeVersion } from '../src/docs/token.js';
import { covers } from '../src/vv.js';

type Cluster = Awaited<ReturnType<typeof startTestCluster>>;

const A = 'ap-south';
const B = 'eu-west';
const C = 'us-east';
const REGIONS = [A, B, C];

let cluster: Cluster;
const feeds: FeedReader[] = [];

beforeAll(async () => {
  cluster = await startTestCluster(REGIONS);
}, 60_000);

afterEach(() => {
  for (const f of feeds.splice(0)) f.close();
});

afterAll(async () => {
  await cluster.dispose();
});

async function feed(region: string, path: string, headers: Record<string, string> = {}): Promise<FeedReader> {
  const f = await openFeed(cluster.url(region) + path, headers);
  expect(f.status).toBe(200);
  feeds.push(f);
  await f.until('ready', (r) => r.messages.some((m) => m.event === 'ready'));
  return f;
}

/** Writes a document; `after` (a version token) makes the region apply it only once it holds that version. Returns the write's version. */
async function put(region: string, collection: string, id: string, value: Record<string, unknown>, after?: string): Promise<string> {
  const headers: Record<string, string> = after === undefined ? {} : { 'meridian-after': after, 'meridian-wait-ms': '10000' };
  const res = await http(`${cluster.url(region)}/v1/docs/${collection}/${id}`, { method: 'PUT', body: value, headers });
  expect(res.status).toBe(200);
  return String(res.headers.get('meridian-version'));
}

/** Open change-feed streams at a region, from its metrics. */
async function subscribersAt(region: string): Promise<number> {
  const res = await http<string>(`${cluster.url(region)}/metrics`);
  const match = /^meridian_feed_subscribers\{[^}]*\} (\d+)/m.exec(String(res.body));
  return match ? Number(match[1]) : 0;
}

// The last test kills a region: tests after it would need to start it again.
describe('change feeds across regions', () => {
  it('a subscriber at one region sees the changes written at another', async () => {
    const atA = await feed(A, '/v1/events/replicated');
    await put(B, 'replicated', 'x', { n: 1, from: B });
    await put(C, 'replicated', 'y', { n: 1, from: C });
    await atA.until('both replicated changes', (r) => r.changes().length === 2);
    expect(atA.changes().map((c) => [c.id, c.value]).sort()).toEqual([['x', { n: 1, from: B }], ['y', { n: 1, from: C }]]);
  });

  it('resumes at a different region from Last-Event-ID without missing or repeating a change', async () => {
    const first = await feed(A, '/v1/events/moving');
    let n = 0;
    // Each write follows the one before it, wherever that was made: a later
    // write to a document at another region must not be concurrent with the
    // earlier one (the merge could keep either value), or "last written" would not be defined.
    let previous: string | undefined;
    const write = async (region: string): Promise<void> => {
      n += 1;
      previous = await put(region, 'moving', `d${n % 4}`, { n }, previous);
    };
    // The value each document was last written with, once all `n` writes so far are seen.
    const lastOf = (): Map<string, number> => new Map(Array.from({ length: n }, (_, i) => [`d${(i + 1) % 4}`, i + 1]));
    const seenLast = (...feeds: FeedReader[]): boolean => {
      const seen = valuesByDoc(feeds.flatMap((f) => f.changes()));
      return [...lastOf()].every(([id, value]) => seen.get(id)?.at(-1) === value);
    };
    for (let i = 0; i < 8; i++) await write(i % 2 === 0 ? B : C);
    // Writes to one document that arrive in one batch come as one event: wait for the last values, not for 8 events.
    await first.until('the first writes', (r) => seenLast(r));
    first.close();
    // Writes go on at every region while the consumer is away, A included.
    for (let i = 0; i < 12; i++) await write(REGIONS[i % 3] ?? A);

    const resumed = await feed(C, '/v1/events/moving', { 'last-event-id': first.lastId() ?? '' });
    await resumed.until('every document as last written', (r) => seenLast(first, r));

    // Per document, the values seen only grow: nothing seen before the reconnect came again.
    for (const [, values] of valuesByDoc([...first.changes(), ...resumed.changes()])) {
      expect([...values].sort((a, b) => a - b)).toEqual(values);
      expect(new Set(values).size).toBe(values.length);
    }
    // Positions only move on. A document changed by state (an anti-entropy
    // repair while writes were in flight) comes with the position the
    // consumer already holds, so two events may share one: not a change sent twice.
    const positions = [...first.messages, ...resumed.messages].flatMap((m) => (m.event === 'change' && m.id !== undefined ? [decodeVersion(m.id)] : []));
    positions.forEach((p, i) => expect(i === 0 || covers(p, positions[i - 1]!)).toBe(true));
  });

  it('goes live while a document in scope is written without pause', async () => {
    const first = await feed(C, '/v1/events/hot');
    await put(C, 'hot', 'x', { n: 0 });
    await first.until('the first change', (r) => r.changes().length === 1);
    first.close();
    let writing = true;
    let n = 0;
    // Four clients back to back: a commit of this document is nearly always on its way to the disk.
    const writers = Array.from({ length: 4 }, async () => {
      while (writing) await put(C, 'hot', 'x', { n: ++n });
    });
    try {
      await new Promise((resolve) => setTimeout(resolve, 200));
      const resumed = await feed(C, '/v1/events/hot', { 'last-event-id': first.lastId() ?? '' });
      const last = n;
      await resumed.until('a live change after ready', (r) => r.changes().some((c) => Number(c.value?.['n']) > last));
    } finally {
      writing = false;
      await Promise.all(writers);
    }
  });

  it("the SDK's subscription follows a failover (SIGKILL) and sees every change exactly once", async () => {
    const client = createClient({ regions: REGIONS.map((name) => ({ name, url: cluster.url(name) })), probeIntervalMs: 500, timeoutMs: 2000 });
    const seen: ChangeEvent[] = [];
    // The feeds of earlier tests are closed, but a region may count one until it sees the socket go.
    await waitFor('earlier feeds to be gone', async () => (await Promise.all(REGIONS.map(subscribersAt))).every((n) => n === 0));
    const unsubscribe = client.subscribe('failover', undefined, (change) => seen.push(change));
    try {
      const on = await waitFor('the subscription to open', async () => {
        for (const region of REGIONS) if ((await subscribersAt(region)) > 0) return region;
        return undefined;
      });
      const writer = REGIONS.find((r) => r !== on) ?? B;
      let written = 0;
      const write = async (): Promise<void> => {
        written += 1;
        await put(writer, 'failover', `w${written}`, { n: written });
      };
      for (let i = 0; i < 5; i++) await write();
      await waitFor('the first changes', async () => seen.length >= 5);
      await cluster.kill(on);
      for (let i = 0; i < 10; i++) await write();
      await waitFor('every change after the failover', async () => seen.length >= written, 30_000);
      // A moment for anything sent twice to arrive.
      await put(writer, 'failover', 'last', { n: 0 });
      await waitFor('the marker', async () => seen.some((c) => c.id === 'last'));

      const ids = seen.filter((c) => c.id !== 'last').map((c) => c.id);
      expect(ids.sort()).toEqual(Array.from({ length: written }, (_, i) => `w${i + 1}`).sort());
      expect(new Set(seen.map((c) => c.version)).size).toBe(seen.length);
      expect(REGIONS.filter((r) => r !== on)).toContain(client.status().regions.find((r) => r.healthy === true)?.name);
    } finally {
      unsubscribe();
      client.close();
    }
  }, 90_000);
});
