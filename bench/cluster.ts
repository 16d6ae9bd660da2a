/**
 * Region processes under benchmark: a {@link LocalCluster} (real `meridian
 * start` processes on loopback, a fault proxy on every link) with a
 * keep-alive HTTP client per region, the transaction probe loaded into each
 * process, and optional CPU profiles.
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, LocalCluster, type RegionSpec } from '../src/faults/cluster.js';
import { HttpClient } from './http.js';
import type { ProbeCounters } from './probe.js';
import type { SyncStatus } from '../src/contract.js';

/** `GET /v1/sync`, as the wire contract states it. */
export type SyncBody = SyncStatus;

export interface BenchClusterOptions {
  regions: string[];
  /** A fresh folder for configs, data and logs; removed by {@link BenchCluster.stop}. */
  workDir: string;
  /** Config fields for every region (merged into the defaults). */
  extra?: Record<string, unknown>;
  /** `limits` fields for every region, beside those the load generator needs. */
  limits?: Record<string, number>;
  /** Write a V8 CPU profile of each region process into this folder when it exits. */
  profileDir?: string | null;
  /** Sockets per region client. */
  maxSockets?: number;
  /**
   * Route links through the fault proxies (default). Without, regions dial
   * each other directly and no replication byte passes through this process.
   */
  proxies?: boolean;
}

const PROBE = join(dirname(fileURLToPath(import.meta.url)), 'probe.js');

/**
 * How long a fresh cluster takes writes before its steady state is
 * measured. A fresh region compiles its hot paths for about its first half
 * minute (V8 compiling on threads that share the cores): on two shared
 * cores, three regions at 100 PUTs/s each gave a write p99 of 24-67 ms
 * over their first 10 s, 12-17 ms over the next 10 and 7-10 ms from 30 s
 * on (one-off, four runs).
 */
export const WARM_UP_MS = 30_000;

/** Clusters started and not yet stopped, so a crashed run leaves no region process behind. */
const running = new Set<BenchCluster>();

/** SIGKILLs every region process of every cluster not stopped; synchronous, for exit handlers. */
export function killAllRegions(): void {
  for (const bench of running) {
    for (const r of bench.cluster.regions.values()) r.proc?.kill('SIGKILL');
  }
  running.clear();
}

export class BenchCluster {
  readonly clients = new Map<string, HttpClient>();
  /** Separate socket pools for reads that wait (`meridian-after`), so they never queue behind writes. */
  readonly observers = new Map<string, HttpClient>();

  private constructor(
    readonly cluster: LocalCluster,
    private readonly o: BenchClusterOptions,
    private readonly probeDir: string,
  ) {}

  static async start(o: BenchClusterOptions): Promise<BenchCluster> {
    const probeDir = join(o.workDir, 'probe');
    mkdirSync(probeDir, { recursive: true });
    if (o.profileDir) mkdirSync(o.profileDir, { recursive: true });
    const env = {
      ...process.env,
      NODE_OPTIONS: `${process.env['NODE_OPTIONS'] ?? ''} --import=${PROBE}`.trim(),
      MERIDIAN_BENCH_PROBE_DIR: probeDir,
      ...(o.profileDir ? { MERIDIAN_BENCH_PROFILE_DIR: o.profileDir } : {}),
    };
    const cluster = new LocalCluster({
      regions: o.proxies === false ? await directSpecs(o.regions) : o.regions.map((region) => ({ region })),
      baseDir: o.workDir,
      cluster: 'meridian-bench',
      // The load generator is one caller keeping hundreds of requests in flight.
      extra: { limits: { maxConcurrentRequests: 1024, maxConcurrentPerCaller: 1024, ...o.limits }, ...(o.extra ?? {}) },
      env,
    });
    const bench = new BenchCluster(cluster, o, probeDir);
    running.add(bench);
    try {
      await cluster.start();
    } catch (err) {
      await bench.stop();
      throw err;
    }
    for (const name of o.regions) {
      bench.clients.set(name, new HttpClient(cluster.url(name), o.maxSockets ?? 128));
      bench.observers.set(name, new HttpClient(cluster.url(name), 256));
    }
    return bench;
  }

  get names(): string[] {
    return this.o.regions;
  }

  client(name: string): HttpClient {
    const c = this.clients.get(name);
    if (!c) throw new Error(`no client for region ${name}`);
    return c;
  }

  observer(name: string): HttpClient {
    const c = this.observers.get(name);
    if (!c) throw new Error(`no observer client for region ${name}`);
    return c;
  }

  pid(name: string): number {
    const pid = this.cluster.region(name).proc?.pid;
    if (pid === undefined) throw new Error(`region ${name} is not running`);
    return pid;
  }

  sync(name: string): Promise<SyncBody> {
    return this.client(name).json<SyncBody>('/v1/sync');
  }

  /** The region's transaction counters (see probe.ts), or null when the probe did not answer. */
  async probe(name: string): Promise<ProbeCounters | null> {
    const pid = this.pid(name);
    const file = join(this.probeDir, `probe-${pid}.json`);
    const before = readProbe(file)?.seq ?? 0;
    process.kill(pid, 'SIGUSR2');
    for (let i = 0; i < 100; i++) {
      const now = readProbe(file);
      if (now && now.seq > before) return now;
      await sleep(10);
    }
    return null;
  }

  /**
   * Polls every region until all report the same digest, no pending documents
   * and nothing unacknowledged to any peer. Returns the milliseconds waited,
   * or null on timeout.
   */
  async waitConverged(timeoutMs: number, everyMs = 50): Promise<number | null> {
    const start = performance.now();
    while (performance.now() - start < timeoutMs) {
      // A region that is starting or restarting may refuse a poll; that is "not yet".
      if (await this.converged().catch(() => false)) return performance.now() - start;
      await sleep(everyMs);
    }
    return null;
  }

  async converged(): Promise<boolean> {
    const all = await Promise.all(this.names.map((n) => this.sync(n)));
    const digests = new Set(all.map((s) => s.digest));
    return digests.size === 1 && all.every((s) => s.pendingDocs === 0 && s.peers.every((p) => p.outbound.pendingUpdates === 0));
  }

  /** Stops every region cleanly (so profiles are written), closes clients, removes the work folder. */
  async stop(): Promise<void> {
    for (const c of [...this.clients.values(), ...this.observers.values()]) c.close();
    running.delete(this);
    try {
      await this.cluster.stop(false);
    } finally {
      rmSync(this.o.workDir, { recursive: true, force: true });
    }
  }
}

/** Fixed ports, and peers that point at each other's ports instead of at proxies. */
async function directSpecs(regions: string[]): Promise<RegionSpec[]> {
  const ports = new Map<string, number>();
  for (const r of regions) ports.set(r, await freePort());
  return regions.map((region) => ({
    region,
    port: ports.get(region)!,
    extra: { peers: regions.filter((p) => p !== region).map((p) => ({ region: p, url: `http://127.0.0.1:${ports.get(p)!}` })) },
  }));
}

function readProbe(file: string): ProbeCounters | null {
  if (!existsSync(file)) return null;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as ProbeCounters;
  } catch (err) {
    // Caught mid-write: the next poll reads the whole file.
    if (err instanceof SyntaxError) return null;
    throw err;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Differences of two probe readings: batch size, commit time and loop/CPU shares. */
export function probeDelta(a: ProbeCounters | null, b: ProbeCounters | null): ProbeDelta | null {
  if (!a || !b) return null;
  const commits = b.commits - a.commits;
  const entries = b.entries - a.entries;
  const wallMs = b.uptimeMs - a.uptimeMs;
  const r = (x: number): number => Math.round(x * 1000) / 1000;
  return {
    commits,
    entries,
    emptyCommits: b.emptyCommits - a.emptyCommits,
    meanBatch: commits > 0 ? r(entries / commits) : 0,
    commitMsMean: commits > 0 ? r((b.commitMs - a.commitMs) / commits) : 0,
    commitShare: wallMs > 0 ? r((b.commitMs - a.commitMs) / wallMs) : 0,
    otherTx: b.otherTx - a.otherTx,
    otherTxShare: wallMs > 0 ? r((b.otherMs - a.otherMs) / wallMs) : 0,
    slowTx: b.slowTx - a.slowTx,
    loopDelayP99Ms: r(b.loopDelayP99Ms),
    loopDelayMaxMs: r(b.loopDelayMaxMs),
    loopBusy: wallMs > 0 ? r((b.loopActiveMs - a.loopActiveMs) / wallMs) : 0,
    cpu: wallMs > 0 ? r((b.cpuMs - a.cpuMs) / wallMs) : 0,
  };
}

export interface ProbeDelta {
  commits: number;
  entries: number;
  /** Commits that stored no log entry. */
  emptyCommits: number;
  /** Log entries per group commit. */
  meanBatch: number;
  /** Mean duration of one group commit's SQLite transaction (fsync included), ms. */
  commitMsMean: number;
  /** Share of wall time spent inside group commits. */
  commitShare: number;
  /** Snapshot, version and ack transactions, and their share of wall time. */
  otherTx: number;
  otherTxShare: number;
  /** Transactions over 10 ms. */
  slowTx: number;
  /** Event loop delay between the two readings (the second resets it), ms. */
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
  /** Event loop utilisation (0-1) and CPU use (1 = one core). */
  loopBusy: number;
  cpu: number;
}
