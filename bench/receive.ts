/**
 * The receiving side of replication without sockets or other processes:
 * frames of log entries from two peers are handed to real replication
 * sessions of an in-process region (null transports) on a fixed schedule,
 * while it also takes local writes at the same rate. Measures the time from
 * a frame's arrival to the commit that makes its entries visible: the part
 * of replication lag that is neither network nor HTTP.
 */
import { pino } from 'pino';
import type { DocKey, RegionId } from '../src/ids.js';
import type { NewLogEntry } from '../src/storage/types.js';
import { encodeFrame } from '../src/replication/protocol.js';
import { Session } from '../src/replication/session.js';
import type { BenchContext } from './context.js';
import { openFloorDocuments } from './floor.js';
import { closedLoop, openLoop } from './load.js';
import { Latency, round, type LatencySummary } from './stats.js';

export interface ReceiveResult {
  /** Local writes per second, and entries per second from each of the two peers. */
  rate: number;
  entriesPerFrame: number;
  /** Frame arrival → its entries committed. */
  visible: LatencySummary;
  meanBatch: number;
}

const DOCS = 500;
const PEERS = ['peer-a', 'peer-b'] as RegionId[];

/** Writes `count` PUTs in a fresh in-process region and returns its log, in frames of `k`. */
async function peerFrames(ctx: BenchContext, count: number, k: number): Promise<NewLogEntry[][]> {
  const source = openFloorDocuments(ctx.dir('receive-src'), { synchronous: 'off' });
  try {
    const prefix = Math.random().toString(36).slice(2, 8);
    await closedLoop({
      clients: 64, durationMs: 3_600_000, maxRequests: count,
      op: async (i) => {
        await source.documents.put(`lag/${prefix}-${i % DOCS}` as DocKey, { v: i });
      },
    });
    const entries = source.store.readLog(0, count).map(({ origin, seq, doc, ts, update }) => ({ origin, seq, doc, ts, update }));
    const frames: NewLogEntry[][] = [];
    for (let i = 0; i < entries.length; i += k) frames.push(entries.slice(i, i + k));
    return frames;
  } finally {
    await source.close();
  }
}

function nullSession(peer: RegionId, target: ReturnType<typeof openFloorDocuments>): Session {
  const noop = (): void => undefined;
  return new Session({
    peer, documents: target.documents, store: target.store, logger: pino({ level: 'silent' }),
    transport: { send: noop, buffered: () => 0, close: noop, pause: noop, resume: noop },
    batchBytes: 256 * 1024, maxBufferedBytes: 4 << 20, maxFrameBytes: 16 << 20,
    onPeerRestarted: noop, onHeard: noop, onPong: noop, onAck: noop, leavesCatchUp: () => false,
    onRejected: (reason) => {
      throw new Error(`receive floor: frame rejected: ${reason}`);
    },
  });
}

/**
 * `rate` local writes/s and, from each of two peers, `rate` entries/s in
 * frames of `k` (as three regions each writing `rate`/s would deliver).
 */
export async function receiveFloor(ctx: BenchContext, o: { rate: number; durationMs: number; k: number }): Promise<ReceiveResult> {
  const count = Math.round((o.rate * o.durationMs) / 1000);
  const frames = await Promise.all(PEERS.map(() => peerFrames(ctx, count, o.k)));
  const target = openFloorDocuments(ctx.dir('receive-dst'));
  const visible = new Latency();
  try {
    const arrived = new Map<string, number>();
    target.documents.onCommitted((entries) => {
      const now = performance.now();
      for (const e of entries) {
        const key = `${e.origin}/${e.seq}`;
        const t = arrived.get(key);
        if (t === undefined) continue;
        arrived.delete(key);
        visible.record(now - t);
      }
    });
    const before = target.commits();
    let local = 0;
    await Promise.all([
      openLoop({
        rate: o.rate, durationMs: o.durationMs,
        op: async () => {
          const i = local++;
          await target.documents.put(`lag/local-${i % DOCS}` as DocKey, { v: i });
        },
      }),
      ...PEERS.map(async (peer, p) => {
        const session = nullSession(peer, target);
        const list = frames[p]!;
        await openLoop({
          rate: o.rate / o.k, durationMs: (list.length * o.k * 1000) / o.rate,
          op: async (i) => {
            const frame = list[i];
            if (!frame) return;
            const last = frame[frame.length - 1]!;
            arrived.set(`${last.origin}/${last.seq}`, performance.now());
            session.receive(encodeFrame({ type: 'entries', entries: frame }));
          },
        });
      }),
    ]);
    const deadline = performance.now() + 60_000;
    while (arrived.size > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const after = target.commits();
    const commits = after.commits - before.commits;
    return {
      rate: o.rate, entriesPerFrame: o.k, visible: visible.summary(),
      meanBatch: commits > 0 ? round((after.entries - before.entries) / commits, 2) : 0,
    };
  } finally {
    await target.close();
  }
}
