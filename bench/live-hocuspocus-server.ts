/**
 * The Hocuspocus server of the `live` benchmark, run as its own child process
 * (`fork`) so it gets its own event loop, as a Meridian region does.
 *
 * `@hocuspocus/server` 3.x with `@hocuspocus/extension-sqlite` on a file, its
 * defaults except the debounce settings given by the parent. The only change
 * to the extension is its `store` callback: the same upsert, still not awaited
 * (as the extension does it), with a completion callback that records when the
 * row is committed and which state vector it holds. Those records go to the
 * parent over IPC every 100 ms, so it can tell when each update is on disk.
 *
 * Usage: `fork(file, [database, debounceMs, maxDebounceMs])`; the child sends
 * `{ type: 'listening', port, pragmas }`, then `{ type: 'stored', records }`.
 */
import { Server } from '@hocuspocus/server';
import { SQLite, upsertQuery } from '@hocuspocus/extension-sqlite';
import * as Y from 'yjs';

/** One committed store of a document: the clocks it holds and when its commit finished. */
export interface StoreRecord {
  doc: string;
  /** [client id, clock] pairs of the stored state vector. */
  sv: [number, number][];
  /** Epoch milliseconds (`performance.timeOrigin + performance.now()`). */
  at: number;
}

export type HocuspocusMessage =
  | { type: 'listening'; port: number; pragmas: Record<string, unknown> }
  | { type: 'stored'; records: StoreRecord[] }
  | { type: 'error'; message: string };

const FLUSH_MS = 100;

function send(message: HocuspocusMessage): void {
  process.send?.(message);
}

async function main(): Promise<void> {
  const [database, debounce, maxDebounce] = process.argv.slice(2);
  if (!database || debounce === undefined || maxDebounce === undefined) {
    throw new Error('usage: live-hocuspocus-server <database> <debounceMs> <maxDebounceMs>');
  }
  let pending: StoreRecord[] = [];
  const sqlite: SQLite = new SQLite({
    database,
    store: async ({ documentName, state, document }) => {
      const sv = [...Y.decodeStateVector(Y.encodeStateVector(document)).entries()];
      sqlite.db?.run(upsertQuery, { $name: documentName, $data: state }, (err: Error | null) => {
        if (err) send({ type: 'error', message: err.message });
        else pending.push({ doc: documentName, sv, at: performance.timeOrigin + performance.now() });
      });
    },
  });
  const server = new Server({
    port: 0,
    address: '127.0.0.1',
    quiet: true,
    stopOnSignals: false,
    debounce: Number(debounce),
    maxDebounce: Number(maxDebounce),
    extensions: [sqlite],
  });
  await server.listen();
  setInterval(() => {
    if (pending.length === 0) return;
    send({ type: 'stored', records: pending });
    pending = [];
  }, FLUSH_MS).unref();
  send({ type: 'listening', port: server.address.port, pragmas: await pragmas(sqlite) });
}

/** The settings that decide what "committed" means for the extension's connection. */
async function pragmas(sqlite: SQLite): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const name of ['journal_mode', 'synchronous']) {
    out[name] = await new Promise((resolve, reject) => {
      sqlite.db?.get(`PRAGMA ${name}`, (err: Error | null, row: Record<string, unknown> | undefined) => {
        if (err) reject(err);
        else resolve(row?.[name]);
      });
    });
  }
  return out;
}

// The parent's IPC channel closes when it exits, even by SIGKILL: never outlive it.
process.on('disconnect', () => process.exit(0));
main().catch((err: unknown) => {
  send({ type: 'error', message: err instanceof Error ? err.message : String(err) });
  process.exit(1);
});
