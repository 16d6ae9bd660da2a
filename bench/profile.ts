/**
 * Summaries of V8 CPU profiles (`--cpu-prof`) of region processes: the
 * functions with the most self time and the share of each part of the code,
 * over all profiles of a scenario (its regions behave alike).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Table } from './report.js';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface CpuProfile {
  nodes: { id: number; callFrame: CallFrame }[];
  samples: number[];
  timeDeltas: number[];
}

const TOP = 20;

/** One table of top functions and one of code areas per scenario folder under `dir`. */
export function summarizeProfiles(dir: string): Table[] {
  if (!existsSync(dir)) return [];
  const tables: Table[] = [];
  for (const scenario of readdirSync(dir).sort()) {
    const folder = join(dir, scenario);
    if (!statSync(folder).isDirectory()) continue;
    const files = readdirSync(folder).filter((f) => f.endsWith('.cpuprofile'));
    if (files.length === 0) continue;
    const self = new Map<string, number>();
    const areas = new Map<string, number>();
    for (const f of files) addProfile(JSON.parse(readFileSync(join(folder, f), 'utf8')) as CpuProfile, self, areas);
    const busy = [...areas.entries()].filter(([a]) => a !== '(idle)').reduce((s, [, us]) => s + us, 0);
    const pct = (us: number): number => Math.round((us / Math.max(busy, 1)) * 1000) / 10;
    const ms = (us: number): number => Math.round(us / 1000);
    tables.push({
      title: `${scenario}: top self time (${files.length} processes; % of non-idle time)`,
      columns: ['function', 'where', 'self ms', '%'],
      rows: [...self.entries()]
        .filter(([k]) => !k.startsWith('(idle)'))
        .sort((a, b) => b[1] - a[1])
        .slice(0, TOP)
        .map(([k, us]) => {
          const [fn, where] = k.split('\t') as [string, string];
          return [fn, where, ms(us), pct(us)];
        }),
    });
    tables.push({
      title: `${scenario}: self time by code area`,
      columns: ['area', 'self ms', '%'],
      rows: [...areas.entries()].sort((a, b) => b[1] - a[1]).map(([a, us]) => [a, ms(us), a === '(idle)' ? null : pct(us)]),
    });
  }
  return tables;
}

function addProfile(p: CpuProfile, self: Map<string, number>, areas: Map<string, number>): void {
  const byId = new Map(p.nodes.map((n) => [n.id, n.callFrame]));
  for (let i = 0; i < p.samples.length; i++) {
    const frame = byId.get(p.samples[i]!);
    const us = p.timeDeltas[i + 1] ?? 0;
    if (!frame || us <= 0) continue;
    const key = `${frame.functionName || '(anonymous)'}\t${where(frame)}`;
    self.set(key, (self.get(key) ?? 0) + us);
    const area = areaOf(frame);
    areas.set(area, (areas.get(area) ?? 0) + us);
  }
}

function where(f: CallFrame): string {
  if (!f.url) return 'native';
  return `${shortUrl(f.url)}:${f.lineNumber + 1}`;
}

function shortUrl(url: string): string {
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) return url.slice(nm + '/node_modules/'.length);
  const dist = url.lastIndexOf('/dist/');
  if (dist >= 0) return url.slice(dist + '/dist/'.length);
  return url.replace(/^file:\/\//, '');
}

/** `(idle)`, `(garbage collector)`, a package, a Meridian module folder, node internals, or native code. */
function areaOf(f: CallFrame): string {
  if (f.functionName.startsWith('(') && !f.url) return f.functionName;
  if (!f.url) return 'native (V8 builtins, SQLite via better-sqlite3, crypto)';
  if (f.url.startsWith('node:')) return 'node internals (http, net, streams)';
  const nm = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(f.url);
  if (nm) return nm[1]!;
  const src = /\/dist\/src\/(?:([^/]+)\/)?[^/]+\.js$/.exec(f.url);
  if (src) return `meridian ${src[1] ?? 'root'}`;
  return shortUrl(f.url);
}
