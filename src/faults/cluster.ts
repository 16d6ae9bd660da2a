/**
 * A local multi-region cluster of real region processes on loopback, with a
 * fault proxy on every inter-region link. The outage simulator, the
 * convergence verifier and the tests all drive regions through this class:
 * SIGKILL, restart, SIGSTOP/SIGCONT, wiping a data directory, and cutting,
 * black-holing or slowing links.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, readFileSync, rmSync, writeFileSync, type WriteStream } from 'node:fs';
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { createServer } from 'node:net';
import { join, resolve, dirname, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';
import { startFaultProxy, type Fault, type FaultProxy } from './proxy.js';
import { regionNodeFlags } from '../node-flags.js';

/** A region's config file contents, before the cluster points its peers at proxies. */
export interface RegionSpec {
  region: string;
  port?: number;
  /** Extra config fields merged into the generated config (e.g. replication timings). */
  extra?: Record<string, unknown>;
}

export interface ClusterOptions {
  regions: RegionSpec[];
  /** Folder for configs, data directories and logs. */
  baseDir: string;
  secret?: string;
  cluster?: string;
  /** Extra config fields for every region. */
  extra?: Record<string, unknown>;
  /** Source of randomness for the proxies' jitter. */
  random?: () => number;
  /** Environment for region processes. */
  env?: NodeJS.ProcessEnv;
  /** Certificate files (PEM paths) every region serves and trusts: https and wss links. */
  tls?: { ca: string; cert: string; key: string };
}

export interface RegionProcess {
  name: string;
  port: number;
  url: string;
  dataDir: string;
  configPath: string;
  logPath: string;
  proc: ChildProcess | null;
  paused: boolean;
  /** How many times the process was started. */
  starts: number;
}

/** The compiled CLI, also when this module runs from source (tests). */
const CLI = (() => {
  const here = dirname(fileURLToPath(import.meta.url));
  return here.includes(`${sep}dist${sep}`) ? resolve(here, '..', 'cli.js') : resolve(here, '..', '..', 'dist', 'src', 'cli.js');
})();

/** The link key of the pair `a`-`b`: the region whose name sorts first dials the other. */
export function linkKey(a: string, b: string): string {
  return a < b ? `${a}->${b}` : `${b}->${a}`;
}

export class LocalCluster {
  readonly regions = new Map<string, RegionProcess>();
  readonly links = new Map<string, FaultProxy>();
  private readonly logs = new Map<string, WriteStream>();
  /**
   * Random unless given: two clusters on one host never link up, even when a
   * region of one binds a port that the other's proxies still dial.
   */
  readonly secret: string;

  constructor(private readonly o: ClusterOptions) {
    this.secret = o.secret ?? randomBytes(16).toString('hex');
  }

  /** The CA that region certificates are signed with, for health checks over https. */
  private caCert(): Buffer | undefined {
    return this.o.tls ? readFileSync(this.o.tls.ca) : undefined;
  }

  private get scheme(): string {
    return this.o.tls ? 'https' : 'http';
  }

  /** Starts the proxies and every region, and waits until each takes writes. */
  async start(): Promise<void> {
    mkdirSync(this.o.baseDir, { recursive: true });
    for (const spec of this.o.regions) {
      const port = spec.port ?? (await freePort());
      const dataDir = join(this.o.baseDir, 'data', spec.region);
      this.regions.set(spec.region, {
        name: spec.region, port, url: `${this.scheme}://127.0.0.1:${port}`, dataDir,
        configPath: join(this.o.baseDir, `${spec.region}.json`),
        logPath: join(this.o.baseDir, 'logs', `${spec.region}.log`),
        proc: null, paused: false, starts: 0,
      });
    }
    for (const a of this.regions.values()) {
      for (const b of this.regions.values()) {
        if (a.name >= b.name) continue;
        const proxy = await startFaultProxy({
          upstreamHost: '127.0.0.1', upstreamPort: b.port, name: linkKey(a.name, b.name),
          ...(this.o.random ? { random: this.o.random } : {}),
        });
        this.links.set(linkKey(a.name, b.name), proxy);
      }
    }
    for (const spec of this.o.regions) this.writeConfig(spec);
    try {
      await Promise.all([...this.regions.keys()].map((name) => this.startRegion(name)));
      // Fresh regions hold writes until they have heard from a peer; the
      // cluster is ready once every region takes writes.
      await Promise.all([...this.regions.keys()].map((name) => this.waitReady(name)));
    } catch (err) {
      // One region failed (its port taken, say): the others must not live on, orphaned.
      await this.stop(true);
      throw err;
    }
  }

  /** Waits until the region's `/readyz` answers 200 (it takes writes). */
  async waitReady(name: string, timeoutMs = 20_000): Promise<void> {
    await waitForStatus(this.region(name), '/readyz', timeoutMs, this.caCert());
  }

  region(name: string): RegionProcess {
    const r = this.regions.get(name);
    if (!r) throw new Error(`unknown region '${name}' (known: ${[...this.regions.keys()].join(', ')})`);
    return r;
  }

  url(name: string): string {
    return this.region(name).url;
  }

  /**
   * Starts a region process (again) and waits until it says it serves, then
   * for /healthz. Only the process's own word counts: while a region is down,
   * any process on the host may bind its port and answer /healthz.
   */
  async startRegion(name: string, timeoutMs = 20_000): Promise<void> {
    const r = this.region(name);
    if (r.proc) return;
    if (r.starts > 0 && !(await canListen(r.port))) await this.movePort(r);
    mkdirSync(dirname(r.logPath), { recursive: true });
    let log = this.logs.get(name);
    if (!log) this.logs.set(name, (log = createWriteStream(r.logPath, { flags: 'a' })));
    // stdin is a pipe from this process: when it dies, even by SIGKILL, the region sees it close and stops.
    const proc = spawn(process.execPath, [...regionNodeFlags(this.o.regions.length), CLI, 'start', '--config', r.configPath, '--stop-with-parent'], {
      stdio: ['pipe', 'pipe', 'pipe', 'ipc'],
      env: this.o.env ?? process.env,
    });
    proc.stdout?.pipe(log, { end: false });
    proc.stderr?.pipe(log, { end: false });
    r.proc = proc;
    r.paused = false;
    r.starts++;
    proc.once('exit', () => {
      if (r.proc === proc) r.proc = null;
    });
    await waitForServing(r, proc, timeoutMs);
    await waitForStatus(r, '/healthz', timeoutMs, this.caCert());
  }

  /**
   * Another process took the port of a region that is down: the region moves
   * to a free one. Its peers reach it through the links' proxies, which follow;
   * a port the region's spec fixed stays, and its start fails clearly.
   */
  private async movePort(r: RegionProcess): Promise<void> {
    if (this.o.regions.find((s) => s.region === r.name)?.port !== undefined) return;
    r.port = await freePort();
    r.url = `${this.scheme}://127.0.0.1:${r.port}`;
    for (const [key, proxy] of this.links) if (key.endsWith(`->${r.name}`)) proxy.retarget(r.port);
    for (const spec of this.o.regions) this.writeConfig(spec);
  }

  /** SIGKILL: the process dies at once, mid-write if it was writing. */
  async kill(name: string): Promise<void> {
    const r = this.region(name);
    const proc = r.proc;
    if (!proc) return;
    if (r.paused) proc.kill('SIGCONT');
    const exited = once(proc, 'exit');
    proc.kill('SIGKILL');
    await exited;
    r.proc = null;
    r.paused = false;
  }

  /** SIGTERM and wait for a clean exit. */
  async stopRegion(name: string): Promise<void> {
    const r = this.region(name);
    const proc = r.proc;
    if (!proc) return;
    if (r.paused) this.resume(name);
    const exited = once(proc, 'exit');
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
    r.proc = null;
  }

  async restart(name: string): Promise<void> {
    await this.kill(name);
    await this.startRegion(name);
  }

  /** SIGSTOP: the process keeps its sockets but answers nothing. */
  pause(name: string): void {
    const r = this.region(name);
    if (!r.proc || r.paused) return;
    r.proc.kill('SIGSTOP');
    r.paused = true;
  }

  resume(name: string): void {
    const r = this.region(name);
    if (!r.proc || !r.paused) return;
    r.proc.kill('SIGCONT');
    r.paused = false;
  }

  /** Kills a region, deletes its data directory and starts it again empty. */
  async wipe(name: string): Promise<void> {
    const r = this.region(name);
    await this.kill(name);
    rmSync(r.dataDir, { recursive: true, force: true });
    await this.startRegion(name);
  }

  /** The proxies on links touching `name` (all links when omitted), or the one link a-b. */
  linksOf(a?: string, b?: string): FaultProxy[] {
    if (a && b) {
      const link = this.links.get(linkKey(a, b));
      if (!link) throw new Error(`no link between '${a}' and '${b}'`);
      return [link];
    }
    if (a) {
      this.region(a);
      return [...this.links.entries()].filter(([k]) => k.split('->').includes(a)).map(([, p]) => p);
    }
    return [...this.links.values()];
  }

  setFault(fault: Fault, a?: string, b?: string): void {
    for (const link of this.linksOf(a, b)) link.setFault(fault);
  }

  /** Cuts every link of one region: it keeps serving its clients, alone. */
  isolate(name: string): void {
    this.setFault({ kind: 'down' }, name);
  }

  heal(): void {
    this.setFault({ kind: 'none' });
  }

  /** Stops every region (SIGKILL if `hard`) and every proxy. */
  async stop(hard = false): Promise<void> {
    await Promise.all([...this.regions.keys()].map((n) => (hard ? this.kill(n) : this.stopRegion(n))));
    await Promise.all([...this.links.values()].map((p) => p.close()));
    for (const log of this.logs.values()) log.end();
  }

  private writeConfig(spec: RegionSpec): void {
    const me = this.region(spec.region);
    const peers = [...this.regions.values()]
      .filter((r) => r.name !== me.name)
      .map((r) => {
        // The region that dials goes through the link's proxy; the other never dials.
        const proxy = me.name < r.name ? this.links.get(linkKey(me.name, r.name)) : undefined;
        const url = proxy ? `${this.scheme}://127.0.0.1:${proxy.address().port}` : r.url;
        return { region: r.name, url };
      });
    const config = {
      region: me.name,
      cluster: this.o.cluster ?? 'meridian-local',
      listen: { host: '127.0.0.1', port: me.port },
      dataDir: me.dataDir,
      peers,
      secret: this.secret,
      ...(this.o.tls ? { tls: this.o.tls } : {}),
      ...deepMerge(this.o.extra ?? {}, spec.extra ?? {}),
    };
    writeFileSync(me.configPath, JSON.stringify(config, null, 2));
  }
}

/** Ports this process handed out already: a cluster takes several before it binds any. */
const handedOut = new Set<number>();

/**
 * A port that was free a moment ago, taken at random below Linux's ephemeral
 * range (32768 and up). A port the kernel picks for `listen(0)` comes from that
 * range, and so does the local port of every outgoing connection: between the
 * moment it is handed out and the moment a region binds it, any connection on
 * the host could take it.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (handedOut.has(port) || !(await canListen(port))) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error('no free port found between 20000 and 32000 in 200 attempts');
}

async function canListen(port: number): Promise<boolean> {
  const server = createServer();
  const listening = once(server, 'listening').then(() => true, () => false);
  server.listen(port, '127.0.0.1');
  if (!(await listening)) return false;
  server.close();
  await once(server, 'close');
  return true;
}

/** Waits for the region process to say, over its IPC channel, that it serves (see `announceServing` in the CLI). */
async function waitForServing(r: RegionProcess, proc: ChildProcess, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const onMessage = new Promise<void>((resolve) => proc.once('message', () => resolve()));
  const onExit = new Promise<never>((_, reject) =>
    proc.once('exit', (code, signal) => reject(new Error(`region ${r.name} exited during start (${signal ?? `code ${code}`}); see ${r.logPath}`))),
  );
  const onTimeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`region ${r.name} did not start serving within ${timeoutMs} ms; see ${r.logPath}`)), timeoutMs);
  });
  onExit.catch(() => undefined);
  try {
    await Promise.race([onMessage, onExit, onTimeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits until `path` (`/healthz` or `/readyz`) answers 200. */
async function waitForStatus(r: RegionProcess, path: string, timeoutMs: number, ca?: Buffer): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!r.proc) throw new Error(`region ${r.name} exited during start; see ${r.logPath}`);
    if ((await healthStatus(`${r.url}${path}`, ca)) === 200) return;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`region ${r.name}: ${path} did not answer 200 within ${timeoutMs} ms; see ${r.logPath}`);
}

/** The status of GET url, or 0 when nothing answers (not listening yet). */
function healthStatus(url: string, ca?: Buffer): Promise<number> {
  const get = url.startsWith('https:') ? httpsGet : httpGet;
  return new Promise((resolve) => {
    const req = get(url, { timeout: 1000, ...(ca ? { ca } : {}) }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] = isPlain(prev) && isPlain(v) ? deepMerge(prev, v) : v;
  }
  return out;
}

function isPlain(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
