/**
 * Samples a running cluster: each region's replication lag and pending
 * updates from `GET /v1/sync` about once a second, and each region process's
 * resident memory and open file descriptors from /proc every few seconds.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { SyncStatus } from '../contract.js';
import type { VerifyCluster } from './target.js';
import { request, sleep } from './workload.js';

export interface SyncSample {
  atMs: number;
  region: string;
  /** False when the region did not answer (down, paused or too slow). */
  reachable: boolean;
  /** The largest outbound lag over the region's peers. */
  lagMs: number;
  /** Outbound updates not yet acknowledged, summed over peers. */
  pending: number;
}

export interface ProcSample {
  atMs: number;
  region: string;
  pid: number;
  rssBytes: number;
  fds: number;
}

export interface MonitorOptions {
  cluster: VerifyCluster;
  clock: () => number;
  intervalMs?: number;
  procEveryMs?: number;
  /** Called after each sampling round (the run prints its progress line here). */
  onTick?: () => void;
}


export class Monitor {
  readonly sync: SyncSample[] = [];
  readonly procs: ProcSample[] = [];
  private stopped = false;
  private loop: Promise<void> | null = null;
  private lastProcMs = -Infinity;

  constructor(private readonly o: MonitorOptions) {}

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  /** Reads /proc for every running region process now. Silently measures nothing where /proc is absent. */
  sampleProcs(): void {
    const atMs = this.o.clock();
    this.lastProcMs = atMs;
    for (const r of this.o.cluster.regions.values()) {
      const pid = r.proc?.pid;
      if (pid === undefined) continue;
      const stats = procStats(pid);
      if (stats) this.procs.push({ atMs, region: r.name, pid, ...stats });
    }
  }

  private async run(): Promise<void> {
    const every = this.o.intervalMs ?? 1000;
    while (!this.stopped) {
      const started = Date.now();
      await this.sampleSync();
      if (this.o.clock() - this.lastProcMs >= (this.o.procEveryMs ?? 3000)) this.sampleProcs();
      this.o.onTick?.();
      await sleep(Math.max(50, every - (Date.now() - started)));
    }
  }

  private async sampleSync(): Promise<void> {
    const rows = await Promise.all([...this.o.cluster.regions.values()].map(async (r): Promise<SyncSample> => {
      const atMs = this.o.clock();
      const reply = r.proc && !r.paused ? await request(`${r.url}/v1/sync`, 'GET', undefined, 800) : null;
      if (!reply || 'error' in reply || reply.status !== 200) return { atMs, region: r.name, reachable: false, lagMs: 0, pending: 0 };
      const peers = (reply.body as SyncStatus | null)?.peers ?? [];
      const lagMs = Math.max(0, ...peers.map((p) => p.outbound.lagMs));
      const pending = peers.reduce((n, p) => n + p.outbound.pendingUpdates, 0);
      return { atMs, region: r.name, reachable: true, lagMs, pending };
    }));
    this.sync.push(...rows);
  }
}

/** Resident memory and open descriptors of a process, or null when /proc cannot tell. */
export function procStats(pid: number): { rssBytes: number; fds: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1];
    const fds = readdirSync(`/proc/${pid}/fd`).length;
    return { rssBytes: kb === undefined ? 0 : Number(kb) * 1024, fds };
  } catch (err) {
    // The process may have just exited, or this system has no /proc.
    if (err instanceof Error && 'code' in err && (err.code === 'ENOENT' || err.code === 'ESRCH')) return null;
    throw err;
  }
}
