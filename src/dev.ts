/**
 * The development cluster: every region config of a folder runs as a child
 * process of one supervisor, whose terminal shows all their logs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { ConfigError, loadConfig, type RegionConfig } from './config.js';
import { formatLogLine } from './logger.js';

export interface DevOptions {
  /** Folder of region configs; each `*.json` directly in it is one region. */
  regionsDir: string;
  /** The CLI script each region runs as `<script> start --config <file>`. */
  cliScript: string;
  /** Receives every output line; default: stdout. */
  print?: (line: string) => void;
  /** How long regions get to shut down before they are killed; default 10 s. */
  killAfterMs?: number;
}

/** A running development cluster. */
export interface DevCluster {
  /** The regions, in the order of their config file names. */
  readonly regions: readonly { name: string; url: string; file: string }[];
  /**
   * First call: SIGTERM to every region, SIGKILL to those still running after
   * `killAfterMs`. A second call kills the remaining ones at once.
   */
  stop(): void;
  /** Resolves once every region has exited: 0 after {@link stop}, 1 if they all died on their own. */
  readonly done: Promise<number>;
}

interface Member {
  name: string;
  url: string;
  file: string;
  child: ChildProcess;
}

const DEFAULT_KILL_AFTER_MS = 10_000;
const REPEAT_SIGNAL_MS = 500;

/** The region configs of a folder, sorted by file name. Throws ConfigError if there are none or one is invalid. */
export function readRegionConfigs(dir: string): { file: string; config: RegionConfig }[] {
  let files: string[];
  try {
    files = readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isFile() && e.name.endsWith('.json'))
      .map((e) => path.join(dir, e.name))
      .sort();
  } catch (err) {
    throw new ConfigError(dir, [{ path: '', message: `cannot read folder: ${(err as Error).message}` }], { cause: err });
  }
  if (files.length === 0) throw new ConfigError(dir, [{ path: '', message: 'no region configs (*.json) in this folder' }]);
  return files.map((file) => ({ file, config: loadConfig(file) }));
}

/** The address a client on this machine uses to reach a region. */
export function regionUrl(config: RegionConfig): string {
  const { host, port } = config.listen;
  const reachable = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : host.includes(':') ? `[${host}]` : host;
  return `${config.tls ? 'https' : 'http'}://${reachable}:${port}`;
}

/**
 * Starts one child process per region config in `regionsDir` and forwards
 * their output, each line prefixed with the region name.
 */
export function startDev(opts: DevOptions): DevCluster {
  const print = opts.print ?? ((line: string) => void process.stdout.write(`${line}\n`));
  const configs = readRegionConfigs(opts.regionsDir);
  const width = Math.max(3, ...configs.map((c) => c.config.region.length));
  const say = (name: string, line: string) => print(`${name.padEnd(width)}  ${line}`);

  for (const { config } of configs) say(config.region, regionUrl(config));
  const open = configs.filter((c) => c.config.auth.tokens.length === 0).map((c) => c.config.region);
  if (open.length === configs.length) {
    say('dev', 'the dev cluster runs without access tokens: anyone who can reach these ports can read and write');
  } else if (open.length > 0) {
    say('dev', `regions without access tokens (open to anyone who can reach them): ${open.join(', ')}`);
  }

  const members = configs.map(({ file, config }): Member => {
    // stdin is a pipe from the supervisor: should it die, even by SIGKILL, the region sees it close and stops.
    const child = spawn(process.execPath, [opts.cliScript, 'start', '--config', file, '--stop-with-parent'], {
      stdio: ['pipe', 'pipe', 'pipe'],
      // Its own process group, so a terminal's Ctrl-C reaches only the supervisor,
      // which then sends exactly one SIGTERM (a second signal makes a region exit at once).
      detached: true,
    });
    return { name: config.region, url: regionUrl(config), file, child };
  });
  for (const m of members) {
    for (const stream of [m.child.stdout, m.child.stderr]) {
      if (stream) createInterface({ input: stream }).on('line', (line) => say(m.name, formatLogLine(line)));
    }
  }
  return supervise(members, opts.killAfterMs ?? DEFAULT_KILL_AFTER_MS, say);
}

function supervise(members: Member[], killAfterMs: number, say: (name: string, line: string) => void): DevCluster {
  const alive = new Set(members);
  let stopping = false;
  let killTimer: NodeJS.Timeout | undefined;
  let finish: (code: number) => void = () => undefined;
  const done = new Promise<number>((resolve) => (finish = resolve));

  const killAll = (signal: NodeJS.Signals) => {
    for (const m of alive) m.child.kill(signal);
  };
  for (const m of members) {
    const gone = (how: string) => {
      if (!alive.delete(m)) return;
      if (!stopping) say('dev', `${m.name} exited unexpectedly (${how}); the other regions keep running`);
      if (alive.size > 0) return;
      clearTimeout(killTimer);
      finish(stopping ? 0 : 1);
    };
    m.child.on('close', (code, signal) => gone(signal ? `signal ${signal}` : `exit code ${code}`));
    m.child.on('error', (err) => gone(`could not run: ${err.message}`));
  }

  const stop = () => {
    if (stopping) {
      say('dev', 'stopping now: killing the remaining regions');
      killAll('SIGKILL');
      return;
    }
    stopping = true;
    if (alive.size === 0) return;
    say('dev', `stopping ${alive.size} region(s)`);
    killAll('SIGTERM');
    killTimer = setTimeout(() => {
      say('dev', `regions still running after ${killAfterMs} ms: ${[...alive].map((m) => m.name).join(', ')}; killing them`);
      killAll('SIGKILL');
    }, killAfterMs);
  };
  return { regions: members.map(({ name, url, file }) => ({ name, url, file })), stop, done };
}

/**
 * Runs the development cluster in the foreground until Ctrl-C or SIGTERM (a
 * second one kills the regions at once). Resolves the process exit code.
 */
export async function runDev(opts: DevOptions): Promise<number> {
  const cluster = startDev(opts);
  let firstSignalAt = 0;
  const onSignal = () => {
    // Wrappers such as timeout(1) signal both the process and its group, so one
    // request to stop can arrive twice at once; only a later signal means "now".
    const now = Date.now();
    if (firstSignalAt !== 0 && now - firstSignalAt < REPEAT_SIGNAL_MS) return;
    firstSignalAt ||= now;
    cluster.stop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await cluster.done;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
