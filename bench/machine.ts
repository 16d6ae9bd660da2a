/**
 * What the benchmarks ran on, and what a process costs while they run:
 * CPU time and memory from /proc (Linux only; elsewhere the figures are null).
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { cpus, loadavg, totalmem, release, platform } from 'node:os';
import { join } from 'node:path';

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
  date: string;
  /** 1, 5 and 15 minute load averages when the run started. */
  loadAverage: number[];
}

export function machineInfo(): MachineInfo {
  let model = cpus()[0]?.model ?? 'unknown';
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('model name'));
    if (line) model = line.split(':')[1]?.trim() ?? model;
  } catch (err) {
    model = `${model} (/proc/cpuinfo unreadable: ${(err as Error).message})`;
  }
  return {
    cpuModel: model,
    cores: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    os: `${platform()} ${release()}`,
    node: process.version,
    date: new Date().toISOString(),
    loadAverage: loadNow(),
  };
}

/** The 1, 5 and 15 minute load averages, two decimals. */
export function loadNow(): number[] {
  return loadavg().map((l) => Math.round(l * 100) / 100);
}

/** Resident and peak resident memory of a process, in MiB (VmRSS, VmHWM). */
export function memoryOf(pid: number): { rssMiB: number; peakMiB: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
    return { rssMiB: Math.round(kib('VmRSS') / 102.4) / 10, peakMiB: Math.round(kib('VmHWM') / 102.4) / 10 };
  } catch {
    return null;
  }
}

/** CPU seconds (user + system) a process has used so far. */
export function cpuSecondsOf(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return ticks / 100;
  } catch {
    return null;
  }
}

/** Measures the CPU share (1.0 = one core) of a process between two calls. */
export function cpuMeter(pid: number): () => number | null {
  const c0 = cpuSecondsOf(pid);
  const t0 = performance.now();
  return () => {
    const c1 = cpuSecondsOf(pid);
    if (c0 === null || c1 === null) return null;
    return Math.round(((c1 - c0) / ((performance.now() - t0) / 1000)) * 100) / 100;
  };
}

/** Total size of the files in a folder tree, in bytes. */
export function folderBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += folderBytes(path);
    else if (entry.isFile()) total += statSync(path).size;
  }
  return total;
}
