/**
 * The Yjs workload of the `live` benchmark, the same for every system: many
 * documents with two editors each, a few hot documents with many editors,
 * every editor inserting a few characters into one `Y.Text` at a fixed total
 * rate (open loop). One clock (this process) times each update from its
 * scheduled send to every other editor of its document seeing it, and, where
 * the server reports its stores, to the commit that put it on disk.
 */
import * as Y from 'yjs';
import type { StoreRecord } from './live-hocuspocus-server.js';
import type { LiveClient, LiveSystem } from './live-systems.js';
import type { ProbeDelta } from './cluster.js';
import { cpuMeter, memoryOf } from './machine.js';
import { Latency, round, type LatencySummary } from './stats.js';

export interface WorkloadShape {
  /** Documents with two editors each. */
  coldDocs: number;
  hotDocs: number;
  clientsPerHotDoc: number;
  /** Load steps, one after the other on the same clients: updates per second over all editors, and for how long. */
  phases: { rate: number; durationMs: number }[];
}

/** What one load step measured, filled in as updates are delivered and stored. */
interface PhaseStats {
  cold: Latency;
  hot: Latency;
  onDisk: Latency | null;
  /** (update, other editor) pairs expected and seen. */
  expected: number;
  deliveries: number;
  /** Updates that reached every other editor of their document. */
  complete: number;
  lastDeliveryAt: number;
}

/** An update sent: the sender's clock after it, when it was due, and the step it belongs to. */
interface Sent {
  clock: number;
  dueAt: number;
  phase: PhaseStats;
}

interface Editor {
  doc: Y.Doc;
  text: Y.Text;
  client: LiveClient | null;
  sent: Sent[];
}

interface Room {
  name: string;
  hot: boolean;
  editors: Editor[];
  byClientId: Map<number, Editor>;
  /** Per sender: how many of its updates are known to be on disk. */
  stored: Map<number, number>;
}

/** Resident memory of the server process at each step, MiB. */
export interface MemorySteps {
  baselineMiB: number | null;
  oneClientPerDocMiB: number | null;
  allClientsMiB: number | null;
  afterLoadMiB: number | null;
  peakMiB: number | null;
  docs: number;
  clients: number;
}

/** One load step's figures. */
export interface PhaseResult {
  offered: number;
  sent: number;
  /** Updates that reached every other editor of their document. */
  delivered: number;
  /** Delivered updates per second, from the first due send to the last delivery. */
  deliveredPerSec: number;
  cold: LatencySummary;
  hot: LatencySummary;
  /** Scheduled send → commit of a store holding it (only where the server reports stores). */
  onDisk: LatencySummary | null;
  notOnDisk: number | null;
  /** CPU share of the server process from the first send to the last delivery (1 = one core). */
  cpu: number | null;
  /** CPU share of this process (the load generator and every client) over the same span. */
  clientCpu: number;
  /** The Meridian region's probe during the step (probe.ts), or null. */
  commits: ProbeDelta | null;
}

export interface WorkloadResult {
  system: string;
  storage: string;
  memory: MemorySteps;
  connectSeconds: number;
  phases: PhaseResult[];
}

/** Pause before each memory reading, so the server has handled what it was sent. */
const SETTLE_MS = 500;
/** How long to wait after a step for its updates to reach every editor, and then the disk (past maxDebounce). */
const DELIVERY_WAIT_MS = 30_000;
export const DISK_WAIT_MS = 12_000;

/** Runs the workload against one system; disconnects every client before returning. */
export async function runWorkload(system: LiveSystem, shape: WorkloadShape, log: (m: string) => void): Promise<WorkloadResult> {
  const rooms = buildRooms(shape);
  const editors = rooms.flatMap((r) => r.editors);
  const mem = (): ReturnType<typeof memoryOf> => memoryOf(system.pid);
  if (system.reportsStores) system.onStored = (records) => markStored(rooms, records);
  // y-websocket adds a process 'exit' listener per provider in Node.
  process.setMaxListeners(Math.max(process.getMaxListeners(), editors.length + 20));
  try {
    await sleep(SETTLE_MS);
    const baseline = mem();
    const t0 = performance.now();
    await connectAll(system, rooms.map((r) => ({ room: r, editor: r.editors[0]! })));
    await sleep(SETTLE_MS);
    const oneClient = mem();
    await connectAll(system, rooms.flatMap((r) => r.editors.slice(1).map((editor) => ({ room: r, editor }))));
    const connectSeconds = round((performance.now() - t0) / 1000, 1);
    await sleep(SETTLE_MS);
    const allClients = mem();
    log(`live: ${system.label}: ${editors.length} clients on ${rooms.length} documents connected in ${connectSeconds} s`);
    trackDelivery(rooms);
    const phases: PhaseResult[] = [];
    for (const step of shape.phases) {
      log(`live: ${system.label}: ${step.rate} updates/s for ${step.durationMs / 1000} s`);
      phases.push(await runPhase(system, rooms, editors, step));
    }
    const after = mem();
    return {
      system: system.label,
      storage: system.storage,
      memory: {
        baselineMiB: baseline?.rssMiB ?? null,
        oneClientPerDocMiB: oneClient?.rssMiB ?? null,
        allClientsMiB: allClients?.rssMiB ?? null,
        afterLoadMiB: after?.rssMiB ?? null,
        peakMiB: after?.peakMiB ?? null,
        docs: rooms.length,
        clients: editors.length,
      },
      connectSeconds,
      phases,
    };
  } finally {
    for (const e of editors) {
      e.client?.destroy();
      // Stops the awareness each provider made for the document (its 3 s timer keeps the process alive).
      e.doc.destroy();
    }
    system.onStored = null;
  }
}

/** One load step: sends, waits for every delivery, then for the disk where the server reports it. */
async function runPhase(system: LiveSystem, rooms: Room[], editors: Editor[], step: { rate: number; durationMs: number }): Promise<PhaseResult> {
  const stats: PhaseStats = {
    cold: new Latency(), hot: new Latency(), onDisk: system.reportsStores ? new Latency() : null,
    expected: 0, deliveries: 0, complete: 0, lastDeliveryAt: performance.now(),
  };
  const others = new Map(editors.map((e) => [e, rooms.find((r) => r.editors.includes(e))!.editors.length - 1]));
  const readCommits = system.commits ? await system.commits() : null;
  const cpu = cpuMeter(system.pid);
  const ownCpu = process.cpuUsage();
  const started = performance.now();
  const sent = await sendLoad(editors, step, stats, (e) => others.get(e) ?? 0);
  await waitFor(() => stats.deliveries >= stats.expected, DELIVERY_WAIT_MS);
  const cpuShare = cpu();
  const own = process.cpuUsage(ownCpu);
  const clientCpu = round((own.user + own.system) / 1000 / (performance.now() - started), 2);
  const commits = readCommits ? await readCommits() : null;
  const onDisk = stats.onDisk;
  if (onDisk) await waitFor(() => onDisk.count >= sent, DISK_WAIT_MS);
  await sleep(SETTLE_MS);
  return {
    offered: step.rate,
    sent,
    delivered: stats.complete,
    deliveredPerSec: round(stats.complete / ((stats.lastDeliveryAt - started) / 1000), 0),
    cold: stats.cold.summary(),
    hot: stats.hot.summary(),
    onDisk: onDisk ? onDisk.summary() : null,
    notOnDisk: onDisk ? sent - onDisk.count : null,
    cpu: cpuShare,
    clientCpu,
    commits,
  };
}

function buildRooms(shape: WorkloadShape): Room[] {
  const rooms: Room[] = [];
  const add = (name: string, hot: boolean, n: number): void => {
    const editors = Array.from({ length: n }, () => {
      const doc = new Y.Doc();
      return { doc, text: doc.getText('codemirror'), client: null, sent: [] };
    });
    const byClientId = new Map(editors.map((e) => [e.doc.clientID, e]));
    rooms.push({ name, hot, editors, byClientId, stored: new Map() });
  };
  for (let i = 0; i < shape.hotDocs; i++) add(`hot-${i}`, true, shape.clientsPerHotDoc);
  for (let i = 0; i < shape.coldDocs; i++) add(`doc-${i}`, false, 2);
  return rooms;
}

/** Connects in batches, so the servers see a steady stream of new clients rather than one burst. */
async function connectAll(system: LiveSystem, targets: { room: Room; editor: Editor }[]): Promise<void> {
  const BATCH = 50;
  for (let i = 0; i < targets.length; i += BATCH) {
    const batch = targets.slice(i, i + BATCH);
    for (const t of batch) t.editor.client = system.connect(t.room.name, t.editor.doc);
    await withTimeout(Promise.all(batch.map((t) => t.editor.client!.synced)), 30_000, `${system.label}: clients did not sync`);
  }
}

/**
 * Watches every editor's document: when a transaction from the server moves
 * a sender's clock, each of that sender's updates it now holds is delivered.
 */
function trackDelivery(rooms: Room[]): void {
  const seenBy = new Map<Sent, number>();
  for (const room of rooms) {
    for (const receiver of room.editors) {
      const seen = new Map<number, number>();
      receiver.doc.on('afterTransaction', (tr: Y.Transaction) => {
        if (tr.local) return;
        const now = performance.now();
        for (const [client, after] of tr.afterState) {
          const sender = room.byClientId.get(client);
          if (!sender || sender === receiver || after === (tr.beforeState.get(client) ?? 0)) continue;
          let i = seen.get(client) ?? 0;
          for (; i < sender.sent.length && sender.sent[i]!.clock <= after; i++) {
            const s = sender.sent[i]!;
            (room.hot ? s.phase.hot : s.phase.cold).record(now - s.dueAt);
            s.phase.deliveries++;
            s.phase.lastDeliveryAt = now;
            const n = (seenBy.get(s) ?? 0) + 1;
            if (n === room.editors.length - 1) {
              s.phase.complete++;
              seenBy.delete(s);
            } else {
              seenBy.set(s, n);
            }
          }
          seen.set(client, i);
        }
      });
    }
  }
}

/** Marks each update a committed store holds as on disk, timed on this process's clock. */
function markStored(rooms: Room[], records: StoreRecord[]): void {
  const byName = new Map(rooms.map((r) => [`live/${r.name}`, r]));
  for (const rec of records) {
    const room = byName.get(rec.doc);
    if (!room) continue;
    const at = rec.at - performance.timeOrigin;
    for (const [client, clock] of rec.sv) {
      const sender = room.byClientId.get(client);
      if (!sender) continue;
      let i = room.stored.get(client) ?? 0;
      for (; i < sender.sent.length && sender.sent[i]!.clock <= clock; i++) sender.sent[i]!.phase.onDisk?.record(at - sender.sent[i]!.dueAt);
      room.stored.set(client, i);
    }
  }
}

/**
 * Open loop: update k is due at start + k / rate and goes to editor k mod n
 * (editors shuffled once), whatever happened to the earlier ones.
 */
async function sendLoad(
  editors: Editor[], step: { rate: number; durationMs: number }, phase: PhaseStats, others: (e: Editor) => number,
): Promise<number> {
  const order = shuffle([...editors]);
  const interval = 1000 / step.rate;
  const total = Math.floor((step.durationMs / 1000) * step.rate);
  const start = performance.now();
  let k = 0;
  while (k < total) {
    const due = Math.min(total, Math.floor((performance.now() - start) / interval) + 1);
    for (; k < due; k++) {
      const editor = order[k % order.length]!;
      const at = Math.floor(Math.random() * (editor.text.length + 1));
      editor.text.insert(at, `u${k % 1000}x`);
      editor.sent.push({ clock: Y.getState(editor.doc.store, editor.doc.clientID), dueAt: start + k * interval, phase });
      phase.expected += others(editor);
    }
    await sleep(1);
  }
  return total;
}

function shuffle<T>(a: T[]): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

async function waitFor(done: () => boolean, timeoutMs: number): Promise<void> {
  const start = performance.now();
  while (!done() && performance.now() - start < timeoutMs) await sleep(20);
}

async function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
