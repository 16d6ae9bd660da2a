/**
 * `meridian verify`: starts a local cluster, runs a seeded workload at every
 * region while a seeded schedule of faults strikes processes and links,
 * heals everything, waits for convergence and checks the history against
 * what the regions hold. Modelled on Jepsen; a seed reproduces the plan.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { LocalCluster } from '../faults/cluster.js';
import { ComposeCluster } from './compose-target.js';
import type { VerifyCluster } from './target.js';
import { writeRates } from './analysis.js';
import { awaitConvergence } from './converge.js';
import { History } from './history.js';
import { Monitor } from './monitor.js';
import { Nemesis } from './nemesis.js';
import { judge } from './judge.js';
import { resolveOptions, parseDuration, type ResolvedOptions, type VerifyOptions } from './options.js';
import { Random } from './random.js';
import { formatSummary, progressLine, writeReport, type VerifyResult } from './report.js';
import { generateSchedule, quickSchedule, type PlannedFault } from './schedule.js';
import { renderTimeline } from './timeline.js';
import { Client, planDocs, sleep, workloadPlan, type WorkloadPlan } from './workload.js';

export type { VerifyOptions } from './options.js';
export type { VerifyResult } from './report.js';

/** Region timings short enough that faults are noticed within a second or two. */
const REGION_CONFIG = {
  replication: { heartbeatMs: 200, suspectAfterMisses: 3, deadAfterMs: 1500, reconnectMinMs: 50, reconnectMaxMs: 1000, antiEntropyMs: 1500 },
  storage: { gcIntervalMs: 500, compactIntervalMs: 200 },
  log: { level: 'warn' },
};
const DEAD_AFTER_MS = REGION_CONFIG.replication.deadAfterMs;
/** The compose stack's regions run with the default timings (src/config.ts). */
const COMPOSE_DEAD_AFTER_MS = 5000;

/** Runs one verification and writes its report; resolves with the verdicts (it does not set the exit code). */
export async function runVerify(options: VerifyOptions = {}): Promise<VerifyResult> {
  const o = resolveOptions(options);
  mkdirSync(o.reportDir, { recursive: true });
  if (o.target === 'compose') return verifyCompose(o);
  const { durationMs, faults } = planFaults(o, DEAD_AFTER_MS);
  const run = { ...o, durationMs };
  announce(run, faults);
  const baseDir = mkdtempSync(join(tmpdir(), 'meridian-verify-'));
  const proxyRandom = new Random(o.seed).fork('proxies');
  const cluster = new LocalCluster({
    regions: o.regions.map((region, i) => ({ region, ...(o.portBase === null ? {} : { port: o.portBase + i + 1 }) })),
    baseDir,
    extra: REGION_CONFIG,
    random: () => proxyRandom.next(),
  });
  // If this process exits mid-run (an uncaught error, a broken pipe), the regions must not outlive it.
  const killRegions = (): void => {
    for (const r of cluster.regions.values()) r.proc?.kill('SIGKILL');
    rmSync(baseDir, { recursive: true, force: true });
  };
  process.once('exit', killRegions);
  let result: VerifyResult | null = null;
  try {
    await cluster.start();
    result = await exercise(cluster, run, faults);
    return result;
  } finally {
    process.off('exit', killRegions);
    await cluster.stop(true);
    if (!result?.ok && existsSync(join(baseDir, 'logs'))) cpSync(join(baseDir, 'logs'), join(o.reportDir, 'logs'), { recursive: true });
    rmSync(baseDir, { recursive: true, force: true });
  }
}

/**
 * Runs against the compose stack that is already up: its regions, its
 * published ports, faults through scripts/compose.sh. The stack is left
 * running and healed.
 */
async function verifyCompose(o: ResolvedOptions): Promise<VerifyResult> {
  const cluster = await ComposeCluster.connect(o.env ? { env: o.env } : {});
  const regions = [...cluster.regions.keys()];
  const { durationMs, faults } = planFaults({ ...o, regions }, COMPOSE_DEAD_AFTER_MS);
  const run = { ...o, regions, durationMs };
  announce(run, faults);
  return exercise(cluster, run, faults);
}

function announce(o: ResolvedOptions, faults: PlannedFault[]): void {
  const where = o.target === 'compose' ? 'the compose stack\'s ' : '';
  o.log(`meridian verify: seed ${o.seed}, ${where}${o.regions.length} regions x ${o.clients} clients, ${o.durationMs / 1000} s, ${faults.length} faults (${o.faults.join(', ') || 'none'})`);
  o.log(`report: ${resolve(o.reportDir)}`);
}

/** The run's length and fault schedule: fixed with `quick`, drawn from the seed otherwise. */
function planFaults(o: ResolvedOptions, deadAfterMs: number): { durationMs: number; faults: PlannedFault[] } {
  if (o.quick) return quickSchedule(o.regions);
  const faults = generateSchedule({ seed: o.seed, durationMs: o.durationMs, regions: o.regions, kinds: o.faults, deadAfterMs });
  return { durationMs: o.durationMs, faults };
}

/** The parts of a run that act while it goes: clients, faults and sampling. */
interface Actors {
  history: History;
  clients: Client[];
  nemesis: Nemesis;
  monitor: Monitor;
  clock: () => number;
  phase: { name: string };
  plan: WorkloadPlan;
}

function createActors(cluster: VerifyCluster, o: ResolvedOptions, schedule: PlannedFault[]): Actors {
  const t0 = performance.now();
  const clock = () => performance.now() - t0;
  const history = new History(join(o.reportDir, 'history.jsonl'), clock);
  // Base 36 of the start time: a new name for each run, short in reports.
  const plan = workloadPlan(Date.now().toString(36));
  const random = new Random(o.seed);
  const clients = o.regions.flatMap((region) =>
    Array.from({ length: o.clients }, (_, i) => new Client({
      name: `${region}.${i + 1}`, region, url: () => cluster.url(region), rng: random.fork(`client ${region}.${i + 1}`),
      plan, history, timeoutMs: o.requestTimeoutMs, thinkMs: [5, 30],
    })));
  const nemesis = new Nemesis({
    cluster, schedule, history, clock, log: o.log,
    holdClients: async (region) => {
      let release: () => void = () => undefined;
      const until = new Promise<void>((r) => (release = r));
      await Promise.all(clients.filter((c) => c.region === region).map((c) => c.hold(until)));
      return release;
    },
  });
  const phase = { name: 'workload' };
  const monitor = new Monitor({
    cluster, clock, onTick: () => o.log(progressLine(clock(), history.counts(), phase.name, nemesis.activeLabels())),
  });
  return { history, clients, nemesis, monitor, clock, phase, plan };
}

async function exercise(cluster: VerifyCluster, o: ResolvedOptions, schedule: PlannedFault[]): Promise<VerifyResult> {
  const startedAt = new Date().toISOString();
  const a = createActors(cluster, o, schedule);
  try {
    const healAtMs = await workload(a, o.durationMs);
    a.phase.name = 'converging';
    const convergeFrom = a.clock();
    const convergence = await awaitConvergence(cluster, planDocs(a.plan), o.convergeTimeoutMs);
    const convergedAtMs = convergence.elapsedMs === null ? null : convergeFrom + convergence.elapsedMs;
    a.monitor.sampleProcs();
    await a.monitor.stop();
    const notRunning = o.regions.filter((r) => !cluster.region(r).proc);
    a.nemesis.expectExits();
    o.log(`checking ${a.history.ops.length} operations...`);
    const endMs = a.clock();
    const result = judge(o, {
      startedAt, history: a.history, nemesis: a.nemesis, schedule, convergence, procs: a.monitor.procs, notRunning,
      healAtMs, convergedAtMs, endMs,
    });
    const down = new Map(o.regions.map((r) => [r, (a.nemesis.down.get(r) ?? []).map((d) => ({ fromMs: d.fromMs, toMs: d.toMs ?? endMs }))]));
    const svg = renderTimeline({
      title: `meridian verify — seed ${o.seed} — ${result.ok ? 'PASS' : 'FAIL'}`,
      regions: o.regions, endMs, healMs: healAtMs, convergedMs: convergedAtMs, faults: result.faults.ran, down,
      rates: writeRates(a.history.ops, o.regions, endMs), lag: a.monitor.sync,
    });
    writeReport(o.reportDir, result, svg, { sync: a.monitor.sync, procs: a.monitor.procs });
    return result;
  } finally {
    // On an early error, clients and samplers must not outlive the run.
    a.nemesis.stop();
    a.nemesis.expectExits();
    await Promise.all(a.clients.map((c) => c.stop()));
    await a.monitor.stop();
    await a.history.close();
  }
}

/**
 * Writes and injects faults for `durationMs`, heals everything, then stops
 * the clients. Resolves with the time of the final heal.
 */
async function workload(a: Actors, durationMs: number): Promise<number> {
  a.monitor.start();
  for (const c of a.clients) c.start();
  const faultsDone = a.nemesis.run();
  await sleep(durationMs);
  a.nemesis.stop();
  await faultsDone;
  a.phase.name = 'healing';
  try {
    await a.nemesis.healAll();
  } catch (err) {
    a.nemesis.errors.push(`final heal: ${err instanceof Error ? err.message : String(err)}`);
  }
  const healAtMs = a.clock();
  a.history.fault(0, 'note', 'final heal');
  a.phase.name = 'draining';
  await Promise.all(a.clients.map((c) => c.stop()));
  return healAtMs;
}

/** The options of the `verify` command as commander hands them over (all strings). */
export interface VerifyCommandOptions {
  seed?: string;
  duration?: string;
  regions?: string;
  clients?: string;
  report?: string;
  faults?: string;
  quick?: boolean;
  portBase?: string;
  target?: string;
}

/**
 * Runs `meridian verify` from the command line: prints progress and a
 * summary, and sets `process.exitCode` (0 all checks passed, 1 a check
 * failed, 2 bad options or the cluster could not start). Wire it as:
 *
 * ```ts
 * program.command('verify').description('randomized fault-injection run with a history checker')
 *   .option('--seed <n>', 'seed of every random choice (default: random, printed)')
 *   .option('--duration <d>', 'length of the faulty workload, e.g. 30s or 10m', '30s')
 *   .option('--regions <n>', 'number of regions', '3').option('--clients <n>', 'clients per region', '3')
 *   .option('--report <dir>', 'report folder (default verify-report/<timestamp>-<seed>)')
 *   .option('--faults <list>', 'comma-separated fault kinds: isolate,bridge,oneway,blackhole,stall,latency,slicer,bandwidth,wan,kill,pause,wipe,flap (or all, none)')
 *   .option('--quick', 'a short fixed run (seed 1 unless given) with isolate, kill and blackhole')
 *   .option('--target <where>', 'local (regions of its own) or compose (the running docker-compose stack)')
 *   .action(async (opts: VerifyCommandOptions) => (await import('./verify/run.js')).verifyCommand(opts));
 * ```
 */
export async function verifyCommand(opts: VerifyCommandOptions): Promise<void> {
  let options: VerifyOptions;
  try {
    options = {
      ...(opts.seed !== undefined ? { seed: wholeNumber(opts.seed, '--seed') } : {}),
      ...(opts.duration !== undefined ? { duration: parseDuration(opts.duration) } : {}),
      ...(opts.regions !== undefined ? { regions: wholeNumber(opts.regions, '--regions') } : {}),
      ...(opts.clients !== undefined ? { clients: wholeNumber(opts.clients, '--clients') } : {}),
      ...(opts.report !== undefined ? { report: opts.report } : {}),
      ...(opts.faults !== undefined ? { faults: opts.faults } : {}),
      ...(opts.portBase !== undefined ? { portBase: wholeNumber(opts.portBase, '--port-base') } : {}),
      ...(opts.target !== undefined ? { target: opts.target as VerifyOptions['target'] } : {}),
      quick: opts.quick === true,
    };
    resolveOptions(options);
  } catch (err) {
    process.stderr.write(`meridian verify: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 2;
    return;
  }
  // Ctrl-C ends the run through process.exit, so that runVerify's exit hook stops the regions.
  const interrupt = (): void => process.exit(130);
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  let result: VerifyResult;
  try {
    result = await runVerify(options);
  } catch (err) {
    // One line: a port in use or a region that would not start is not a bug of the verifier.
    process.stderr.write(`meridian verify: the run could not complete: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 2;
    return;
  } finally {
    process.off('SIGINT', interrupt);
    process.off('SIGTERM', interrupt);
  }
  process.stdout.write(`${formatSummary(result)}\n`);
  process.exitCode = result.ok ? 0 : 1;
}

function wholeNumber(text: string, flag: string): number {
  if (!/^\d{1,15}$/.test(text.trim())) throw new Error(`${flag} must be a whole number, got '${text}'`);
  return Number(text);
}
