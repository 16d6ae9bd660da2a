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

export interface SimOptions {
  /** Folder of region configs whose names and ports the simulated regions take. */
  regions: string;
  /** Folder for the simulation's data, configs and logs. */
  dataDir: string;
  /** Port of the HTTP control endpoint (0: any free port). */
  controlPort: number;
  /** Read commands from stdin (off when stdin is not a terminal and --no-prompt is given). */
  prompt: boolean;
}

/** Names and client ports of the region configs in a folder. */
export function readRegionSpecs(dir: string): RegionSpec[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => {
      const raw = JSON.parse(readFileSync(join(dir, f), 'utf8')) as { region?: unknown; listen?: { port?: unknown } };
      if (typeof raw.region !== 'string') throw new Error(`${f}: no region name`);
      const port = typeof raw.listen?.port === 'number' ? raw.listen.port : undefined;
      return { region: raw.region, ...(port ? { port } : {}) };
    });
}

export async function runSim(options: SimOptions): Promise<void> {
  const specs = readRegionSpecs(options.regions);
  const cluster = new LocalCluster({ regions: specs, baseDir: resolve(options.dataDir) });
  const names = specs.map((s) => s.region);
  process.stdout.write(`starting ${names.length} regions with a fault proxy on every link...\n`);
  await cluster.start();
  for (const r of cluster.regions.values()) process.stdout.write(`  ${r.name.padEnd(10)} ${r.url}   (log: ${r.logPath})\n`);

  const run = async (line: string): Promise<{ ok: boolean; text: string }> => {
    try {
      return { ok: true, text: await runSimCommand(cluster, parseSimCommand(line, names)) };
    } catch (err) {
      return { ok: false, text: err instanceof Error ? err.message : String(err) };
    }
  };
  const control = await startControl(options.controlPort, run, cluster);
  const address = control.address();
  const controlPort = typeof address === 'object' && address ? address.port : options.controlPort;
  process.stdout.write(`control: curl -d 'partition ${names[0]}' http://127.0.0.1:${controlPort}/command\n`);
  process.stdout.write(`type 'help' for commands, Ctrl-C to stop\n`);

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('\nstopping the simulated regions...\n');
    control.close();
    await cluster.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());

  if (!options.prompt) return;
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
  rl.on('close', () => void stop());
}

async function startControl(
  port: number,
  run: (line: string) => Promise<{ ok: boolean; text: string }>,
  cluster: LocalCluster,
): Promise<Server> {
  const server = createServer((req, res) => {
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
