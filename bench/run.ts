/**
 * `npm run bench [-- --quick] [--only <scenario,...>] [--profile] [--out <dir>]`
 *
 * Runs Meridian's benchmarks on this machine, each next to a floor measured
 * in the same run, prints progress, and writes bench/results/<date>.json and
 * .md. Scenarios: write (1), lag (2), catchup (3), many (4), hot (5), live (6).
 */
// First: Yjs must find its random draws pooled (see the module).
import '../src/crdt/entropy.js';
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { killAllRegions } from './cluster.js';
import { createContext, type BenchContext } from './context.js';
import { loadNow, machineInfo } from './machine.js';
import { summarizeProfiles } from './profile.js';
import { writeReport, type RunReport, type ScenarioResult } from './report.js';
import { catchUp } from './s3-catchup.js';
import { hotDocument } from './s5-hot.js';
import { liveEditors } from './s6-live.js';
import { manyDocuments } from './s4-many.js';
import { replicationLag } from './s2-lag.js';
import { writePath } from './s1-write.js';

const SCENARIOS: { id: string; run: (ctx: BenchContext) => Promise<ScenarioResult> }[] = [
  { id: 'write', run: writePath },
  { id: 'lag', run: replicationLag },
  { id: 'catchup', run: catchUp },
  { id: 'many', run: manyDocuments },
  { id: 'hot', run: hotDocument },
  { id: 'live', run: liveEditors },
];

const USAGE = `usage: npm run bench -- [--quick] [--only write,lag,catchup,many,hot,live] [--profile] [--out <dir>]
  --quick     short runs and small counts (under three minutes)
  --only      run only these scenarios (names or numbers 1-6, comma separated)
  --profile   write V8 CPU profiles of the region processes and summarise them
  --out       folder for the results (default bench/results)
  --wait-quiet <s>  before each scenario, wait up to <s> seconds for the 1-minute load average to fall below half the cores`;

function selected(only: string | undefined): typeof SCENARIOS {
  if (only === undefined) return SCENARIOS;
  const wanted = only.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  return wanted.map((w) => {
    const found = /^\d+$/.test(w) ? SCENARIOS[Number(w) - 1] : SCENARIOS.find((s) => s.id === w);
    if (!found) throw new Error(`unknown scenario "${w}"\n${USAGE}`);
    return found;
  });
}

/** Other work on the machine skews every figure: give it a chance to finish. */
async function waitQuiet(ctx: BenchContext, cores: number, maxMs: number): Promise<void> {
  const start = performance.now();
  while (loadNow()[0]! >= cores / 2 && performance.now() - start < maxMs) {
    ctx.log(`waiting for a quieter machine (load average ${loadNow()[0]})`);
    await new Promise((r) => setTimeout(r, 10_000));
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      profile: { type: 'boolean', default: false },
      out: { type: 'string' },
      'wait-quiet': { type: 'string' },
      help: { type: 'boolean', default: false },
      // Internal: one scenario in a process of its own (see runInChild).
      child: { type: 'string' },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (values.child !== undefined) return runChild(JSON.parse(values.child) as ChildTask);
  const scenarios = selected(values.only);
  const started = performance.now();
  const machine = machineInfo();
  const outDir = resolve(values.out ?? join(process.cwd(), 'bench', 'results'));
  const stamp = machine.date.replace(/[:.]/g, '-');
  const scratch = join(tmpdir(), `meridian-bench-${stamp}`);
  process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));
  const profileDir = values.profile ? join(outDir, 'profiles', stamp) : null;
  const ctx = createContext({ quick: values.quick, scratch, profileDir, started });
  ctx.log(`Meridian bench${values.quick ? ' (quick)' : ''}: ${scenarios.map((s) => s.id).join(', ')}`);
  ctx.log(`${machine.cpuModel}, ${machine.cores} cores, Node ${machine.node}, load average ${machine.loadAverage.join(' / ')}`);

  const report: RunReport = {
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    quick: values.quick,
    machine,
    scenarios: [],
    profiles: [],
    seconds: 0,
  };
  let failed = 0;
  try {
    for (const s of scenarios) {
      if (values['wait-quiet'] !== undefined) await waitQuiet(ctx, machine.cores, Number(values['wait-quiet']) * 1000);
      const before = loadNow()[0]!;
      ctx.log(`== ${s.id} (load average ${before})`);
      const t0 = performance.now();
      const result = await runInChild({ id: s.id, quick: values.quick, scratch, profileDir, startedAt: Date.now() - (performance.now() - started) })
        .catch((err: unknown) => {
          failed++;
          ctx.log(`${s.id} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
          return failedScenario(s.id, err, (performance.now() - t0) / 1000);
        });
      result.load = { before, after: loadNow()[0]! };
      report.scenarios.push(result);
      // Written after every scenario, so a run that dies later keeps what it measured.
      report.seconds = (performance.now() - started) / 1000;
      writeReport(outDir, report);
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  report.profiles = profileDir ? summarizeProfiles(profileDir) : [];
  report.seconds = (performance.now() - started) / 1000;
  const files = writeReport(outDir, report);
  ctx.log(`results: ${files.md}`);
  ctx.log(`         ${files.json}`);
  if (failed > 0) {
    ctx.log(`${failed} scenario(s) failed`);
    process.exitCode = 1;
  }
}

interface ChildTask {
  id: string;
  quick: boolean;
  scratch: string;
  profileDir: string | null;
  /** When the run started (Date.now() scale), so that progress lines keep one clock. */
  startedAt: number;
  /** Where the child writes its ScenarioResult as JSON. */
  result?: string;
}

/**
 * Runs one scenario in a process of its own. The load generator shares
 * its process with everything the scenario keeps in memory; run after
 * others in one process, a scenario's writes were measured late by the
 * runner's own garbage collection of what the earlier ones left (one-off:
 * part (c) of catch-up with 590 MB held beside it, the generator late by
 * up to 75 ms against 12-15 ms alone, and every region's p99 with it).
 */
async function runInChild(task: ChildTask): Promise<ScenarioResult> {
  const result = join(task.scratch, `${task.id}-result.json`);
  rmSync(result, { force: true });
  const child = fork(fileURLToPath(import.meta.url), ['--child', JSON.stringify({ ...task, result })], { stdio: 'inherit' });
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  if (code !== 0 || !existsSync(result)) throw new Error(`the scenario's process ended with ${signal ?? `code ${code}`}`);
  return JSON.parse(readFileSync(result, 'utf8')) as ScenarioResult;
}

/** In the scenario's own process: runs it and writes its result where the runner reads it. */
async function runChild(task: ChildTask): Promise<void> {
  const scenario = SCENARIOS.find((s) => s.id === task.id);
  if (!scenario || task.result === undefined) throw new Error(`unknown scenario task ${JSON.stringify(task)}`);
  const ctx = createContext({ quick: task.quick, scratch: task.scratch, profileDir: task.profileDir, started: performance.now() - (Date.now() - task.startedAt) });
  writeFileSync(task.result, JSON.stringify(await scenario.run(ctx)));
}

function failedScenario(id: string, err: unknown, seconds: number): ScenarioResult {
  const message = err instanceof Error ? err.message : String(err);
  return { id, title: `${id} (failed)`, setup: '', tables: [], notes: [`failed: ${message}`], data: { error: message }, seconds };
}

process.on('exit', killAllRegions);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    process.stderr.write(`bench interrupted (${signal}); stopping region processes\n`);
    process.exit(130);
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
