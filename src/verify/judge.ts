/**
 * Turns what a run recorded into its verdicts and its {@link VerifyResult}:
 * the history check, convergence, availability, crashes, resources and
 * whether every fault could be injected.
 */
import { resolve } from 'node:path';
import {
  availability, availabilityVerdict, faultSpans, resourceFigures, resourceVerdict, type CheckVerdict,
} from './analysis.js';
import { checkHistory } from './checker.js';
import type { ConvergenceResult } from './converge.js';
import type { History } from './history.js';
import type { ProcSample } from './monitor.js';
import type { Nemesis } from './nemesis.js';
import { reproduceCommand, type ResolvedOptions } from './options.js';
import { MAX_REPORTED_VIOLATIONS, type VerifyResult } from './report.js';
import type { PlannedFault } from './schedule.js';

/** What a run hands over once traffic has stopped and convergence was awaited. */
export interface RunRecord {
  startedAt: string;
  history: History;
  nemesis: Nemesis;
  schedule: PlannedFault[];
  convergence: ConvergenceResult;
  procs: ProcSample[];
  /** Regions whose process was not running at the end. */
  notRunning: string[];
  healAtMs: number;
  convergedAtMs: number | null;
  endMs: number;
}

export function judge(o: ResolvedOptions, r: RunRecord): VerifyResult {
  const check = checkHistory(r.history.ops, r.convergence.finals);
  const spans = faultSpans(r.history.faults, r.healAtMs);
  const avail = availability(r.history.ops, o.regions, spans, (region, from, to) => r.nemesis.upDuring(region, from, to));
  const resources = resourceFigures(r.procs, o.regions);
  const { errors } = r.nemesis;
  const checks: CheckVerdict[] = [
    convergenceVerdict(r.convergence, r.convergedAtMs, r.healAtMs),
    { name: 'lost', ok: check.lost === 0, detail: `${check.lost} acknowledged writes missing` },
    {
      name: 'unexpected', ok: check.unexpected === 0,
      detail: `${check.unexpected} values present that no acknowledged or unknown write explains`,
    },
    availabilityVerdict(avail, o.minAvailability),
    crashVerdict(r.nemesis, r.notRunning),
    resourceVerdict(resources),
    {
      name: 'faults', ok: errors.length === 0,
      detail: errors.length === 0 ? `${spans.length} fault${spans.length === 1 ? '' : 's'} applied and healed` : errors.join('; '),
    },
  ];
  const c = r.convergence;
  return {
    ok: checks.every((k) => k.ok),
    seed: o.seed,
    command: reproduceCommand(o),
    reportDir: resolve(o.reportDir),
    startedAt: r.startedAt,
    options: { durationMs: o.durationMs, regions: o.regions, clients: o.clients, faults: o.faults, quick: o.quick },
    timings: {
      workloadMs: r.healAtMs,
      healAtMs: r.healAtMs,
      convergedAtMs: r.convergedAtMs,
      timeToConvergeMs: r.convergedAtMs === null ? null : r.convergedAtMs - r.healAtMs,
      totalMs: r.endMs,
    },
    ops: r.history.counts(),
    lost: check.lost,
    unexpected: check.unexpected,
    checks,
    workloads: check.workloads,
    availability: avail,
    resources,
    crashes: r.nemesis.crashes,
    convergence: { converged: c.converged, digests: c.digests, reasons: c.reasons, differing: c.differing },
    faults: { planned: r.schedule, ran: spans, errors, skipped: r.nemesis.skipped },
    violations: check.violations.slice(0, MAX_REPORTED_VIOLATIONS),
  };
}

function convergenceVerdict(c: ConvergenceResult, convergedAtMs: number | null, healAtMs: number): CheckVerdict {
  if (c.converged && convergedAtMs !== null) {
    const after = ((convergedAtMs - healAtMs) / 1000).toFixed(1);
    return { name: 'convergence', ok: true, detail: `equal digests and documents, nothing pending, ${after} s after the final heal` };
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
