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
import {
  availability, availabilityVerdict, faultSpans, resourceFigures, resourceVerdict, writeRates,
  type CheckVerdict, type FaultSpan, type RegionAvailability, type ResourceFigures,
} from './analysis.js';
import { checkHistory, type CheckResult } from './checker.js';
import { awaitConvergence, type ConvergenceResult } from './converge.js';
import { History } from './history.js';
import { Monitor } from './monitor.js';
import { Nemesis } from './nemesis.js';
import { resolveOptions, reproduceCommand, parseDuration, type ResolvedOptions, type VerifyOptions } from './options.js';
import { Random } from './random.js';
import { formatSummary, MAX_REPORTED_VIOLATIONS, progressLine, writeReport, type VerifyResult } from './report.js';
import { generateSchedule, quickSchedule, type PlannedFault } from './schedule.js';
import { renderTimeline } from './timeline.js';
import { Client, planDocs, sleep, workloadPlan } from './workload.js';

export type { VerifyOptions } from './options.js';
export type { VerifyResult } from './report.js';

/** Region timings short enough that faults are noticed within a second or two. */
const REGION_CONFIG = {
  replication: { heartbeatMs: 200, suspectAfterMisses: 3, deadAfterMs: 1500, reconnectMinMs: 50, reconnectMaxMs: 1000, antiEntropyMs: 1500 },
  storage: { gcIntervalMs: 500, compactIntervalMs: 200 },
  log: { level: 'warn' },
};
const DEAD_AFTER_MS = REGION_CONFIG.replication.deadAfterMs;

/** Runs one verification and writes its report; resolves with the verdicts (it does not set the exit code). */
export async function runVerify(options: VerifyOptions = {}): Promise<VerifyResult> {
  const o = resolveOptions(options);
  mkdirSync(o.reportDir, { recursive: true });
  const { durationMs, faults } = o.quick
    ? quickSchedule(o.regions)
    : {
        durationMs: o.durationMs,
        faults: generateSchedule({ seed: o.seed, durationMs: o.durationMs, regions: o.regions, kinds: o.faults, deadAfterMs: DEAD_AFTER_MS }),
      };
  const run = { ...o, durationMs };
  o.log(`meridian verify: seed ${o.seed}, ${o.regions.length} regions x ${o.clients} clients, ${durationMs / 1000} s, ${faults.length} faults (${o.faults.join(', ') || 'none'})`);
  o.log(`report: ${resolve(o.reportDir)}`);
  const baseDir = mkdtempSync(join(tmpdir(), 'meridian-verify-'));
  const proxyRandom = new Random(o.seed).fork('proxies');
  const cluster = new LocalCluster({
    regions: o.regions.map((region) => ({ region })),
    baseDir,
    extra: REGION_CONFIG,
    random: () => proxyRandom.next(),
  });
  let result: VerifyResult | null = null;
  try {
    await cluster.start();
    result = await exercise(cluster, run, faults);
    return result;
  } finally {
    await cluster.stop(true);
    if (!result?.ok && existsSync(join(baseDir, 'logs'))) cpSync(join(baseDir, 'logs'), join(o.reportDir, 'logs'), { recursive: true });
    rmSync(baseDir, { recursive: true, force: true });
  }
}

async function exercise(cluster: LocalCluster, o: ResolvedOptions, schedule: PlannedFault[]): Promise<VerifyResult> {
  const startedAt = new Date().toISOString();
  const t0 = performance.now();
  const clock = () => performance.now() - t0;
  const history = new History(join(o.reportDir, 'history.jsonl'), clock);
  const plan = workloadPlan();
  const random = new Random(o.seed);
  const clients = o.regions.flatMap((region) =>
    Array.from({ length: o.clients }, (_, i) => new Client({
      name: `${region}.${i + 1}`, region, url: cluster.url(region), rng: random.fork(`client ${region}.${i + 1}`),
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
  let phase = 'workload';
  const monitor = new Monitor({
    cluster, clock, onTick: () => o.log(progressLine(clock(), history.counts(), phase, nemesis.activeLabels())),
  });
  monitor.start();
  for (const c of clients) c.start();
  const faultsDone = nemesis.run();
  await sleep(o.durationMs);
  nemesis.stop();
  await faultsDone;
  phase = 'healing';
  try {
    await nemesis.healAll();
  } catch (err) {
    nemesis.errors.push(`final heal: ${err instanceof Error ? err.message : String(err)}`);
  }
  const healAtMs = clock();
  history.fault(0, 'note', 'final heal');
  phase = 'draining';
  await Promise.all(clients.map((c) => c.stop()));
  phase = 'converging';
  const convergeFrom = clock();
  const convergence = await awaitConvergence(cluster, planDocs(plan), o.convergeTimeoutMs);
  const convergedAtMs = convergence.elapsedMs === null ? null : convergeFrom + convergence.elapsedMs;
  monitor.sampleProcs();
  await monitor.stop();
  const notRunning = o.regions.filter((r) => !cluster.region(r).proc);
  nemesis.expectExits();
  o.log(`checking ${history.ops.length} operations...`);
  const check = checkHistory(history.ops, convergence.finals);
  const endMs = clock();
  const spans = faultSpans(history.faults, healAtMs);
  const avail = availability(history.ops, o.regions, spans, (r, from, to) => nemesis.upDuring(r, from, to));
  const resources = resourceFigures(monitor.procs, o.regions);
  const checks: CheckVerdict[] = [
    convergenceVerdict(convergence, convergedAtMs, healAtMs),
    { name: 'lost', ok: check.lost === 0, detail: `${check.lost} acknowledged writes missing` },
    { name: 'unexpected', ok: check.unexpected === 0, detail: `${check.unexpected} values present that no acknowledged or unknown write explains` },
    availabilityVerdict(avail, o.minAvailability),
    crashVerdict(nemesis, notRunning),
    resourceVerdict(resources),
    {
      name: 'faults',
      ok: nemesis.errors.length === 0,
      detail: nemesis.errors.length === 0 ? `${spans.length} faults applied and healed` : nemesis.errors.join('; '),
    },
  ];
  const result = buildResult(o, {
    startedAt, healAtMs, convergedAtMs, endMs, history, check, checks, convergence, schedule, spans, nemesis, avail, resources,
  });
  const down = new Map(o.regions.map((r) => [r, (nemesis.down.get(r) ?? []).map((d) => ({ fromMs: d.fromMs, toMs: d.toMs ?? endMs }))]));
  const svg = renderTimeline({
    title: `meridian verify — seed ${o.seed} — ${result.ok ? 'PASS' : 'FAIL'}`,
    regions: o.regions, endMs, healMs: healAtMs, convergedMs: convergedAtMs, faults: spans, down,
    rates: writeRates(history.ops, o.regions, endMs), lag: monitor.sync,
  });
  writeReport(o.reportDir, result, svg);
  await history.close();
  return result;
}

function convergenceVerdict(c: ConvergenceResult, convergedAtMs: number | null, healAtMs: number): CheckVerdict {
  if (c.converged && convergedAtMs !== null) {
    return { name: 'convergence', ok: true, detail: `equal digests and documents, nothing pending, ${((convergedAtMs - healAtMs) / 1000).toFixed(1)} s after the final heal` };
  }
  return { name: 'convergence', ok: false, detail: `not converged: ${c.reasons.slice(0, 6).join('; ')}` };
}

function crashVerdict(nemesis: Nemesis, notRunning: string[]): CheckVerdict {
  const crashes = nemesis.crashes.map((c) => `${c.region} at ${(c.atMs / 1000).toFixed(1)}s (code ${c.code}, signal ${c.signal})`);
  const ok = crashes.length === 0 && notRunning.length === 0;
  const detail = ok
    ? 'every region process ran to the end (apart from scheduled kills)'
    : [...crashes.map((c) => `exited unasked: ${c}`), ...notRunning.map((r) => `${r} not running at the end`)].join('; ');
  return { name: 'crashes', ok, detail };
}

interface Outcomes {
  startedAt: string;
  healAtMs: number;
  convergedAtMs: number | null;
  endMs: number;
  history: History;
  check: CheckResult;
  checks: CheckVerdict[];
  convergence: ConvergenceResult;
  schedule: PlannedFault[];
  spans: FaultSpan[];
  nemesis: Nemesis;
  avail: RegionAvailability[];
  resources: ResourceFigures[];
}

function buildResult(o: ResolvedOptions, x: Outcomes): VerifyResult {
  const { convergence: c } = x;
  return {
    ok: x.checks.every((k) => k.ok),
    seed: o.seed,
    command: reproduceCommand(o),
    reportDir: resolve(o.reportDir),
    startedAt: x.startedAt,
    options: { durationMs: o.durationMs, regions: o.regions, clients: o.clients, faults: o.faults, quick: o.quick },
    timings: {
      workloadMs: x.healAtMs,
      healAtMs: x.healAtMs,
      convergedAtMs: x.convergedAtMs,
      timeToConvergeMs: x.convergedAtMs === null ? null : x.convergedAtMs - x.healAtMs,
      totalMs: x.endMs,
    },
    ops: x.history.counts(),
    lost: x.check.lost,
    unexpected: x.check.unexpected,
    checks: x.checks,
    workloads: x.check.workloads,
    availability: x.avail,
    resources: x.resources,
    crashes: x.nemesis.crashes,
    convergence: { converged: c.converged, digests: c.digests, reasons: c.reasons, differing: c.differing },
    faults: { planned: x.schedule, ran: x.spans, errors: x.nemesis.errors, skipped: x.nemesis.skipped },
    violations: x.check.violations.slice(0, MAX_REPORTED_VIOLATIONS),
  };
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
 *   .option('--faults <list>', 'comma-separated fault kinds: isolate,bridge,oneway,blackhole,stall,latency,slicer,bandwidth,kill,pause,wipe,flap (or all, none)')
 *   .option('--quick', 'a short fixed run (seed 1 unless given) with isolate, kill and blackhole')
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
      quick: opts.quick === true,
    };
    resolveOptions(options);
  } catch (err) {
    process.stderr.write(`meridian verify: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 2;
    return;
  }
  let result: VerifyResult;
  try {
    result = await runVerify(options);
  } catch (err) {
    process.stderr.write(`meridian verify: the run could not complete: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 2;
    return;
  }
  process.stdout.write(`${formatSummary(result)}\n`);
  process.exitCode = result.ok ? 0 : 1;
}

function wholeNumber(text: string, flag: string): number {
  if (!/^\d{1,15}$/.test(text.trim())) throw new Error(`${flag} must be a whole number, got '${text}'`);
  return Number(text);
}
