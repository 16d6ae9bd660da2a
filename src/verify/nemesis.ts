/**
 * Runs a fault schedule against a cluster (local processes or a compose
 * stack): sets and heals link faults, kills, pauses and wipes regions, and keeps track of when each
 * region's process could serve and of any process that died on its own.
 */
import type { Fault } from '../faults/proxy.js';
import type { SyncStatus } from '../contract.js';
import type { VerifyCluster } from './target.js';
import type { History } from './history.js';
import { resourcesOf, type PlannedFault } from './schedule.js';
import { request, sleep } from './workload.js';

export interface NemesisOptions {
  cluster: VerifyCluster;
  schedule: readonly PlannedFault[];
  history: History;
  /** Milliseconds since the workload started. */
  clock: () => number;
  /** Holds a region's clients until the returned function is called; resolves once none is mid-request. */
  holdClients: (region: string) => Promise<() => void>;
  log: (line: string) => void;
  /** How long a wipe waits for the region to hand every local write to its peers. */
  drainTimeoutMs?: number;
}

/** A process that exited without the schedule asking for it. */
export interface Crash {
  region: string;
  atMs: number;
  code: number | null;
  signal: string | null;
}

/** An interval during which a region's process could not serve (killed, paused, being wiped). */
export interface DownInterval {
  fromMs: number;
  toMs: number | null;
}

export class Nemesis {
  readonly active = new Map<number, PlannedFault>();
  readonly down = new Map<string, DownInterval[]>();
  readonly crashes: Crash[] = [];
  /** Faults that could not be applied or healed. */
  readonly errors: string[] = [];
  /** Faults deliberately left out (a wipe whose region could not drain). */
  readonly skipped: string[] = [];
  private readonly expectedExit = new Set<string>();
  private readonly aborted: Promise<void>;
  private abort: () => void = () => undefined;
  private stopping = false;

  constructor(private readonly o: NemesisOptions) {
    this.aborted = new Promise((resolve) => (this.abort = resolve));
    for (const name of o.cluster.regions.keys()) {
      this.down.set(name, []);
      this.watch(name);
    }
  }

  /** Runs every fault at its time; resolves once all have ended (or were skipped after {@link stop}). */
  async run(): Promise<void> {
    const regions = [...this.o.cluster.regions.keys()];
    const done = new Map<number, Promise<void>>();
    for (const f of this.o.schedule) {
      const needs = new Set(resourcesOf(f, regions));
      // A fault waits for earlier faults on the same region or link, in case one of them overran.
      const before = this.o.schedule.filter((g) => g.id < f.id && resourcesOf(g, regions).some((r) => needs.has(r)));
      const deps = before.map((g) => done.get(g.id));
      done.set(f.id, Promise.all(deps).then(() => this.runFault(f)));
    }
    await Promise.all(done.values());
  }

  /** Ends the schedule early: faults not yet started are skipped, active ones heal now. */
  stop(): void {
    this.stopping = true;
    this.abort();
  }

  /** Heals every link, resumes paused and starts stopped regions. Call after {@link run} resolved. */
  async healAll(): Promise<void> {
    await this.o.cluster.heal();
    for (const r of this.o.cluster.regions.values()) {
      if (r.paused) await this.o.cluster.resume(r.name);
      if (!r.proc) await this.startRegion(r.name);
      else this.markUp(r.name);
    }
  }

  /** Marks every exit from now on as expected (the run is shutting the cluster down). */
  expectExits(): void {
    for (const name of this.o.cluster.regions.keys()) this.expectedExit.add(name);
  }

  /** Labels of the faults active now. */
  activeLabels(): string[] {
    return [...this.active.values()].map((f) => f.label);
  }

  /** Whether the region's process was serving during the whole of [fromMs, toMs]. */
  upDuring(region: string, fromMs: number, toMs: number): boolean {
    return (this.down.get(region) ?? []).every((d) => d.fromMs > toMs || (d.toMs !== null && d.toMs < fromMs));
  }

  private async runFault(f: PlannedFault): Promise<void> {
    await this.until(f.startMs);
    if (this.stopping) return;
    this.active.set(f.id, f);
    this.o.history.fault(f.id, 'start', f.label);
    this.o.log(`${stamp(this.o.clock())}  + ${f.label}`);
    try {
      await this.apply(f);
    } catch (err) {
      this.note(f, `could not apply: ${messageOf(err)}`);
    }
    await this.until(f.endMs);
    try {
      await this.heal(f);
    } catch (err) {
      this.note(f, `could not heal: ${messageOf(err)}`);
    }
    this.active.delete(f.id);
    this.o.history.fault(f.id, 'end', f.label);
    this.o.log(`${stamp(this.o.clock())}  - ${f.label}`);
  }

  private async apply(f: PlannedFault): Promise<void> {
    const { cluster } = this.o;
    const region = f.region ?? '';
    switch (f.kind) {
      case 'kill':
        this.markDown(region);
        this.expectedExit.add(region);
        await cluster.kill(region);
        return;
      case 'pause':
        this.markDown(region);
        await cluster.pause(region);
        return;
      case 'wipe':
        await this.wipe(f, region);
        return;
      case 'flap':
        await this.flap(f);
        return;
      default:
        if (f.fault) await this.setLinks(f, f.fault);
    }
  }

  private async heal(f: PlannedFault): Promise<void> {
    const region = f.region ?? '';
    if (f.kind === 'kill') await this.startRegion(region);
    else if (f.kind === 'pause') {
      await this.o.cluster.resume(region);
      this.markUp(region);
    } else if (f.fault) await this.setLinks(f, { kind: 'none' });
  }

  private async setLinks(f: PlannedFault, fault: Fault): Promise<void> {
    if (f.link) await this.o.cluster.setFault(fault, f.link[0], f.link[1]);
    else if (f.region) await this.o.cluster.setFault(fault, f.region);
  }

  /** Down and up at the planned offsets; the link ends up. */
  private async flap(f: PlannedFault): Promise<void> {
    let down = false;
    for (const offset of f.toggles ?? []) {
      await this.until(f.startMs + offset);
      if (this.stopping) break;
      down = !down;
      await this.setLinks(f, down ? { kind: 'down' } : { kind: 'none' });
    }
    await this.setLinks(f, { kind: 'none' });
  }

  /**
   * Wipes a region's data directory. Its clients pause first and its peers
   * must have every local write, or the wipe would delete acknowledged writes
   * no other region holds; when they cannot get them in time, the wipe is skipped.
   */
  private async wipe(f: PlannedFault, region: string): Promise<void> {
    const release = await this.o.holdClients(region);
    try {
      if (!(await this.drained(region))) {
        this.note(f, 'skipped: the region could not hand its writes to its peers in time', this.skipped);
        return;
      }
      this.markDown(region);
      this.expectedExit.add(region);
      await this.o.cluster.wipe(region);
      this.afterStart(region);
    } finally {
      release();
    }
  }

  private async drained(region: string): Promise<boolean> {
    const deadline = Date.now() + (this.o.drainTimeoutMs ?? 10_000);
    const url = `${this.o.cluster.url(region)}/v1/sync`;
    while (Date.now() < deadline && !this.stopping) {
      const reply = await request(url, 'GET', undefined, 1000);
      const body = 'error' in reply ? null : (reply.body as SyncStatus | null);
      // An error body (a region still starting) has no peers: not drained yet.
      if (Array.isArray(body?.peers) && body.peers.every((p) => p.outbound.pendingUpdates === 0)) return true;
      await sleep(100);
    }
    return false;
  }

  private async startRegion(region: string): Promise<void> {
    await this.o.cluster.startRegion(region);
    this.afterStart(region);
  }

  private afterStart(region: string): void {
    this.expectedExit.delete(region);
    this.watch(region);
    this.markUp(region);
  }

  /** Records an exit of the region's current process that nobody asked for. */
  private watch(region: string): void {
    const proc = this.o.cluster.region(region).proc;
    proc?.once('exit', (code, signal) => {
      if (this.expectedExit.has(region)) return;
      this.crashes.push({ region, atMs: this.o.clock(), code, signal });
      this.markDown(region);
      this.o.log(`${stamp(this.o.clock())}  ! ${region} exited on its own (code ${code}, signal ${signal})`);
    });
  }

  private markDown(region: string): void {
    const list = this.down.get(region);
    if (list && list.at(-1)?.toMs !== null) list.push({ fromMs: this.o.clock(), toMs: null });
  }

  private markUp(region: string): void {
    const last = this.down.get(region)?.at(-1);
    if (last && last.toMs === null) last.toMs = this.o.clock();
  }

  private note(f: PlannedFault, text: string, list = this.errors): void {
    list.push(`${f.label}: ${text}`);
    this.o.history.fault(f.id, 'note', f.label, text);
    this.o.log(`${stamp(this.o.clock())}  ! ${f.label}: ${text}`);
  }

  /** Sleeps until `atMs` on the run's clock, or until the schedule is stopped. */
  private async until(atMs: number): Promise<void> {
    const wait = atMs - this.o.clock();
    if (wait <= 0 || this.stopping) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.aborted, new Promise<void>((resolve) => (timer = setTimeout(resolve, wait)))]);
    clearTimeout(timer);
  }
}

/** `  12.3s`: a time on the run's clock for progress lines. */
export function stamp(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`.padStart(7);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
