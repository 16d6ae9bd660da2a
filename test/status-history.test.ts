/**
 * The status history behind the dashboard's charts: bounded however long a
 * region runs, incremental with `since`, sampling that never stops on an
 * error, and the same access rule as `/v1/sync`.
 */
import { afterEach, describe, expect, test } from 'vitest';
import type { SyncStatus } from '../src/replication/types.js';
import { HISTORY_SAMPLES, StatusHistory, sampleOf, startSampler } from '../src/api/status-history.js';
import { startApiNode, type ApiNode } from './helpers/api-node.js';

const STATUS: SyncStatus = {
  region: 'ap-south', writer: 'ap-south~000000000001', digest: 'ab', isolated: false, pendingDocs: 0, conflicts: 0, agree: false,
  peers: [{
    region: 'eu-west', url: 'http://127.0.0.1:1', state: 'down', rttMs: null, lastSeenMs: null, route: 'via us-east', lastError: null,
    outbound: { pendingUpdates: 7, pendingBytes: 700, lagMs: 1234 }, inbound: { pendingUpdates: 0, lagMs: 0, quarantined: 0 },
    digest: null, links: [{ region: 'us-east', state: 'up' }], reportAgeMs: null,
  }],
} as unknown as SyncStatus;

describe('StatusHistory', () => {
  test('keeps the last 900 samples (15 minutes at one a second), oldest first', () => {
    const history = new StatusHistory();
    for (let t = 1; t <= 2000; t++) history.add({ t, peers: [] });
    const all = history.since();
    expect(all).toHaveLength(HISTORY_SAMPLES);
    expect(all[0]?.t).toBe(2000 - HISTORY_SAMPLES + 1);
    expect(all.at(-1)?.t).toBe(2000);
  });

  test('since returns only newer samples', () => {
    const history = new StatusHistory(10);
    for (let t = 1; t <= 15; t++) history.add({ t, peers: [] });
    expect(history.since(12).map((s) => s.t)).toEqual([13, 14, 15]);
    expect(history.since(15)).toEqual([]);
    expect(history.since(0).map((s) => s.t)).toEqual([6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
  });

  test('a sample holds per peer the state, outbound lag and pending updates only', () => {
    expect(sampleOf(STATUS, 42)).toEqual({ t: 42, peers: [{ region: 'eu-west', state: 'down', lagMs: 1234, pendingUpdates: 7 }] });
  });

  test('a status that throws is skipped and reported once per run of failures; sampling goes on', async () => {
    const history = new StatusHistory();
    const errors: unknown[] = [];
    let calls = 0;
    const sampler = startSampler({
      history, intervalMs: 10, onError: (err) => errors.push(err),
      status: () => {
        calls++;
        if (calls >= 2 && calls <= 4) throw new Error('boom');
        return STATUS;
      },
    });
    try {
      await expect.poll(() => history.size, { timeout: 5000 }).toBeGreaterThanOrEqual(3);
      expect(calls).toBeGreaterThanOrEqual(5);
    } finally {
      sampler.stop();
    }
    expect(errors).toHaveLength(1);
  });
});

describe('GET /v1/sync/history', () => {
  let node: ApiNode | undefined;
  afterEach(async () => {
    await node?.close();
    node = undefined;
  });

  test('needs what /v1/sync needs: a status token or one for every collection', async () => {
    node = await startApiNode({
      tokens: [
        { token: 'status-token-0123456789', scope: 'status' },
        { token: 'notes-reader-0123456789', scope: 'read', collections: ['notes'] },
      ],
    });
    const get = (token?: string) => node!.app.inject({
      url: '/v1/sync/history?since=0', headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
    });
    expect((await get()).statusCode).toBe(401);
    const narrow = await get('notes-reader-0123456789');
    expect(narrow.statusCode).toBe(403);
    expect(narrow.json()).toMatchObject({ error: 'forbidden' });
    const ok = await get('status-token-0123456789');
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toMatchObject({ region: 'test', intervalMs: 1000, capacity: HISTORY_SAMPLES, samples: [] });
  });

  test('a since that is not a number is refused with 400', async () => {
    node = await startApiNode();
    const res = await node.app.inject({ url: '/v1/sync/history?since=soon' });
    expect(res.statusCode).toBe(400);
  });
});
