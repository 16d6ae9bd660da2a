/**
 * Options of `meridian verify`: parsing the command line's strings, filling
 * in defaults, and writing the command that repeats a run.
 */
import { join } from 'node:path';
import { FAULT_KINDS, parseFaultKinds, type VerifyFaultKind } from './schedule.js';
import { randomSeed } from './random.js';

/** What `runVerify` accepts. Every field is optional. */
export interface VerifyOptions {
  /** Seed of every random choice; default a random one (printed). With `quick`, default 1. */
  seed?: number;
  /** Length of the faulty workload: milliseconds, or text such as `30s`, `10m`, `1h`. Default 30 s. */
  duration?: number | string;
  /** Number of regions, 2-16; default 3. */
  regions?: number;
  /** Clients per region; default 3. */
  clients?: number;
  /** Report folder; default `verify-report/<timestamp>-<seed>`. */
  report?: string;
  /** Fault kinds to draw from (names or one comma-separated string); default all. */
  faults?: readonly string[] | string;
  /**
   * A short fixed run for the test suite: 3 regions x 2 clients, 12 s with an
   * isolated region, a SIGKILL and restart, and a black-holed link. Ignores
   * `duration`, `regions`, `clients` and `faults`.
   */
  quick?: boolean;
  /** Where progress and summary lines go; default stdout. */
  log?: (line: string) => void;
  /** Deadline of each client request; default 2000 ms. */
  requestTimeoutMs?: number;
  /** How long to wait for convergence after the final heal; default 60 s (20 s with `quick`). */
  convergeTimeoutMs?: number;
  /** Least share of writes a running region must acknowledge during faults; default 0.9. */
  minAvailability?: number;
  /** Region i (from 1) listens on `portBase + i`; default: free ports. */
  portBase?: number;
  /**
   * `local` (default): regions of the run's own, on loopback. `compose`: the
   * regions of the running docker-compose stack (`scripts/compose.sh up`),
   * whatever `regions` and `portBase` say.
   */
  target?: VerifyTarget;
  /** With `target: 'compose'`: the environment of the compose commands (e.g. COMPOSE_PROJECT_NAME); default this process's. */
  env?: NodeJS.ProcessEnv;
}

/** Where a run's regions come from. */
export type VerifyTarget = 'local' | 'compose';

export interface ResolvedOptions {
  seed: number;
  durationMs: number;
  regions: string[];
  clients: number;
  reportDir: string;
  faults: VerifyFaultKind[];
  quick: boolean;
  log: (line: string) => void;
  requestTimeoutMs: number;
  convergeTimeoutMs: number;
  minAvailability: number;
  portBase: number | null;
  target: VerifyTarget;
  env?: NodeJS.ProcessEnv;
}

const REGION_NAMES = ['us-east', 'eu-west', 'ap-south', 'sa-east', 'af-south', 'ap-north', 'eu-north', 'ca-central'];
const QUICK_FAULTS: VerifyFaultKind[] = ['isolate', 'kill', 'blackhole'];

/** `500ms`, `30s`, `10m`, `1h`, or a bare number of seconds, in milliseconds. */
export function parseDuration(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/i.exec(text);
  if (!m?.[1]) throw new Error(`invalid duration '${text}': use e.g. 30s, 10m or 1h`);
  const unit = (m[2] ?? 's').toLowerCase();
  const factor = unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000;
  return Math.round(Number(m[1]) * factor);
}

/** Names for `n` regions: well-known ones first, then `region-<i>`. */
export function regionNames(n: number): string[] {
  return Array.from({ length: n }, (_, i) => REGION_NAMES[i] ?? `region-${i + 1}`);
}

export function resolveOptions(o: VerifyOptions, now = new Date()): ResolvedOptions {
  const quick = o.quick === true;
  const seed = o.seed ?? (quick ? 1 : randomSeed());
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`invalid seed ${String(seed)}: use a whole number >= 0`);
  const durationMs = typeof o.duration === 'string' ? parseDuration(o.duration) : (o.duration ?? 30_000);
  if (!(durationMs >= 3000)) throw new Error('the duration must be at least 3s');
  const regions = quick ? 3 : (o.regions ?? 3);
  const clients = quick ? 2 : (o.clients ?? 3);
  if (!Number.isInteger(regions) || regions < 2 || regions > 16) throw new Error('--regions must be a whole number from 2 to 16');
  if (!Number.isInteger(clients) || clients < 1 || clients > 64) throw new Error('--clients must be a whole number from 1 to 64');
  const portBase = o.portBase ?? null;
  if (portBase !== null && !(Number.isInteger(portBase) && portBase >= 1 && portBase + regions <= 65535)) {
    throw new Error(`--port-base must leave room for ${regions} ports up to 65535, not ${portBase}`);
  }
  const target = o.target ?? 'local';
  if (target !== 'local' && target !== 'compose') throw new Error(`--target must be local or compose, not '${String(target)}'`);
  const faults = quick
    ? QUICK_FAULTS
    : o.faults === undefined
      ? [...FAULT_KINDS]
      : parseFaultKinds(typeof o.faults === 'string' ? o.faults : o.faults.join(','));
  const stamp = now.toISOString().replace(/\.\d+Z$/, '').replace(/:/g, '-');
  return {
    seed,
    durationMs,
    regions: regionNames(regions),
    clients,
    reportDir: o.report ?? join('verify-report', `${stamp}-${seed}`),
    faults,
    quick,
    log: o.log ?? ((line) => process.stdout.write(`${line}\n`)),
    requestTimeoutMs: o.requestTimeoutMs ?? 2000,
    convergeTimeoutMs: o.convergeTimeoutMs ?? (quick ? 20_000 : 60_000),
    minAvailability: o.minAvailability ?? 0.9,
    portBase,
    target,
    ...(o.env ? { env: o.env } : {}),
  };
}

/** The shell command that repeats a run with the same seed and options. */
export function reproduceCommand(o: ResolvedOptions): string {
  const base = `node dist/src/cli.js verify --seed ${o.seed}${o.target === 'compose' ? ' --target compose' : ''}`;
  if (o.quick) return `${base} --quick`;
  const faults = o.faults.length === FAULT_KINDS.length ? '' : ` --faults ${o.faults.length ? o.faults.join(',') : 'none'}`;
  return `${base} --duration ${formatDuration(o.durationMs)} --regions ${o.regions.length} --clients ${o.clients}${faults}`;
}

function formatDuration(ms: number): string {
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
