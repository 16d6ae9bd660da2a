import { describe, expect, test } from 'vitest';
import { errorCodes } from 'fastify';
import * as Y from 'yjs';
import { MeridianError } from '../src/errors.js';
import type { VersionVector, WriterId } from '../src/ids.js';
import { authorize, collectionAllowed, createAuthenticator, type Principal } from '../src/api/auth.js';
import { errorBody, toMeridianError } from '../src/api/errors.js';
import { decodeStateVectorParam } from '../src/api/routes-yjs.js';
import { parseAfter, parseReplicas, parseWaitMs, type SessionLimits } from '../src/api/session.js';
import { missingByWriter } from '../src/vv.js';
import { createMetrics } from '../src/metrics.js';

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof MeridianError) return err.code;
    throw err;
  }
  return 'ok';
}

describe('collection patterns', () => {
  test('match exact names and prefixes ending in *', () => {
    expect(collectionAllowed(['*'], 'anything')).toBe(true);
    expect(collectionAllowed(['notes'], 'notes')).toBe(true);
    expect(collectionAllowed(['notes'], 'notes2')).toBe(false);
    expect(collectionAllowed(['app-*'], 'app-users')).toBe(true);
    expect(collectionAllowed(['app-*'], 'app-')).toBe(true);
    expect(collectionAllowed(['app-*'], 'ap')).toBe(false);
    expect(collectionAllowed(['app-*'], 'other')).toBe(false);
    expect(collectionAllowed([], 'notes')).toBe(false);
    expect(collectionAllowed(['a', 'b*'], 'bee')).toBe(true);
  });
});

describe('authenticator', () => {
  const auth = createAuthenticator([
    { token: 'reader-token-0123456789', scope: 'read', name: 'reader' },
    { token: 'writer-token-0123456789', scope: 'read-write', collections: ['notes', 'app-*'], name: 'writer' },
  ]);

  test('identifies bearer tokens and nothing else', () => {
    expect(auth.enabled).toBe(true);
    expect(auth.identify('Bearer reader-token-0123456789')?.name).toBe('reader');
    expect(auth.identify('bearer writer-token-0123456789')?.name).toBe('writer');
    expect(auth.identify('Bearer reader-token-012345678')).toBeNull();
    expect(auth.identify('Bearer reader-token-0123456789x')).toBeNull();
    expect(auth.identify('Basic reader-token-0123456789')).toBeNull();
    expect(auth.identify('reader-token-0123456789')).toBeNull();
    expect(auth.identify('Bearer ')).toBeNull();
    expect(auth.identify(undefined)).toBeNull();
  });

  test('a token without collections reaches every collection', () => {
    expect(auth.identify('Bearer reader-token-0123456789')?.collections).toEqual(['*']);
  });

  test('with no tokens configured, access control is off', () => {
    expect(createAuthenticator([]).enabled).toBe(false);
  });

  test('authorize enforces scope and collections', () => {
    const reader: Principal = { id: 0, name: 'r', scope: 'read', collections: ['*'], quota: null };
    const writer: Principal = { id: 1, name: 'w', scope: 'read-write', collections: ['notes', 'app-*'], quota: null };
    expect(codeOf(() => authorize(reader, { access: 'read', collection: 'x' }))).toBe('ok');
    expect(codeOf(() => authorize(reader, { access: 'write', collection: 'x' }))).toBe('forbidden');
    expect(codeOf(() => authorize(writer, { access: 'write', collection: 'notes' }))).toBe('ok');
    expect(codeOf(() => authorize(writer, { access: 'write', collection: 'app-1' }))).toBe('ok');
    expect(codeOf(() => authorize(writer, { access: 'read', collection: 'secret' }))).toBe('forbidden');
    expect(codeOf(() => authorize(writer, { access: 'read', collection: null }))).toBe('ok');
  });
});

describe('error mapping', () => {
  test("fastify's errors become catalogue codes", () => {
    expect(toMeridianError(new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY()).code).toBe('invalid_json');
    expect(toMeridianError(new errorCodes.FST_ERR_CTP_EMPTY_JSON_BODY()).code).toBe('invalid_json');
    expect(toMeridianError(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE()).status).toBe(413);
    expect(toMeridianError(new errorCodes.FST_ERR_CTP_INVALID_MEDIA_TYPE()).status).toBe(415);
    expect(toMeridianError(new errorCodes.FST_ERR_CTP_INVALID_CONTENT_LENGTH()).code).toBe('bad_request');
  });

  test('meridian errors pass through with their details beside the code', () => {
    const err = new MeridianError('lagging', 'behind', { missing: { 'w~1': 3 } });
    expect(toMeridianError(err)).toBe(err);
    expect(errorBody(err)).toEqual({ error: 'lagging', message: 'behind', missing: { 'w~1': 3 } });
  });

  test('anything else is internal and its message is not exposed', () => {
    const mapped = toMeridianError(new Error('SQLITE_CORRUPT at /var/lib/x.db'));
    expect(mapped.code).toBe('internal');
    expect(mapped.status).toBe(500);
    expect(errorBody(mapped)).toEqual({ error: 'internal', message: 'internal error' });
    expect(toMeridianError('a string').code).toBe('internal');
    expect(errorBody(new MeridianError('internal', 'secret detail', { path: '/x' }))).toEqual({
      error: 'internal',
      message: 'internal error',
    });
  });
});

describe('session headers', () => {
  const limits: SessionLimits = { defaultWaitMs: 500, maxWaitMs: 2000, maxWaiters: 1024, bodyBytes: 1 << 20 };

  test('meridian-wait-ms defaults, caps and rejects junk', () => {
    expect(parseWaitMs(undefined, limits)).toBe(500);
    expect(parseWaitMs('0', limits)).toBe(0);
    expect(parseWaitMs('1500', limits)).toBe(1500);
    expect(parseWaitMs('999999', limits)).toBe(2000);
    for (const bad of ['-1', '1.5', 'abc', '', ' 5', '1e3', ['1', '2']]) {
      expect(codeOf(() => parseWaitMs(bad, limits))).toBe('bad_request');
    }
  });

  test('meridian-replicas must be 1 to 1 + peers', () => {
    expect(parseReplicas(undefined, 0)).toBe(1);
    expect(parseReplicas('1', 0)).toBe(1);
    expect(parseReplicas('3', 2)).toBe(3);
    for (const bad of ['0', '2', '-1', 'two', '1.0', '']) {
      expect(codeOf(() => parseReplicas(bad, 0))).toBe('bad_request');
    }
    expect(codeOf(() => parseReplicas('4', 2))).toBe('bad_request');
  });

  test('meridian-after is a version token', () => {
    expect(parseAfter(undefined)).toBeNull();
    expect(codeOf(() => parseAfter('garbage'))).toBe('invalid_token');
    expect(codeOf(() => parseAfter(['v1.W10', 'v1.W10']))).toBe('invalid_token');
    expect(parseAfter('v1.W10')).toEqual(new Map());
  });

  test('missing entries count what each writer lacks', () => {
    const want: VersionVector = new Map([
      ['a~1' as WriterId, 10],
      ['b~1' as WriterId, 5],
      ['c~1' as WriterId, 2],
    ]);
    const have: VersionVector = new Map([
      ['a~1' as WriterId, 4],
      ['b~1' as WriterId, 9],
    ]);
    expect(missingByWriter(want, have)).toEqual({ 'a~1': 6, 'c~1': 2 });
  });
});

describe('state vector parameter', () => {
  test('accepts standard and URL-safe base64 of a state vector', () => {
    const doc = new Y.Doc();
    doc.getMap('m').set('k', 'v'.repeat(100));
    const sv = Y.encodeStateVector(doc);
    const b64 = Buffer.from(sv).toString('base64');
    expect([...decodeStateVectorParam(b64)]).toEqual([...sv]);
    expect([...decodeStateVectorParam(Buffer.from(sv).toString('base64url'))]).toEqual([...sv]);
    expect([...decodeStateVectorParam(b64.replace(/\+/g, ' '))]).toEqual([...sv]);
  });

  test('rejects what is not base64', () => {
    expect(codeOf(() => decodeStateVectorParam('%%%'))).toBe('invalid_query');
    expect(codeOf(() => decodeStateVectorParam('A'))).toBe('invalid_query');
    expect(codeOf(() => decodeStateVectorParam('AAAA==='))).toBe('invalid_query');
  });
});

describe('metrics', () => {
  test('each region has its own registry, labelled with the region', async () => {
    const east = createMetrics('east');
    const west = createMetrics('west');
    east.writes.inc({ kind: 'put' }, 3);
    west.writes.inc({ kind: 'put' });
    expect(await east.scrape()).toContain('meridian_writes_total{kind="put",region="east"} 3');
    expect(await west.scrape()).toContain('meridian_writes_total{kind="put",region="west"} 1');
    expect(await west.scrape()).not.toContain('region="east"');
  });

  test('collect hooks run before each scrape and can be removed', async () => {
    const m = createMetrics('r');
    let size = 10;
    const remove = m.onCollect(async () => {
      m.databaseBytes.set(size);
    });
    expect(await m.scrape()).toContain('meridian_database_bytes{region="r"} 10');
    size = 20;
    expect(await m.scrape()).toContain('meridian_database_bytes{region="r"} 20');
    remove();
    size = 30;
    expect(await m.scrape()).toContain('meridian_database_bytes{region="r"} 20');
  });

  test('scrapes at once share one render begun after they asked, and renders are spaced', async () => {
    const m = createMetrics('r');
    let renders = 0;
    m.onCollect(() => {
      renders++;
      m.databaseBytes.set(renders);
      // A render of about 2 ms: the next one waits some 20 ms after it.
      const until = performance.now() + 2;
      while (performance.now() < until) { /* busy */ }
    });
    const together = await Promise.all(Array.from({ length: 16 }, () => m.scrape()));
    expect(new Set(together).size).toBe(1);
    expect(renders).toBe(1);
    // Never an older render: what changed before a scrape asked is in its answer.
    m.writes.inc({ kind: 'put' }, 7);
    expect(await m.scrape()).toContain('meridian_writes_total{kind="put",region="r"} 7');
    // One client scraping without pause for 200 ms: a render every ~22 ms at most, not one per scrape.
    const before = renders;
    const began = performance.now();
    let scrapes = 0;
    while (performance.now() - began < 200) {
      await m.scrape();
      scrapes++;
    }
    expect(renders - before).toBe(scrapes);
    expect(scrapes).toBeLessThanOrEqual(15);
  });

  test('replication metrics carry their labels', async () => {
    const m = createMetrics('r');
    m.peerLagMs.set({ peer: 'west', direction: 'outbound' }, 12);
    m.framesRejected.inc({ peer: 'west', reason: 'checksum' });
    m.heartbeatRttMs.set({ peer: 'west' }, 3);
    const text = await m.scrape();
    expect(text).toContain('meridian_peer_lag_seconds{peer="west",direction="outbound",region="r"} 0.012');
    expect(text).toContain('meridian_frames_rejected_total{peer="west",reason="checksum",region="r"} 1');
    expect(text).toContain('meridian_heartbeat_rtt_seconds{peer="west",region="r"} 0.003');
  });
});
