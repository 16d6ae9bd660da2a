/**
 * A state that lost a content conflict may be as large as its document. The
 * conflicts listing rendered each one on the event loop: a lost state of
 * 95,000 structs held the region about a second per request, for as long as
 * a client kept asking. A large one is now rendered on the render thread.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as Y from 'yjs';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { afterAll, expect, it } from 'vitest';
import { ColdRenderer } from '../src/docs/cold-render.js';
import { createDocuments } from '../src/docs/documents.js';
import { docKey, type RegionId } from '../src/ids.js';
import { openStore } from '../src/storage/sqlite.js';

const logger = pino({ level: 'silent' });
const dir = mkdtempSync(join(tmpdir(), 'meridian-conflicts-render-'));
// The render thread as the region runs it (built by the test setup).
const renderer = new ColdRenderer(fileURLToPath(new URL('../dist/src/docs/render-thread.js', import.meta.url)));
const store = openStore({ dataDir: dir, region: 'eu-west' as RegionId, synchronous: 'normal', logger });
const documents = createDocuments({ store, logger, cacheDocs: 100, yjsUpdateBytes: 1 << 20, compactIntervalMs: 0, renderer });

afterAll(async () => {
  await documents.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A conflict record as a commit keeps it, its lost state `state`. */
function recordConflict(doc: string, state: Uint8Array): void {
  const db = new Database(join(dir, 'meridian.db'));
  db.prepare('INSERT INTO conflicts (doc, at, winner, kept_digest, lost_digest, lost_state) VALUES (?, ?, ?, ?, ?, ?)')
    .run(doc, Date.now(), 'us-east', Buffer.alloc(32), Buffer.alloc(32, 1), Buffer.from(state));
  db.close();
}

function mapOf(keys: number): Uint8Array {
  const lost = new Y.Doc();
  const root = lost.getMap('root');
  lost.transact(() => {
    for (let i = 0; i < keys; i++) root.set(`k${i}`, i);
  });
  return Y.encodeStateAsUpdate(lost);
}

it('renders a large lost state on the render thread, a small one on the event loop, with the same values', async () => {
  const doc = docKey('c', 'conflicted');
  await documents.put(doc, { kept: 1 });
  const large = mapOf(30_000);
  expect(large.byteLength).toBeGreaterThan(128 * 1024);
  recordConflict(doc, large);
  recordConflict(doc, mapOf(3));
  const before = documents.coldRenders();
  const page = await documents.conflicts(doc, 0, 10, 64 << 20, 'test');
  expect(documents.coldRenders()).toBe(before + 1);
  expect(page.conflicts).toHaveLength(2);
  const [first, second] = page.conflicts.map((c) => JSON.parse(c.valueJson) as Record<string, number>);
  expect(Object.keys(first!)).toHaveLength(30_000);
  expect(first!.k29999).toBe(29_999);
  expect(second).toEqual({ k0: 0, k1: 1, k2: 2 });
});

it('renders there the states of a page that would add up to a large one, each under the bound', async () => {
  const doc = docKey('c', 'conflicted-often');
  await documents.put(doc, { kept: 1 });
  const state = mapOf(4_000);
  expect(state.byteLength).toBeLessThan(128 * 1024);
  expect(state.byteLength).toBeGreaterThan(32 * 1024);
  for (let i = 0; i < 6; i++) recordConflict(doc, state);
  const before = documents.coldRenders();
  const page = await documents.conflicts(doc, 0, 10, 1 << 20, 'test');
  expect(page.conflicts).toHaveLength(6);
  // Built here while under the bound in all; the rest on the thread.
  const onThread = documents.coldRenders() - before;
  expect(onThread).toBeGreaterThan(0);
  expect(onThread).toBe(6 - Math.floor((128 * 1024 - 1) / state.byteLength));
  for (const c of page.conflicts) expect((JSON.parse(c.valueJson) as Record<string, number>).k3999).toBe(3_999);
});
