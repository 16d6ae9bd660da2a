/**
 * A peer's entry that writes under a Yjs client id the document already
 * holds (two clients sharing one id) is checked after it is applied: the
 * document must stay what its own state reloads to, or the region serves
 * one content and stores, sends and reloads another. The check (a build and
 * two digests) is skipped only where it cannot find anything: an entry Yjs
 * placed nothing of, while nothing waits for missing dependencies.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as Y from 'yjs';
import { pino } from 'pino';
import { afterAll, expect, it } from 'vitest';
import { createDocuments } from '../src/docs/documents.js';
import type { Documents } from '../src/docs/types.js';
import { loadDoc, readDocument } from '../src/crdt/index.js';
import { docKey, type RegionId, type WriterId } from '../src/ids.js';
import { openStore, type SqliteEngine } from '../src/storage/sqlite.js';

const logger = pino({ level: 'silent' });
const dir = mkdtempSync(join(tmpdir(), 'meridian-reload-check-'));
const opened: { store: SqliteEngine; documents: Documents }[] = [];

function open(): Documents {
  const store = openStore({ dataDir: dir, region: 'us-east' as RegionId, synchronous: 'normal', logger });
  const documents = createDocuments({ store, logger, cacheDocs: 100, yjsUpdateBytes: 1 << 20, compactIntervalMs: 0 });
  opened.push({ store, documents });
  return documents;
}

async function closeAll(): Promise<void> {
  for (const { store, documents } of opened.splice(0)) {
    await documents.close();
    await store.close();
  }
}

afterAll(async () => {
  await closeAll();
  rmSync(dir, { recursive: true, force: true });
});

it('checks a colliding entry Yjs holds back, so the document stays what it stores and reloads to', async () => {
  const doc = docKey('c', 'held-back-collision');
  let documents = open();
  // A client under Yjs id 100 writes here.
  const here = new Y.Doc();
  here.clientID = 100;
  here.getMap('root').set('title', 'written here');
  await documents.applyYjs(doc, Y.encodeStateAsUpdate(here));
  // Elsewhere client 200 types, and another client under id 100 types after it.
  const other = new Y.Doc();
  other.clientID = 200;
  other.getText('text').insert(0, 'y');
  const sharing = new Y.Doc();
  sharing.clientID = 100;
  Y.applyUpdate(sharing, Y.encodeStateAsUpdate(other));
  const before = Y.encodeStateVector(sharing);
  sharing.getText('text').insert(1, 'written elsewhere');
  // Its entry arrives before client 200's: Yjs holds it back, placing nothing.
  const entry = { origin: 'eu-west~00000000000b' as WriterId, seq: 1, doc, ts: Date.now(), update: Y.encodeStateAsUpdate(sharing, before) };
  expect((await documents.applyRemote([entry], 'eu-west' as RegionId)).applied).toBe(1);

  const served = documents.read(doc).value;
  expect(readDocument(loadDoc([documents.readYjs(doc)!], 1))).toEqual(served);
  await closeAll();
  documents = open();
  expect(documents.read(doc).value).toEqual(served);
}, 60_000);
