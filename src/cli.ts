#!/usr/bin/env node
/**
 * The `meridian` command. Each subcommand loads its module only when it runs,
 * so `--help` and config errors stay fast and independent of the rest.
 */
// First: Yjs must find its random draws pooled (see the module).
import './crdt/entropy.js';
import type { VerifyCommandOptions } from './verify/run.js';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import type { Logger } from 'pino';
import { ConfigError, type RegionConfig } from './config.js';
import { loadConfigWithEnv } from './config-env.js';
import { createLogger } from './logger.js';
import { LockHeldError } from './lockfile.js';
import { parsePort, parsePortBase, UsageError } from './usage-error.js';

/** A started region, as the composition root returns it. */
interface RunningRegion {
  url: string;
  /** Stops taking requests, finishes in-flight writes and closes the database. */
  close(): Promise<void>;
}

/** What `start` needs from the composition root (src/region.ts). */
interface RegionModule {
  startRegion(config: RegionConfig, opts: { logger: Logger; onFatal?: (err: Error) => void }): Promise<RunningRegion>;
}

const EXIT_STARTUP_FAILED = 1;
const EXIT_FORCED = 1;
const EXIT_BAD_CONFIG = 2;
/** The writer thread ended: a supervisor starts the region again. */
const EXIT_WRITER_LOST = 3;
const DEFAULT_SIM_CONTROL_PORT = 7100;

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** The package folder: the nearest ancestor of this file holding package.json (src/ or dist/src/ below it). */
export function packageRoot(): string {
  for (let dir = HERE; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) return path.resolve(HERE, '..', '..');
  }
}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version?: string };
  return pkg.version ?? '0.0.0';
}

/** The CLI's commands; parse with `parseAsync`. */
export function buildProgram(): Command {
  const program = new Command('meridian')
    .description('Multi-region active-active document store: one node per region, replicating to its peers.')
    .version(packageVersion());

  program
    .command('start')
    .description('run one region node')
    .option('-c, --config <file>', 'region config file (JSON); default $MERIDIAN_CONFIG. MERIDIAN_* variables override it (README, Configuration)')
    .option('--stop-with-parent', 'stop when stdin closes (the parent process exited or died); set by dev and sim')
    .action(async (opts: { config?: string; stopWithParent?: boolean }) => start(opts.config, opts.stopWithParent === true));

  program
    .command('dev')
    .description('run every region config of a folder on this machine, logs in one terminal')
    .option('--regions <dir>', 'folder of region configs (*.json)', path.join(packageRoot(), 'regions'))
    .option('--no-restart', 'leave a region that crashes or is killed stopped (default: start it again after 1 s, backing off to 30 s)')
    .action(async (opts: { regions: string; restart: boolean }) => dev(opts.regions, opts.restart));

  program
    .command('sim')
    .description('start a local cluster with a fault proxy on every link, and simulate outages from a prompt')
    .option('--regions <dir>', 'folder of region configs whose names and ports the simulation uses', path.join(packageRoot(), 'regions'))
    .option('--data <dir>', 'folder for the simulation\'s data, configs and logs', path.join(packageRoot(), 'data', 'sim'))
    .option('--control-port <port>', 'port of the HTTP control endpoint (default: the port base, else 7100)')
    .option('--port-base <port>', 'control endpoint on this port, region i on port base + i (instead of the configs\' ports)')
    .option('--no-prompt', 'take commands only from the control endpoint')
    .action(async (opts: SimCommandOptions) => sim(opts));

  program
    .command('proxy')
    .description('run one fault proxy (a TCP link whose faults change at run time) as its own process')
    .requiredOption('--listen <addr>', 'host:port or port to listen on')
    .requiredOption('--upstream <addr>', 'host:port the link leads to')
    .option('--control-port <port>', 'port of the HTTP control endpoint (POST /fault, GET /stats)', '0')
    .option('--fault <fault>', 'initial fault, e.g. "latency 50ms ±10ms"')
    .action(async (opts: { listen: string; upstream: string; controlPort: string; fault?: string }) => {
      const controlPort = parsePort(opts.controlPort, '--control-port', true);
      const { runStandaloneProxy } = await import('./faults/proxy-standalone.js');
      await runStandaloneProxy({ ...opts, controlPort });
    });

  program
    .command('verify')
    .description('randomized, seeded fault-injection run with a history checker (exit 1 on any violation)')
    .option('--seed <n>', 'seed of every random choice (default: random, printed)')
    .option('--duration <d>', 'length of the faulty workload, e.g. 30s or 10m', '30s')
    .option('--regions <n>', 'number of regions', '3')
    .option('--clients <n>', 'clients per region', '3')
    .option('--report <dir>', 'report folder (default verify-report/<timestamp>-<seed>)')
    .option('--faults <list>', 'comma-separated fault kinds: isolate,bridge,oneway,blackhole,stall,latency,slicer,bandwidth,wan,kill,pause,wipe,flap (or all, none)')
    .option('--quick', 'a short fixed run (seed 1 unless given) with isolate, kill and blackhole')
    .option('--port-base <port>', 'region i listens on port base + i (default: free ports)')
    .option('--target <where>', 'local (regions of its own, default) or compose (the running stack of scripts/compose.sh up; its regions, not --regions)')
    .action(async (opts: VerifyCommandOptions) => (await import('./verify/run.js')).verifyCommand(opts));

  return program;
}

/** Loads the config, or prints why it cannot and sets exit code 2. */
function configOrExit(file: string | undefined): RegionConfig | null {
  try {
    return loadConfigWithEnv(file, process.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`${err.message}\n`);
    process.exitCode = EXIT_BAD_CONFIG;
    return null;
  }
}

interface SimCommandOptions {
  regions: string;
  data: string;
  controlPort?: string;
  portBase?: string;
  prompt: boolean;
}

/** Checks every option (ports, the regions folder) before the simulator starts anything. */
async function sim(opts: SimCommandOptions): Promise<void> {
  const { readRegionSpecs, runSim } = await import('./faults/sim.js');
  const count = readRegionSpecs(opts.regions).length;
  const portBase = opts.portBase === undefined ? undefined : parsePortBase(opts.portBase, '--port-base', count);
  const controlPort = opts.controlPort === undefined ? (portBase ?? DEFAULT_SIM_CONTROL_PORT) : parsePort(opts.controlPort, '--control-port', true);
  await runSim({ regions: opts.regions, dataDir: opts.data, controlPort, prompt: opts.prompt, ...(portBase === undefined ? {} : { portBase }) });
}

async function start(file: string | undefined, stopWithParent: boolean): Promise<void> {
  const config = configOrExit(file);
  if (!config) return;
  const logger = createLogger({ level: config.log.level, region: config.region });
  let region: RunningRegion;
  try {
    const { startRegion }: RegionModule = await import('./region.js');
    // Started again by its supervisor (dev, compose, a service manager), it reopens the database and recovers.
    region = await startRegion(config, { logger, onFatal: (err) => exitLost(config.region, err) });
  } catch (err) {
    const refused = err instanceof LockHeldError;
    if (!refused) logger.fatal({ err }, 'failed to start');
    process.stderr.write(`meridian: region ${config.region} failed to start: ${messageOf(err)}\n`);
    // Whatever did start (database, timers) must not keep the process alive.
    process.exit(refused ? EXIT_BAD_CONFIG : EXIT_STARTUP_FAILED);
  }
  const stop = closeOnSignals(region, logger);
  if (stopWithParent) {
    stopWhenStdinCloses(() => stop('parent exited'));
    announceServing(region.url);
  }
}

/**
 * Tells a parent of ours (a local cluster: `--stop-with-parent`) that spawned
 * this region with an IPC channel that this process serves: while a region is
 * down, another process on the host may take its port and answer its
 * /healthz. The channel is closed then; nothing else goes over it. A process
 * manager's own channel (pm2 forks with one) is left alone.
 */
function announceServing(url: string): void {
  if (!process.send || !process.connected) return;
  process.send({ serving: url, pid: process.pid }, () => {
    if (process.connected) process.disconnect();
  });
}

function exitLost(region: string, err: Error): never {
  process.stderr.write(`meridian: region ${region} lost its writer thread (${err.message}); exiting so that it is started again\n`);
  process.exit(EXIT_WRITER_LOST);
}

/**
 * The parent (dev, sim, a test) holds the other end of stdin: when it exits
 * or is killed, the pipe closes and the region shuts down instead of living
 * on, orphaned, holding its port and data directory.
 */
function stopWhenStdinCloses(stop: () => void): void {
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
}

/** First SIGTERM/SIGINT: orderly close, exit 0. A second one: exit at once. Returns the same shutdown, to call directly. */
function closeOnSignals(region: RunningRegion, logger: Logger): (reason: string) => void {
  let closing = false;
  const onSignal = (signal: string) => {
    if (closing) {
      logger.warn({ signal }, 'second signal: exiting before shutdown completed');
      process.exit(EXIT_FORCED);
    }
    closing = true;
    logger.info({ signal }, 'shutting down');
    region.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return onSignal;
}

async function dev(regionsDir: string, restart: boolean): Promise<void> {
  const { runDev } = await import('./dev.js');
  try {
    process.exitCode = await runDev({ regionsDir, cliScript: fileURLToPath(import.meta.url), restart });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`${err.message}\n`);
    process.exitCode = EXIT_BAD_CONFIG;
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** True when this file is the program being run (also through the npm bin symlink). */
function isMain(): boolean {
  const entry = process.argv[1];
  return entry !== undefined && existsSync(entry) && realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url));
}

/**
 * The user's mistakes (bad options, a folder in use, a bad config) are one
 * line and exit 2; anything else is one line and exit 1, with the stack only
 * when MERIDIAN_DEBUG is set.
 */
function exitOnError(err: unknown): never {
  const mistake = err instanceof UsageError || err instanceof LockHeldError || err instanceof ConfigError;
  const detail = !mistake && process.env['MERIDIAN_DEBUG'] && err instanceof Error ? (err.stack ?? err.message) : messageOf(err);
  process.stderr.write(`meridian: ${detail}\n`);
  process.exit(mistake ? EXIT_BAD_CONFIG : 1);
}

if (isMain()) {
  try {
    await buildProgram().parseAsync(process.argv);
  } catch (err) {
    exitOnError(err);
  }
}
