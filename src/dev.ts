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
import { regionNodeFlags } from './node-flags.js';

export interface DevOptions {
  /** Folder of region configs; each `*.json` directly in it is one region. */
  regionsDir: string;
  /** The CLI script each region runs as `<script> start --config <file>`. */
  cliScript: string;
  /** Receives every output line; default: stdout. */
  print?: (line: string) => void;
  /** How long regions get to shut down before they are killed; default 10 s. */
  killAfterMs?: number;
  /** Start again a region that exits on its own (a crash, a kill); default true. */
  restart?: boolean;
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
  /** Resolves once every region has exited: 0 after {@link stop}, 1 if they all died on their own and none is restarted. */
  readonly done: Promise<number>;
}

interface Member {
  name: string;
  url: string;
  file: string;
  child: ChildProcess;
  startedAt: number;
  /** Wait before the next restart, ms. */
  backoffMs: number;
}

const DEFAULT_KILL_AFTER_MS = 10_000;
const REPEAT_SIGNAL_MS = 500;
/** First wait before a crashed region starts again; doubled at each crash that follows soon after, ms. */
const FIRST_RESTART_MS = 1000;
const MAX_RESTART_MS = 30_000;
/** A region that ran this long before it crashed is restarted after the first wait again, ms. */
const STABLE_RUN_MS = 60_000;
/** What `meridian start` exits with when its config is invalid or its data folder is held: a restart cannot help. */
const EXIT_BAD_CONFIG = 2;

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

  const launch = (name: string, file: string): ChildProcess => {
    // stdin is a pipe from the supervisor: should it die, even by SIGKILL, the region sees it close and stops.
    const child = spawn(process.execPath, [...regionNodeFlags(configs.length), opts.cliScript, 'start', '--config', file, '--stop-with-parent'], {
      stdio: ['pipe', 'pipe', 'pipe'],
      // Its own process group, so a terminal's Ctrl-C reaches only the supervisor,
      // which then sends exactly one SIGTERM (a second signal makes a region exit at once).
      detached: true,
    });
    for (const stream of [child.stdout, child.stderr]) {
      if (stream) createInterface({ input: stream }).on('line', (line) => say(name, formatLogLine(line)));
    }
    return child;
  };
  const members = configs.map(({ file, config }): Member => ({
    name: config.region,
    url: regionUrl(config),
    file,
    child: launch(config.region, file),
    startedAt: Date.now(),
    backoffMs: FIRST_RESTART_MS,
  }));
  return supervise(members, { killAfterMs: opts.killAfterMs ?? DEFAULT_KILL_AFTER_MS, restart: opts.restart ?? true, launch, say });
}

interface Supervision {
  killAfterMs: number;
  restart: boolean;
  launch: (name: string, file: string) => ChildProcess;
  say: (name: string, line: string) => void;
}

/**
 * Keeps the regions running: one that exits on its own is started again
 * (after 1 s, doubling while it keeps crashing, at most 30 s), as a service
 * manager would, so that a crash is followed by the recovery a real
 * deployment sees. Not restarted: a region that exited 0 (stopped on purpose)
 * or 2 (its config or data folder is refused: starting again cannot help).
 */
function supervise(members: Member[], o: Supervision): DevCluster {
  const { killAfterMs, say } = o;
  const alive = new Set(members);
  const restarts = new Map<Member, NodeJS.Timeout>();
  let stopping = false;
  let killTimer: NodeJS.Timeout | undefined;
  let finish: (code: number) => void = () => undefined;
  const done = new Promise<number>((resolve) => (finish = resolve));

  const killAll = (signal: NodeJS.Signals) => {
    for (const m of alive) m.child.kill(signal);
  };
  const settleIfAllGone = () => {
    if (alive.size > 0 || restarts.size > 0) return;
    clearTimeout(killTimer);
    finish(stopping ? 0 : 1);
  };
  const watch = (m: Member) => {
    const child = m.child;
    const gone = (how: string, restartable: boolean) => {
      if (m.child !== child || !alive.delete(m)) return;
      if (!stopping) {
        if (!(o.restart && restartable)) say('dev', `${m.name} exited unexpectedly (${how}); the other regions keep running`);
        else {
          if (Date.now() - m.startedAt >= STABLE_RUN_MS) m.backoffMs = FIRST_RESTART_MS;
          const waitMs = m.backoffMs;
          m.backoffMs = Math.min(MAX_RESTART_MS, m.backoffMs * 2);
          say('dev', `${m.name} exited unexpectedly (${how}); restarting it in ${waitMs / 1000} s, the other regions keep running`);
          restarts.set(m, setTimeout(() => {
            restarts.delete(m);
            m.child = o.launch(m.name, m.file);
            m.startedAt = Date.now();
            alive.add(m);
            watch(m);
          }, waitMs));
        }
      }
      settleIfAllGone();
    };
    child.on('close', (code, signal) => gone(signal ? `signal ${signal}` : `exit code ${code}`, code !== 0 && code !== EXIT_BAD_CONFIG));
    child.on('error', (err) => gone(`could not run: ${err.message}`, false));
  };
  for (const m of members) watch(m);

  const stop = () => {
    if (stopping) {
      say('dev', 'stopping now: killing the remaining regions');
      killAll('SIGKILL');
      return;
    }
    stopping = true;
    for (const timer of restarts.values()) clearTimeout(timer);
    restarts.clear();
    if (alive.size === 0) {
      settleIfAllGone();
      return;
    }
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
