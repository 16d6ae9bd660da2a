/**
 * The writer thread: owns a second connection to the region database and
 * runs the group commits, so that the fsync each one waits for never holds
 * the event loop that serves requests and links. It takes one batch at a
 * time, in the order they were posted, and answers with what it stored or
 * why it could not; a commit is durable when its answer is sent.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { writeBatch, type CommitResult } from './batch.js';
import { prepareStatements } from './statements.js';
import type { CommitBatch, SyncMode } from './types.js';
import type { WriterReply, WriterRequest } from './writer.js';

const { path, synchronous, busyTimeoutMs } = workerData as { path: string; synchronous: SyncMode; busyTimeoutMs: number };
const db = new Database(path);
db.pragma(`busy_timeout = ${busyTimeoutMs}`);
db.pragma(`synchronous = ${synchronous.toUpperCase()}`);
db.pragma('foreign_keys = ON');
const statements = prepareStatements(db);
const commit = db.transaction((batch: CommitBatch): CommitResult => writeBatch(statements, batch));
const port = parentPort!;

port.on('message', (request: WriterRequest) => {
  if (request.type === 'close') {
    db.close();
    port.postMessage({ type: 'closed' } satisfies WriterReply);
    return;
  }
  let reply: WriterReply;
  try {
    reply = { type: 'committed', id: request.id, result: commit.immediate(request.batch) };
  } catch (err) {
    reply = { type: 'failed', id: request.id, message: err instanceof Error ? err.message : String(err) };
  }
  port.postMessage(reply);
});
