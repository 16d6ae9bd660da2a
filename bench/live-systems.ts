/**
 * The two servers of the `live` benchmark, each in its own process, and the
 * client each is driven by: a Meridian region (a real `meridian start`
 * process, default config) with unmodified `y-websocket` providers, and
 * Hocuspocus 3.x with its SQLite extension (live-hocuspocus-server.ts) with
 * `@hocuspocus/provider`. Every client has its own WebSocket (Hocuspocus can
 * share one socket between documents; y-websocket cannot, so neither does).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HocuspocusProvider, HocuspocusProviderWebsocket } from '@hocuspocus/provider';
import { WebSocket } from 'ws';
import { WebsocketProvider } from 'y-websocket';
import type * as Y from 'yjs';
import { BenchCluster, probeDelta, type ProbeDelta } from './cluster.js';
import type { HocuspocusMessage, StoreRecord } from './live-hocuspocus-server.js';

/** One connected editor: its document and its provider. */
export interface LiveClient {
  /** Resolves once the provider has synced with the server. */
  synced: Promise<void>;
  destroy(): void;
}

/** A server under test, with the way its clients connect. */
export interface LiveSystem {
  label: string;
  /** The server process, for its memory. */
  pid: number;
  connect(room: string, doc: Y.Doc): LiveClient;
  /** Whether the server reports its committed stores (Hocuspocus, through {@link LiveSystem.onStored}). */
  reportsStores: boolean;
  /** Called with every committed store the server reports. */
  onStored: ((records: StoreRecord[]) => void) | null;
  /** Starts measuring the server's group commits; the function returned reads the difference (Meridian only). */
  commits: (() => Promise<() => Promise<ProbeDelta | null>>) | null;
  /** Facts about its storage, for the report. */
  storage: string;
  stop(): Promise<void>;
}

const COLLECTION = 'live';

/** A Meridian region with default config; clients are y-websocket providers. */
export async function startMeridian(workDir: string): Promise<LiveSystem> {
  const bench = await BenchCluster.start({ regions: ['solo'], workDir });
  const base = `${bench.cluster.url('solo').replace(/^http/, 'ws')}/v1/live/${COLLECTION}`;
  return {
    label: 'Meridian (y-websocket)',
    pid: bench.pid('solo'),
    reportsStores: false,
    onStored: null,
    commits: async () => {
      const before = await bench.probe('solo');
      return async () => probeDelta(before, await bench.probe('solo'));
    },
    storage: 'better-sqlite3, WAL, synchronous=full; an update is broadcast only after its group commit',
    connect: (room, doc) => {
      const provider = new WebsocketProvider(base, room, doc, { WebSocketPolyfill: WebSocket as never, disableBc: true });
      const synced = new Promise<void>((resolve) => {
        if (provider.synced) resolve();
        else provider.once('sync', () => resolve());
      });
      return { synced, destroy: () => provider.destroy() };
    },
    stop: () => bench.stop(),
  };
}

const SERVER = join(dirname(fileURLToPath(import.meta.url)), 'live-hocuspocus-server.js');

/** Hocuspocus with its SQLite extension in a child process; clients are Hocuspocus providers. */
export async function startHocuspocus(o: { database: string; debounce: number; maxDebounce: number }): Promise<LiveSystem> {
  const child = fork(SERVER, [o.database, String(o.debounce), String(o.maxDebounce)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const system: LiveSystem = {
    label: `Hocuspocus (debounce ${o.debounce} ms)`,
    pid: child.pid ?? -1,
    reportsStores: true,
    onStored: null,
    commits: null,
    storage: '',
    connect: (room, doc) => hocuspocusClient(url, room, doc),
    stop: () => stopChild(child),
  };
  const errors: string[] = [];
  child.on('message', (m: HocuspocusMessage) => {
    if (m.type === 'stored') system.onStored?.(m.records);
    if (m.type === 'error') errors.push(m.message);
  });
  const { port, pragmas } = await listening(child, errors);
  const url = `ws://127.0.0.1:${port}`;
  system.storage =
    `node-sqlite3, journal_mode=${String(pragmas['journal_mode'])}, synchronous=${String(pragmas['synchronous'])} ` +
    `(2 = full); debounce ${o.debounce} ms, maxDebounce ${o.maxDebounce} ms; updates are broadcast before they are stored`;
  return system;
}

function hocuspocusClient(url: string, room: string, doc: Y.Doc): LiveClient {
  const socket = new HocuspocusProviderWebsocket({ url, WebSocketPolyfill: WebSocket });
  const provider = new HocuspocusProvider({ websocketProvider: socket, name: `${COLLECTION}/${room}`, document: doc });
  provider.attach();
  const synced = new Promise<void>((resolve) => {
    if (provider.isSynced) resolve();
    else provider.on('synced', () => resolve());
  });
  return {
    synced,
    destroy: () => {
      provider.destroy();
      socket.destroy();
    },
  };
}

function listening(child: ChildProcess, errors: string[]): Promise<{ port: number; pragmas: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`Hocuspocus did not start within 20 s ${errors.join('; ')}`)), 20_000);
    child.on('message', (m: HocuspocusMessage) => {
      if (m.type !== 'listening') return;
      clearTimeout(timer);
      resolve({ port: m.port, pragmas: m.pragmas });
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`Hocuspocus exited with ${code}: ${errors.join('; ')}`));
    });
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}
