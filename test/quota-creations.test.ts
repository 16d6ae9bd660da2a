/**
 * A token's document quota counts the documents it created, asking the
 * region whether each exists. A write refused beside another in one commit
 * leaves its document named only by that commit on its way to the disk:
 * it was never created, and must not be counted. Real store, writer thread
 * and write path.
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
import { docKey, type RegionId } from '../src/ids.js';
import { openStore } from '../src/storage/sqlite.js';

it('does not count a document whose creating write was refused while its commit was on its way', async () => {
  const logger = pino({ level: 'silent' });
  const dir = mkdtempSync(join(tmpdir(), 'meridian-quota-creations-'));
  const writerThreadFile = fileURLToPath(new URL('../dist/src/storage/writer-thread.js', import.meta.url));
  const store = openStore({ dataDir: dir, region: 'eu-west' as RegionId, synchronous: 'full', logger, writerThread: true, writerThreadFile });
  const documents = createDocuments({ store, logger, cacheDocs: 10, yjsUpdateBytes: 1 << 20, compactIntervalMs: 0 });
  try {
    const creations = createDocumentCreations(documents);
    const principal: Principal = { id: 7, name: 'app', scope: 'read-write', collections: ['c'], quota: { writesPerSecond: null, writeBurst: 1, maxDocuments: 1 } };
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
  } finally {
    await documents.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
