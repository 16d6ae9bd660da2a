/**
 * A token's document quota counts the documents it created, asking the
 * region whether each exists. A write refused beside another in one commit
 * leaves its document named only by that commit on its way to the disk:
 * it was never created, and must not be counted; a document another token
 * is creating in a commit on its way exists, and is not counted either.
 * Real store, writer thread and write path.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { expect, it } from 'vitest';
import type { Principal } from '../src/api/auth.js';
import { createDocumentCreations } from '../src/api/quotas.js';
import { createDocuments } from '../src/docs/documents.js';
import type { Documents } from '../src/docs/types.js';
import { docKey, type RegionId } from '../src/ids.js';
import { openStore } from '../src/storage/sqlite.js';

async function withRegion(run: (documents: Documents) => Promise<void>): Promise<void> {
  const logger = pino({ level: 'silent' });
  const dir = mkdtempSync(join(tmpdir(), 'meridian-quota-creations-'));
  const writerThreadFile = fileURLToPath(new URL('../dist/src/storage/writer-thread.js', import.meta.url));
  const store = openStore({ dataDir: dir, region: 'eu-west' as RegionId, synchronous: 'full', logger, writerThread: true, writerThreadFile });
  const documents = createDocuments({ store, logger, cacheDocs: 10, yjsUpdateBytes: 1 << 20, compactIntervalMs: 0 });
  try {
    await run(documents);
  } finally {
    await documents.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const token = (id: number): Principal => ({ id, name: `app${id}`, scope: 'read-write', collections: ['c'], quota: { writesPerSecond: null, writeBurst: 1, maxDocuments: 1 } });

it('does not count a document whose creating write was refused while its commit was on its way', async () => {
  await withRegion(async (documents) => {
    const creations = createDocumentCreations(documents);
    const principal = token(7);
    const existing = docKey('c', 'existing');
    const refusedDoc = docKey('c', 'x');
    await documents.put(existing, { a: 1 });
    const settle = creations.reserve(principal, refusedDoc)!;
    expect(settle).not.toBeNull();
    // One commit: a write taken, and the creation refused (an increment of a string).
    const taken = documents.put(existing, { a: 2 });
    const refused = documents.ops(refusedDoc, [{ op: 'set', path: ['a'], value: 'text' }, { op: 'increment', path: ['a'], by: 1 }]);
    await expect(refused).rejects.toMatchObject({ code: 'type_mismatch' });
    expect(documents.hasState(refusedDoc)).toBe(false);
    settle();
    await taken;
    expect(documents.hasState(refusedDoc)).toBe(false);
    // The token still may create its one document.
    expect(creations.reserve(principal, docKey('c', 'y'))).not.toBeNull();
  });
});

it('does not count a document another token is creating in a commit on its way', async () => {
  await withRegion(async (documents) => {
    const creations = createDocumentCreations(documents);
    const other = token(8);
    await documents.put(docKey('c', 'warm'), { a: 1 });
    const doc = docKey('c', 'x');
    const creating = documents.put(doc, { a: 1 });
    while (documents.settled(doc) === null) await new Promise((resolve) => setImmediate(resolve));
    expect(documents.hasState(doc)).toBe(true);
    const settle = creations.reserve(other, doc);
    await creating;
    await documents.patch(doc, { b: 1 });
    settle?.();
    expect(creations.reserve(other, docKey('c', 'y'))).not.toBeNull();
  });
});
