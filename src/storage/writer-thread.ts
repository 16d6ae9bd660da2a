/**
 * The writer thread: owns a second connection to the region database and
 * does the store's writes that wait for the disk (group commits, snapshot
 * batches from compaction, GC steps, peer acknowledgements, digests), so
 * that no fsync ever holds the event loop that serves requests and links.
 * It takes one request at a time, in the order they were posted, and
 * answers with what it did or why it could not; a commit is durable when its
 * answer is sent.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { writeBatch, writeDigests, writePeerAcks, type CommitResult } from './batch.js';
import { WAL_SIZE_LIMIT, type SyncMode } from './sqlite-options.js';
import { prepareStatements } from './statements.js';
// Imported after ./statements.js: declaration emit of its inferred `Statements` type depends on the order.
import { GarbageCollector } from './gc.js';
import type { RegionId, VersionVector } from '../ids.js';
import type { CommitBatch, DocDigest } from './types.js';
import type { WriterReply, WriterRequest } from './writer.js';

const { path, synchronous, busyTimeoutMs, maxConflictBytes } = workerData as { path: string; synchronous: SyncMode; busyTimeoutMs: number; maxConflictBytes: number };
const db = new Database(path);
db.pragma(`busy_timeout = ${busyTimeoutMs}`);
db.pragma(`synchronous = ${synchronous.toUpperCase()}`);
db.pragma('foreign_keys = ON');
// Commits, and so checkpoints, run here: without it a WAL that a long read let grow keeps its size on disk.
db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT}`);
const statements = prepareStatements(db);
const commit = db.transaction((batch: CommitBatch): CommitResult => writeBatch(statements, batch, maxConflictBytes));
const gc = new GarbageCollector(db, statements);
const storeAcks = db.transaction((peer: RegionId, vv: VersionVector) => writePeerAcks(statements, peer, vv));
const storeDigests = db.transaction((digests: DocDigest[]) => writeDigests(statements, digests));
const port = parentPort!;
/** The chain id of the last chained commit that failed or was refused (see CommitChain). */
let failedChain: number | null = null;

function commitInTurn(id: number, batch: CommitBatch): WriterReply {
  const chain = batch.chain;
  if (chain?.follows != null && chain.follows === failedChain) {
    failedChain = chain.id;
    return { type: 'failed', id, message: 'not written: the commit it was staged after failed' };
  }
  try {
    return { type: 'committed', id, result: commit.immediate(batch) };
  } catch (err) {
    if (chain) failedChain = chain.id;
    throw err;
  }
}

function run(request: Exclude<WriterRequest, { type: 'close' }>): WriterReply {
  try {
    if (request.type === 'gc') return { type: 'collected', id: request.id, result: gc.collect(request.peers, request.olderThanTs, request.budget) };
    if (request.type === 'acks') {
      storeAcks.immediate(request.peer, request.vv);
      return { type: 'stored', id: request.id, result: null };
    }
    if (request.type === 'digests') {
      storeDigests.immediate(request.digests);
      return { type: 'stored', id: request.id, result: null };
    }
    return commitInTurn(request.id, request.batch);
  } catch (err) {
    return { type: 'failed', id: request.id, message: err instanceof Error ? err.message : String(err) };
  }
}

port.on('message', (request: WriterRequest) => {
  if (request.type === 'close') {
    db.close();
    port.postMessage({ type: 'closed' } satisfies WriterReply);
    return;
  }
  port.postMessage(run(request));
});
