/**
 * `meridian verify --target compose`: the verifier's regions are those of a
 * running docker-compose stack (`scripts/compose.sh up`), reached at their
 * published ports and broken with the README's toolbox (`scripts/compose.sh`):
 * SIGKILL, start, pause and wipe of a region's container, and link faults
 * through the stack's proxy services. The stack is not started or removed here.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { formatFault, type Fault } from '../faults/proxy.js';
import type { TargetProcess, TargetRegion, VerifyCluster } from './target.js';

export interface ComposeClusterOptions {
  /** The toolbox script; default `scripts/compose.sh` of this checkout. */
  script?: string;
  /** Environment of the compose commands (e.g. `COMPOSE_PROJECT_NAME`); default this process's. */
  env?: NodeJS.ProcessEnv;
  /** Deadline of one command; default 180 s (a start waits for the container's healthcheck). */
  timeoutMs?: number;
}

interface ComposeRegion extends TargetRegion {
  url: string;
  proc: TargetProcess | null;
  paused: boolean;
}

/**
 * A running container. Its own exits are not watched: a region that dies
 * unasked stops answering, which the availability and convergence checks report.
 */
const RUNNING: TargetProcess = { once: () => undefined };

/** `scripts/compose.sh` from src/verify (tests) or dist/src/verify (the CLI). */
function defaultScript(): string {
  const candidates = ['../../scripts/compose.sh', '../../../scripts/compose.sh'].map((p) => fileURLToPath(new URL(p, import.meta.url)));
  return candidates.find((p) => existsSync(p)) ?? (candidates[0] as string);
}

export class ComposeCluster implements VerifyCluster {
  readonly regions = new Map<string, ComposeRegion>();
  private readonly script: string;

  private constructor(private readonly o: ComposeClusterOptions) {
    this.script = o.script ?? defaultScript();
  }

  /** Finds the stack's regions and their published URLs; throws when the stack is not up. */
  static async connect(o: ComposeClusterOptions = {}): Promise<ComposeCluster> {
    const cluster = new ComposeCluster(o);
    const names = (await cluster.run('regions')).split('\n').filter(Boolean);
    if (names.length < 2) throw new Error(`the compose stack has ${names.length} regions; start it first: scripts/compose.sh up`);
    for (const name of names) {
      cluster.regions.set(name, { name, url: await cluster.run('url', name), proc: RUNNING, paused: false });
    }
    return cluster;
  }

  region(name: string): ComposeRegion {
    const r = this.regions.get(name);
    if (!r) throw new Error(`unknown region '${name}' (known: ${[...this.regions.keys()].join(', ')})`);
    return r;
  }

  url(name: string): string {
    return this.region(name).url;
  }

  async kill(name: string): Promise<void> {
    const r = this.region(name);
    await this.run('kill', name);
    r.proc = null;
    r.paused = false;
  }

  async startRegion(name: string): Promise<void> {
    await this.run('start', name);
    await this.serving(name);
  }

  async pause(name: string): Promise<void> {
    await this.run('pause', name);
    this.region(name).paused = true;
  }

  async resume(name: string): Promise<void> {
    await this.run('unpause', name);
    this.region(name).paused = false;
  }

  async wipe(name: string): Promise<void> {
    this.region(name).proc = null;
    await this.run('wipe', name);
    await this.serving(name);
  }

  async setFault(fault: Fault, a?: string, b?: string): Promise<void> {
    const text = formatFault(fault);
    await Promise.all(this.linksOf(a, b).map(([x, y]) => this.run('link', x, y, text)));
  }

  async heal(): Promise<void> {
    await this.setFault({ kind: 'none' });
  }

  /** Every pair of regions has one link (one proxy service); those touching `a`, or the one a-b. */
  private linksOf(a?: string, b?: string): [string, string][] {
    for (const name of [a, b]) if (name !== undefined) this.region(name);
    const names = [...this.regions.keys()];
    const pairs = names.flatMap((x, i) => names.slice(i + 1).map((y): [string, string] => [x, y]));
    return pairs.filter(([x, y]) => (a === undefined || x === a || y === a) && (b === undefined || x === b || y === b));
  }

  /** Waits for the healthcheck, then reads the URL again: a restarted container may get another free host port. */
  private async serving(name: string): Promise<void> {
    await this.run('wait', name);
    const r = this.region(name);
    r.url = await this.run('url', name);
    r.proc = RUNNING;
    r.paused = false;
  }

  private run(...args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      const options = { env: this.o.env ?? process.env, timeout: this.o.timeoutMs ?? 180_000, encoding: 'utf8' as const };
      execFile('bash', [this.script, ...args], options, (err, stdout, stderr) => {
        if (err) reject(new Error(`scripts/compose.sh ${args.join(' ')}: ${stderr.trim() || err.message}`, { cause: err }));
        else resolve(stdout.trim());
      });
    });
  }
}
