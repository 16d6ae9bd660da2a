/**
 * The CLI leaves nothing behind: bad options are refused (one line, exit 2)
 * before anything starts, a data folder serves one process at a time, and
 * region processes end with the `sim` or `dev` process that started them,
 * even when it is killed with SIGKILL. Real child processes throughout.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/faults/cluster.js';
import { waitFor } from './helpers/cluster.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ROOT, 'dist', 'src', 'cli.js');

let tmp: string;
const started: ChildProcess[] = [];

beforeAll(() => {
  tmp = mkdtempSync(path.join(tmpdir(), 'meridian-debris-'));
});
afterEach(() => {
  for (const child of started.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});
afterAll(() => {
  for (const pid of processesMentioning(tmp)) process.kill(pid, 'SIGKILL');
  rmSync(tmp, { recursive: true, force: true });
});

function cli(...args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 20_000 });
}

/** Starts the CLI in the background; `output` collects its stdout and stderr. */
function background(...args: string[]): { child: ChildProcess; output: () => string } {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  started.push(child);
  let text = '';
  child.stdout?.on('data', (b: Buffer) => (text += b.toString('utf8')));
  child.stderr?.on('data', (b: Buffer) => (text += b.toString('utf8')));
  return { child, output: () => text };
}

/** Pids of live processes whose command line contains `text` (Linux /proc). */
function processesMentioning(text: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      // A zombie (exited, not yet reaped) holds no port or file; only a running process counts.
      if (/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${entry}/stat`, 'utf8'))) continue;
    } catch {
      continue; // exited while we looked
    }
    if (cmdline.includes(text)) pids.push(Number(entry));
  }
  return pids;
}

/** A folder of region configs on free ports; each region alone (no peers) and with its data under `folder`. */
async function regionsFolder(name: string, regions = ['ap-south', 'eu-west']): Promise<{ dir: string; ports: number[] }> {
  const dir = path.join(tmp, name);
  mkdirSync(dir, { recursive: true });
  const ports: number[] = [];
  for (const region of regions) {
    const port = await freePort();
    ports.push(port);
    writeFileSync(path.join(dir, `${region}.json`), JSON.stringify({
      region, listen: { host: '127.0.0.1', port }, dataDir: path.join(dir, 'data', region),
      secret: 'test-secret-0123', storage: { synchronous: 'normal' }, log: { level: 'warn' },
    }));
  }
  return { dir, ports };
}

async function healthy(port: number): Promise<boolean> {
  try {
    return (await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(1000) })).ok;
  } catch {
    return false;
  }
}

function expectOneLineRefusal(r: ReturnType<typeof cli>, pattern: RegExp): void {
  expect(r.status, r.stderr).toBe(2);
  expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(r.stderr).toMatch(pattern);
}

describe('CLI without debris', () => {
  it('refuses bad options in one line with exit 2, before starting anything', async () => {
    const { dir } = await regionsFolder('bad-options');
    const data = path.join(tmp, 'bad-options-data');
    expectOneLineRefusal(cli('proxy', '--listen', 'abc', '--upstream', '1'), /--listen must be host:port or port, not 'abc'/);
    expectOneLineRefusal(cli('proxy', '--listen', '0', '--upstream', '1', '--fault', 'latency fast'), /--fault: .*latency/);
    expectOneLineRefusal(cli('proxy', '--listen', '0', '--upstream', '1', '--control-port', 'abc'), /--control-port must be a port/);
    expectOneLineRefusal(cli('sim', '--regions', '/nonexistent', '--data', data, '--no-prompt'), /--regions \/nonexistent/);
    expectOneLineRefusal(cli('sim', '--regions', dir, '--data', data, '--control-port', 'abc', '--no-prompt'), /--control-port must be a port/);
    expectOneLineRefusal(cli('sim', '--regions', dir, '--data', data, '--port-base', '65534', '--no-prompt'), /--port-base 65534 leaves no room/);
    expectOneLineRefusal(cli('verify', '--port-base', 'low'), /--port-base must be a whole number/);
    // Nothing was started for any of them.
    expect(processesMentioning(dir)).toEqual([]);
    expect(processesMentioning(data)).toEqual([]);
  });

  it('refuses a second region on the same data directory, with exit 2', async () => {
    const { dir, ports } = await regionsFolder('two-nodes', ['ap-south']);
    const first = path.join(dir, 'ap-south.json');
    const node = background('start', '--config', first);
    await waitFor('first node', () => healthy(ports[0]!));
    const second = path.join(dir, 'second.json');
    const port = await freePort();
    writeFileSync(second, JSON.stringify({ ...JSON.parse(readFileSync(first, 'utf8')) as object, listen: { host: '127.0.0.1', port } }));
    const r = cli('start', '--config', second);
    expectOneLineRefusal(r, new RegExp(`in use by region ap-south \\(pid ${node.child.pid}\\)`));
    expect(await healthy(ports[0]!)).toBe(true);
  });

  it('refuses a second sim on the same folder, and ends every region when the sim is killed with SIGKILL', async () => {
    const { dir, ports } = await regionsFolder('sim-kill');
    const data = path.join(tmp, 'sim-kill-data');
    const sim = background('sim', '--regions', dir, '--data', data, '--control-port', '0', '--no-prompt');
    await waitFor('sim ready', async () => sim.output().includes('control:'), 30_000);
    const regionPids = () => processesMentioning(data).filter((pid) => pid !== sim.child.pid);
    expect(regionPids()).toHaveLength(2);

    const second = cli('sim', '--regions', dir, '--data', data, '--control-port', '0', '--no-prompt');
    expectOneLineRefusal(second, /in use by meridian sim/);
    for (const port of ports) expect(await healthy(port)).toBe(true);

    sim.child.kill('SIGKILL');
    await waitFor('no region process left', async () => regionPids().length === 0, 15_000);
    for (const port of ports) expect(await healthy(port)).toBe(false);
  }, 60_000);

  it('stops the regions that did start when another cannot (its port is taken)', async () => {
    const { dir, ports } = await regionsFolder('sim-port-taken');
    const blocker = createServer();
    blocker.listen(ports[1], '127.0.0.1');
    await once(blocker, 'listening');
    try {
      const data = path.join(tmp, 'sim-port-taken-data');
      const sim = background('sim', '--regions', dir, '--data', data, '--control-port', '0', '--no-prompt');
      const [code] = (await once(sim.child, 'exit')) as [number | null];
      expect(code).toBe(1);
      expect(sim.output()).not.toMatch(/\n\s+at /);
      expect(processesMentioning(data)).toEqual([]);
      expect(await healthy(ports[0]!)).toBe(false);
    } finally {
      blocker.close();
    }
  }, 60_000);

  it('ends the regions of `meridian dev` when the supervisor is killed with SIGKILL', async () => {
    const { dir, ports } = await regionsFolder('dev-kill');
    const dev = background('dev', '--regions', dir);
    for (const port of ports) await waitFor('dev region', () => healthy(port), 30_000);
    dev.child.kill('SIGKILL');
    await waitFor('no region process left', async () => processesMentioning(dir).length === 0, 15_000);
  }, 60_000);
});
