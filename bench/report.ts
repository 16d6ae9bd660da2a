/**
 * Benchmark results: one JSON file with every figure and one Markdown file
 * with the tables, both named after the run's start time.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MachineInfo } from './machine.js';

export type Cell = string | number | null;

export interface Table {
  title: string;
  columns: string[];
  rows: Cell[][];
}

/** What one scenario hands back: its tables for people, its data for tools. */
export interface ScenarioResult {
  id: string;
  title: string;
  /** What was run, and against which floor. */
  setup: string;
  tables: Table[];
  notes: string[];
  data: unknown;
  seconds: number;
  /** 1-minute load average of the machine before and after the scenario (set by the runner). */
  load?: { before: number; after: number };
}

export interface RunReport {
  command: string;
  quick: boolean;
  machine: MachineInfo;
  scenarios: ScenarioResult[];
  profiles: Table[];
  seconds: number;
}

/** Formats a number for a table: thousands separated, at most three decimals. */
export function fmt(v: Cell): string {
  if (v === null) return '–';
  if (typeof v === 'string') return v;
  if (!Number.isFinite(v)) return String(v);
  const abs = Math.abs(v);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3;
  return v.toLocaleString('en-US', { maximumFractionDigits: digits });
}

export function markdownTable(t: Table): string {
  const head = `| ${t.columns.join(' | ')} |`;
  const rule = `|${t.columns.map(() => '---').join('|')}|`;
  const body = t.rows.map((r) => `| ${r.map(fmt).join(' | ')} |`);
  return [`**${t.title}**`, '', head, rule, ...body].join('\n');
}

export function markdownReport(r: RunReport): string {
  const m = r.machine;
  const out = [
    `# Meridian benchmark, ${m.date.slice(0, 10)}`,
    '',
    `- Command: \`${r.command}\`${r.quick ? ' (quick: short runs, small counts)' : ''}`,
    `- Machine: ${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.os}; Node ${m.node}`,
    `- Started ${m.date}; took ${Math.round(r.seconds)} s; load average at start ${m.loadAverage.join(' / ')}`,
    '- Latencies in ms. Open-loop latencies count from each request\'s scheduled start.',
    '',
  ];
  for (const s of r.scenarios) {
    out.push(`## ${s.title}`, '', s.setup, '');
    if (s.load) {
      const busy = Math.max(s.load.before, s.load.after) > m.cores;
      out.push(`Load average (1 min) before / after: ${s.load.before} / ${s.load.after}${busy ? ` (**above ${m.cores} cores: other work competed for the CPU**)` : ''}. Took ${Math.round(s.seconds)} s.`, '');
    }
    for (const t of s.tables) out.push(markdownTable(t), '');
    for (const n of s.notes) out.push(`- ${n}`);
    if (s.notes.length > 0) out.push('');
  }
  if (r.profiles.length > 0) {
    out.push('## CPU profiles of region processes', '');
    for (const t of r.profiles) out.push(markdownTable(t), '');
  }
  return out.join('\n');
}

/** Writes `<dir>/<stamp>.json` and `<dir>/<stamp>.md`; returns their paths. */
export function writeReport(dir: string, r: RunReport): { json: string; md: string } {
  mkdirSync(dir, { recursive: true });
  const stamp = r.machine.date.replace(/[:]/g, '-').replace(/\.\d+Z$/, 'Z');
  const json = join(dir, `${stamp}${r.quick ? '-quick' : ''}.json`);
  const md = join(dir, `${stamp}${r.quick ? '-quick' : ''}.md`);
  writeFileSync(json, `${JSON.stringify(r, null, 2)}\n`);
  writeFileSync(md, `${markdownReport(r)}\n`);
  return { json, md };
}
