/**
 * Loaded into region processes under benchmark (`node --import`), this module
 * counts SQLite write transactions and the time spent in them, so the
 * benchmark can report the group-commit batch size and the share of time
 * the event loop spends committing. It wraps better-sqlite3's
 * `Database#transaction`, which the store calls once per statement group at
 * open, and watches the messages to and from the writer thread; nothing in
 * the region's code changes.
 *
 * On SIGUSR2 the counters are written as JSON to
 * `$MERIDIAN_BENCH_PROBE_DIR/probe-<pid>.json`. With
 * `$MERIDIAN_BENCH_PROFILE_DIR` set, the process also records a V8 CPU
 * profile and writes it there when it exits (`--cpu-prof` cannot be given
 * through NODE_OPTIONS).
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';

/** Counters since the process started; the benchmark reads differences. */
export interface ProbeCounters {
  seq: number;
  /** Group commits (transactions whose argument has an `entries` array). */
  commits: number;
  /** Log entries written by those commits. */
  entries: number;
  /** Group commits that stored no entry (e.g. a peer frame of duplicates). */
  emptyCommits: number;
  commitMs: number;
  maxBatch: number;
  /** Every other write transaction (snapshots, version raises, peer acks). */
  otherTx: number;
  otherMs: number;
  /** Transactions of either kind that took over 10 ms, and the longest one (ms). */
  slowTx: number;
  maxTxMs: number;
  /** Event loop delay since the previous reading: p99 and max, ms. */
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
  /** Event loop busy time and CPU time since start, in ms. */
  loopActiveMs: number;
  cpuMs: number;
  uptimeMs: number;
}

type Run = (...args: unknown[]) => unknown;
type Tx = Run & { default: Run; deferred: Run; immediate: Run; exclusive: Run; database: unknown };
interface DatabaseClass {
  prototype: { transaction: (fn: (...args: unknown[]) => unknown) => Tx };
}

/** Interval of the event-loop delay samples, ms. */
const LOOP_SAMPLE_MS = 5;

const counters: ProbeCounters = {
  seq: 0, commits: 0, entries: 0, emptyCommits: 0, commitMs: 0, maxBatch: 0, otherTx: 0, otherMs: 0, slowTx: 0, maxTxMs: 0, loopDelayP99Ms: 0, loopDelayMaxMs: 0, loopActiveMs: 0, cpuMs: 0, uptimeMs: 0,
};

function entriesOf(arg: unknown): number | null {
  if (typeof arg !== 'object' || arg === null || !('entries' in arg)) return null;
  const entries = (arg as { entries: unknown }).entries;
  return Array.isArray(entries) ? entries.length : null;
}

/** Counts one write transaction: a group commit of `entries` log entries, or another kind (null). */
function record(entries: number | null, ms: number): void {
  if (ms > 10) counters.slowTx++;
  counters.maxTxMs = Math.max(counters.maxTxMs, ms);
  if (entries === null) {
    counters.otherTx++;
    counters.otherMs += ms;
    return;
  }
  counters.commits++;
  counters.entries += entries;
  if (entries === 0) counters.emptyCommits++;
  counters.commitMs += ms;
  counters.maxBatch = Math.max(counters.maxBatch, entries);
}

function timed(run: (...args: unknown[]) => unknown): (...args: unknown[]) => unknown {
  return (...args: unknown[]) => {
    const t0 = performance.now();
    try {
      return run(...args);
    } finally {
      record(entriesOf(args[0]), performance.now() - t0);
    }
  };
}

/**
 * Commits made on the writer thread (`storage.writerThread`, the default)
 * run in a worker this module is not loaded into: they are counted here from
 * the messages that carry them, as the time from posting a request to its
 * answer (the transaction, its fsync, and any wait behind the request before
 * it). Snapshot-only batches, GC steps and peer acks count as other
 * transactions.
 */
function instrumentWorkers(): void {
  const posted = new Map<number, { at: number; entries: number | null }>();
  const post = Worker.prototype.postMessage;
  Worker.prototype.postMessage = function (this: Worker, message: unknown, transfer?: Parameters<Worker['postMessage']>[1]) {
    const request = message as { type?: unknown; id?: unknown; batch?: { entries?: unknown[]; snapshots?: unknown[] } };
    if (typeof request?.id === 'number' && typeof request.type === 'string') {
      const entries = request.type === 'commit' ? request.batch?.entries?.length ?? 0 : null;
      const snapshotsOnly = entries === 0 && (request.batch?.snapshots?.length ?? 0) > 0;
      posted.set(request.id, { at: performance.now(), entries: snapshotsOnly ? null : entries });
    }
    return post.call(this, message, transfer);
  };
  const emit = Worker.prototype.emit;
  Worker.prototype.emit = function (this: Worker, event: string | symbol, ...args: unknown[]): boolean {
    const reply = args[0] as { id?: unknown } | undefined;
    if (event === 'message' && typeof reply?.id === 'number') {
      const request = posted.get(reply.id);
      posted.delete(reply.id);
      if (request) record(request.entries, performance.now() - request.at);
    }
    return emit.call(this, event, ...args);
  };
}

/** better-sqlite3's transaction functions have read-only properties: return a timed look-alike. */
function instrument(Database: DatabaseClass): void {
  const original = Database.prototype.transaction;
  Database.prototype.transaction = function (this: unknown, fn) {
    const tx = original.call(this, fn);
    const variants = { default: timed(tx), deferred: timed(tx.deferred), immediate: timed(tx.immediate), exclusive: timed(tx.exclusive) };
    return Object.assign(variants.default, variants, { database: tx.database }) as unknown as Tx;
  };
}

const dir = process.env['MERIDIAN_BENCH_PROBE_DIR'];
if (dir) {
  const out = join(dir, `probe-${process.pid}.json`);
  instrument(createRequire(import.meta.url)('better-sqlite3') as DatabaseClass);
  instrumentWorkers();
  const loopDelay = monitorEventLoopDelay({ resolution: LOOP_SAMPLE_MS });
  loopDelay.enable();
  // The histogram holds the intervals between samples; the delay is what
  // exceeds the sampling interval.
  const delayMs = (ns: number): number => Math.max(0, ns / 1e6 - LOOP_SAMPLE_MS);
  process.on('SIGUSR2', () => {
    counters.loopDelayP99Ms = delayMs(loopDelay.percentile(99));
    counters.loopDelayMaxMs = delayMs(loopDelay.max);
    loopDelay.reset();
    const elu = performance.eventLoopUtilization();
    const cpu = process.cpuUsage();
    counters.seq++;
    counters.loopActiveMs = elu.active;
    counters.cpuMs = (cpu.user + cpu.system) / 1000;
    counters.uptimeMs = performance.now();
    writeFileSync(out, JSON.stringify(counters));
  });
}

const profileDir = process.env['MERIDIAN_BENCH_PROFILE_DIR'];
if (profileDir) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.start');
  // The inspector answers a session of its own thread synchronously, so this works in 'exit'.
  process.on('exit', () => {
    session.post('Profiler.stop', (err, result) => {
      if (err) {
        process.stderr.write(`cpu profile not written: ${err.message}\n`);
        return;
      }
      writeFileSync(join(profileDir, `CPU.${process.pid}.cpuprofile`), JSON.stringify(result.profile));
    });
  });
}
