/**
 * `meridian sim`: a local cluster with a fault proxy on every inter-region
 * link, driven from an interactive prompt or a small HTTP control endpoint
 * (`POST /command` with the command as the body; `GET /status`).
 */
import { createServer, type Server } from 'node:http';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { once } from 'node:events';
import { LocalCluster, type RegionSpec } from './cluster.js';
import { clusterStatus, parseSimCommand, runSimCommand, SIM_HELP } from './sim-commands.js';
import { lockDir, type DirLock } from '../lockfile.js';
import { asUsage, UsageError } from '../usage-error.js';

export interface SimOptions {
  /** Folder of region configs whose names and ports the simulated regions take. */
  regions: string;
  /** Folder for the simulation's data, configs and logs; locked while the simulation runs. */
  dataDir: string;
  /** Port of the HTTP control endpoint (0: any free port). */
  controlPort: number;
  /** When set, region i (from 1, in config order) listens on `portBase + i` instead of its config's port. */
  portBase?: number;
  /** Read commands from stdin (off when stdin is not a terminal and --no-prompt is given). */
  prompt: boolean;
}

/** Names and client ports of the region configs in a folder; a {@link UsageError} when they cannot be read. */
export function readRegionSpecs(dir: string): RegionSpec[] {
  const files = asUsage(`--regions ${dir}`, () => readdirSync(dir).filter((f) => f.endsWith('.json')).sort());
  if (files.length === 0) throw new UsageError(`--regions ${dir}: no region configs (*.json) in this folder`);
  const specs = files.map((f) => asUsage(join(dir, f), () => regionSpec(join(dir, f))));
  if (specs.length < 2) throw new UsageError(`--regions ${dir}: a simulation needs at least two regions, found ${specs.length}`);
  return specs;
}

function regionSpec(file: string): RegionSpec {
  const raw = JSON.parse(readFileSync(file, 'utf8')) as { region?: unknown; listen?: { port?: unknown } } | null;
  if (typeof raw?.region !== 'string') throw new Error('no region name');
  const port = typeof raw.listen?.port === 'number' ? raw.listen.port : undefined;
  return { region: raw.region, ...(port ? { port } : {}) };
}

/**
 * Runs the simulator until Ctrl-C. Options are checked and the data folder
 * locked before anything starts; should a region or the control endpoint
 * fail to start, whatever did start is stopped before the error is thrown.
 */
export async function runSim(options: SimOptions): Promise<void> {
  const base = options.portBase;
  const specs = readRegionSpecs(options.regions).map((s, i) => (base === undefined ? s : { ...s, port: base + i + 1 }));
  const names = specs.map((s) => s.region);
  const baseDir = resolve(options.dataDir);
  const lock = lockDir(baseDir, 'meridian sim');
  // Filled in once the control endpoint is bound, before the regions' configs are written.
  const regionExtra: Record<string, unknown> = {};
  const cluster = new LocalCluster({ regions: specs, baseDir, extra: regionExtra });
  const run = async (line: string): Promise<{ ok: boolean; text: string }> => {
    try {
      return { ok: true, text: await runSimCommand(cluster, parseSimCommand(line, names)) };
    } catch (err) {
      return { ok: false, text: err instanceof Error ? err.message : String(err) };
    }
  };
  let control: Server | null = null;
  let started = false;
  try {
    // Bound first, so a taken control port fails before any region starts; it answers 503 until they have.
    control = await startControl(options.controlPort, run, cluster, () => started);
    // The regions' dashboards send the simulator its commands through their own API (`POST /v1/sim/command`).
    regionExtra['ui'] = { enabled: true, simControl: `http://127.0.0.1:${portOf(control)}` };
    process.stdout.write(`starting ${names.length} regions with a fault proxy on every link...\n`);
    await cluster.start();
    started = true;
  } catch (err) {
    control?.close();
    await cluster.stop(true);
    lock.release();
    throw err;
  }
  for (const r of cluster.regions.values()) process.stdout.write(`  ${r.name.padEnd(10)} ${r.url}   (log: ${r.logPath})\n`);
  const controlPort = portOf(control);
  process.stdout.write(`control: curl -d 'partition ${names[0]}' http://127.0.0.1:${controlPort}/command\n`);
  process.stdout.write(`dashboard: ${cluster.url(names[0] ?? '')}/ui (at every region; it drives the simulator too)\n`);
  process.stdout.write(`type 'help' for commands, Ctrl-C to stop\n`);
  const stop = stopOnSignals(cluster, control, lock);
  if (options.prompt) readPrompt(run, stop);
}

function portOf(server: Server): number {
  const address = server.address();
  return typeof address === 'object' && address ? address.port : 0;
}

/** Ctrl-C or SIGTERM: stop the regions and proxies, free the folder, exit. */
function stopOnSignals(cluster: LocalCluster, control: Server, lock: DirLock): () => void {
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('\nstopping the simulated regions...\n');
    control.close();
    await cluster.stop();
    lock.release();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
  return () => void stop();
}

function readPrompt(run: (line: string) => Promise<{ ok: boolean; text: string }>, onClose: () => void): void {
  const rl = createInterface({ input: process.stdin, output: process.stdout, prompt: 'sim> ' });
  rl.prompt();
  rl.on('line', (line) => {
    rl.pause();
    void run(line).then(({ text }) => {
      process.stdout.write(`${text}\n`);
      rl.resume();
      rl.prompt();
    });
  });
  rl.on('close', onClose);
}

async function startControl(
  port: number,
  run: (line: string) => Promise<{ ok: boolean; text: string }>,
  cluster: LocalCluster,
  started: () => boolean,
): Promise<Server> {
  const server = createServer((req, res) => {
    if (!started()) {
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'unavailable', message: 'the simulated regions are still starting' }));
      return;
    }
    if (req.method === 'GET' && req.url === '/status') {
      void clusterStatus(cluster).then((s) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(s));
      });
      return;
    }
    if (req.method === 'GET' && req.url === '/help') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`${SIM_HELP}\n`);
      return;
    }
    if (req.method !== 'POST' || req.url !== '/command') {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'not_found', message: 'use POST /command, GET /status or GET /help' }));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= 4096) chunks.push(c);
    });
    req.on('end', () => {
      const line = Buffer.concat(chunks).toString('utf8');
      void run(line).then(({ ok, text }) => {
        res.writeHead(ok ? 200 : 400, { 'content-type': 'text/plain' });
        res.end(`${text}\n`);
      });
    });
  });
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  return server;
}
