/**
 * The outcome of a verification run: the figures and verdicts as
 * `results.json`, the timeline as `timeline.svg`, and a summary for the
 * terminal that ends with the command that reproduces the run.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CheckVerdict, FaultSpan, RegionAvailability, ResourceFigures } from './analysis.js';
import { pct } from './analysis.js';
import type { Violation, WorkloadVerdict } from './checker.js';
import type { Outcome } from './history.js';
import type { ProcSample, SyncSample } from './monitor.js';
import { stamp, type Crash } from './nemesis.js';
import type { PlannedFault, VerifyFaultKind } from './schedule.js';

/** Everything a run found; `results.json` holds exactly this. */
export interface VerifyResult {
  /** True when every check passed. */
  ok: boolean;
  seed: number;
  /** The command that repeats this run (same seed, same options). */
  command: string;
  reportDir: string;
  startedAt: string;
  options: { durationMs: number; regions: string[]; clients: number; faults: VerifyFaultKind[]; quick: boolean };
  timings: {
    /** From the first write to the final heal. */
    workloadMs: number;
    healAtMs: number;
    convergedAtMs: number | null;
    /** From the final heal until every region agreed. */
    timeToConvergeMs: number | null;
    totalMs: number;
  };
  ops: Record<Outcome | 'pending', number>;
  lost: number;
  unexpected: number;
  checks: CheckVerdict[];
  workloads: WorkloadVerdict[];
  availability: RegionAvailability[];
  resources: ResourceFigures[];
  crashes: Crash[];
  convergence: { converged: boolean; digests: Record<string, string | null>; reasons: string[]; differing: string[] };
  faults: { planned: PlannedFault[]; ran: FaultSpan[]; errors: string[]; skipped: string[] };
  /** The first violations found (all of them are counted in `lost` and `unexpected`). */
  violations: Violation[];
}

export const MAX_REPORTED_VIOLATIONS = 200;

/**
 * Writes results.json, timeline.svg and samples.json (the raw lag and
 * process samples behind the timeline) into `dir`; history.jsonl is written
 * as the run goes.
 */
export function writeReport(dir: string, result: VerifyResult, timelineSvg: string, samples: { sync: SyncSample[]; procs: ProcSample[] }): void {
  writeFileSync(join(dir, 'results.json'), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(join(dir, 'timeline.svg'), timelineSvg);
  writeFileSync(join(dir, 'samples.json'), `${JSON.stringify(samples)}\n`);
}

/** The summary printed at the end of a run. */
export function formatSummary(r: VerifyResult): string {
  const lines: string[] = [];
  lines.push('');
  lines.push(`meridian verify: ${r.ok ? 'PASS' : 'FAIL'}  (seed ${r.seed})`);
  const clients = `${r.options.clients} client${r.options.clients === 1 ? '' : 's'} each`;
  lines.push(`  regions ${r.options.regions.join(', ')}; ${clients}; workload ${(r.timings.workloadMs / 1000).toFixed(1)} s`);
  lines.push(`  ops: ok ${r.ops.ok}  fail ${r.ops.fail}  unknown ${r.ops.unknown}${r.ops.pending ? `  pending ${r.ops.pending}` : ''}`);
  lines.push(`  faults: ${r.faults.ran.length} injected${r.faults.skipped.length ? `, ${r.faults.skipped.length} skipped` : ''}`);
  lines.push(`  lost ${r.lost}, unexpected ${r.unexpected}`);
  const ttc = r.timings.timeToConvergeMs;
  lines.push(`  ${ttc === null ? 'did not converge' : `converged ${(ttc / 1000).toFixed(1)} s after the final heal`}`);
  const share = (a: RegionAvailability) => `${a.region} ${pct(a.duringFaults.share ?? a.overall.share)}`;
  lines.push(`  writes acknowledged while up (during faults): ${r.availability.map(share).join(', ')}`);
  lines.push('  checks:');
  for (const c of r.checks) lines.push(`    ${c.ok ? 'ok  ' : 'FAIL'} ${c.name.padEnd(13)} ${c.detail}`);
  if (r.violations.length > 0) {
    lines.push('  first violations:');
    for (const x of r.violations.slice(0, 10)) lines.push(`    ${x.type} ${x.workload} ${x.doc} @${x.region}: ${x.detail}`);
  }
  lines.push(`  report: ${r.reportDir}`);
  if (!r.ok) lines.push(`  reproduce with seed ${r.seed}: ${r.command}`);
  return lines.join('\n');
}

/** One progress line: elapsed time, operations so far and the faults active now. */
export function progressLine(atMs: number, ops: Record<Outcome | 'pending', number>, phase: string, faults: readonly string[]): string {
  const counts = `ok ${ops.ok} fail ${ops.fail} unknown ${ops.unknown}`;
  return `${stamp(atMs)}  ${phase.padEnd(10)} ${counts}  | ${faults.length ? faults.join('; ') : 'no faults'}`;
}
