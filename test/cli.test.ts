import { freePort } from '../src/faults/cluster.js';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startDev, type DevCluster } from '../src/dev.js';
import { createLogger, formatLogLine } from '../src/logger.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ROOT, 'dist', 'src', 'cli.js');
const SOURCES = ['cli.ts', 'config.ts', 'dev.ts', 'logger.ts'].map((f) => path.join(ROOT, 'src', f));

let tmp: string;

/** The tests run the compiled CLI; compile it when it is missing or older than its sources. */
function ensureBuilt(): void {
  const stale = () => {
    const built = statSync(CLI, { throwIfNoEntry: false })?.mtimeMs ?? 0;
    return SOURCES.some((f) => statSync(f).mtimeMs > built);
  };
  if (!stale()) return;
  // tsc still emits when files elsewhere in the tree have type errors; only the emitted CLI matters here.
  spawnSync(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: ROOT });
  if (stale()) throw new Error('could not compile dist/src/cli.js');
}

function cli(...args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 20_000 });
}

function config(name: string, content: Record<string, unknown>, folder = tmp): string {
  mkdirSync(folder, { recursive: true });
  const file = path.join(folder, name);
  writeFileSync(file, JSON.stringify(content));
  return file;
}

const valid = (region: string, port: number) => ({
  region,
  listen: { host: '127.0.0.1', port },
  dataDir: `data/${region}`,
  secret: 'test-secret-0123',
  storage: { synchronous: 'normal' },
});

beforeAll(() => {
  tmp = mkdtempSync(path.join(tmpdir(), 'meridian-cli-'));
  ensureBuilt();
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

describe('meridian CLI', () => {
  it('lists its commands in --help', () => {
    const r = cli('--help');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('Usage: meridian');
    expect(r.stdout).toMatch(/^\s+start \[options\]/m);
    expect(r.stdout).toMatch(/^\s+dev \[options\]/m);
    expect(cli('start', '--help').stdout).toContain('--config <file>');
    expect(cli('dev', '--help').stdout).toContain('--regions <dir>');
  });

  it('exits 2 on an invalid config, naming file and field, without a stack trace', () => {
    const file = config('bad.json', { ...valid('us-east', 7101), listen: { port: 7101, prot: 'tcp' } });
    const r = cli('start', '--config', file);
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toBe(`${file}: listen: unknown field 'prot'`);
    expect(r.stdout).toBe('');
  });

  it('exits 2 on malformed JSON and on a missing file', () => {
    const file = path.join(tmp, 'malformed.json');
    writeFileSync(file, '{ "region": ');
    const malformed = cli('start', '--config', file);
    expect(malformed.status).toBe(2);
    expect(malformed.stderr).toContain(`${file}: invalid JSON`);
    const missing = cli('start', '--config', path.join(tmp, 'absent.json'));
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain('absent.json: cannot read config: file not found');
    expect(missing.stderr).not.toMatch(/^\s+at /m);
  });

  it('exits 2 when the dev regions folder holds no configs', () => {
    const empty = path.join(tmp, 'empty-regions');
    mkdirSync(empty, { recursive: true });
    const r = cli('dev', '--regions', empty);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('no region configs');
  });

  it('exits 1 with the cause when the region cannot start (port in use)', async () => {
    const blocker = createServer();
    blocker.listen(0, '127.0.0.1');
    await once(blocker, 'listening');
    try {
      const { port } = blocker.address() as AddressInfo;
      const r = cli('start', '--config', config('busy.json', valid('us-east', port), path.join(tmp, 'busy')));
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/^meridian: region us-east failed to start: .*(EADDRINUSE|address already in use)/m);
    } finally {
      blocker.close();
    }
  });

  it('serves until SIGTERM, then closes the region and exits 0', async () => {
    const port = await freePort();
    const file = config('run.json', valid('eu-west', port), path.join(tmp, 'run'));
    const child = spawn(process.execPath, [CLI, 'start', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const exited = once(child, 'exit');
    try {
      await waitFor(async () => {
        if (child.exitCode !== null) throw new Error(`exited ${child.exitCode} before serving: ${out}`);
        return (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => null))?.status === 200;
      }, 15_000);
      child.kill('SIGTERM');
      const [code] = (await exited) as [number | null];
      expect(code).toBe(0);
      expect(out).toMatch(/"signal":"SIGTERM".*"msg":"shutting down"/);
      expect(out).not.toContain('test-secret-0123');
      expect(existsSync(path.join(tmp, 'run', 'data', 'eu-west'))).toBe(true);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('dev cluster', () => {
  // Stands in for `cli.js start`: logs like a region, handles SIGTERM, and
  // crashes or ignores SIGTERM when its region name says so.
  const FIXTURE = `
import { readFileSync } from 'node:fs';
const { region } = JSON.parse(readFileSync(process.argv[process.argv.indexOf('--config') + 1], 'utf8'));
const log = (level, msg, extra = {}) =>
  process.stdout.write(JSON.stringify({ level, time: Date.now(), region, msg, ...extra }) + '\\n');
process.on('SIGTERM', () => {
  log(30, 'got SIGTERM');
  if (!region.includes('stubborn')) process.exit(0);
});
log(30, 'region ready', { url: 'http://x', peers: ['a'] });
process.stderr.write('plain text line\\n');
if (region.includes('crash')) setTimeout(() => process.exit(3), 100);
if (region.includes('refused')) setTimeout(() => process.exit(2), 100);
setInterval(() => {}, 1000);
`;
  let script: string;
  let running: DevCluster | null = null;
  let lines: string[] = [];

  beforeAll(() => {
    script = path.join(tmp, 'fake-region.mjs');
    writeFileSync(script, FIXTURE);
  });
  afterEach(async () => {
    if (!running) return;
    running.stop();
    running.stop();
    await running.done;
    running = null;
  });

  function dev(names: string[], killAfterMs = 10_000, restart = true): DevCluster {
    const dir = path.join(tmp, `dev-${names.join('-')}`);
    names.forEach((name, i) => config(`${name}.json`, valid(name, 7101 + i), dir));
    lines = [];
    running = startDev({ regionsDir: dir, cliScript: script, print: (l) => lines.push(l), killAfterMs, restart });
    return running;
  }

  it('prints URLs, prefixes each region line, restarts a region that crashed and keeps the others', async () => {
    const cluster = dev(['aa-calm', 'bb-crash']);
    const pad = (name: string) => `${name.padEnd(8)}  `;
    expect(lines.slice(0, 2)).toEqual([`${pad('aa-calm')}http://127.0.0.1:7101`, `${pad('bb-crash')}http://127.0.0.1:7102`]);
    expect(lines[2]).toMatch(/^dev\s+the dev cluster runs without access tokens/);
    await waitFor(() => lines.some((l) => l.includes('bb-crash exited unexpectedly (exit code 3); restarting it in 1 s')));
    // Started again, crashed again: the wait doubles.
    await waitFor(() => lines.some((l) => l.includes('bb-crash exited unexpectedly (exit code 3); restarting it in 2 s')));
    expect(lines.filter((l) => l === `${pad('bb-crash')}info  region ready url=http://x peers=["a"]`)).toHaveLength(2);
    // The calm region's output arrives on its own schedule: wait for it rather than race it.
    await waitFor(() => lines.includes(`${pad('aa-calm')}plain text line`));
    expect(lines).toContain(`${pad('aa-calm')}info  region ready url=http://x peers=["a"]`);
    cluster.stop();
    expect(await cluster.done).toBe(0);
    // Still running after the crash: it received the SIGTERM.
    expect(lines).toContain(`${pad('aa-calm')}info  got SIGTERM`);
  });

  it('kills a region that does not stop within the grace time', async () => {
    const cluster = dev(['cc-stubborn'], 300);
    await waitFor(() => lines.some((l) => l.includes('region ready')));
    cluster.stop();
    expect(await cluster.done).toBe(0);
    expect(lines.some((l) => l.includes('got SIGTERM'))).toBe(true);
    expect(lines.some((l) => l.includes('still running after 300 ms: cc-stubborn; killing them'))).toBe(true);
  });

  it('does not restart a region whose config is refused, nor any with restarts off; ends with code 1 when all died', async () => {
    const refused = dev(['dd-refused']);
    expect(await refused.done).toBe(1);
    expect(lines.some((l) => l.includes('dd-refused exited unexpectedly (exit code 2); the other regions keep running'))).toBe(true);
    const crashed = dev(['ee-crash'], 10_000, false);
    expect(await crashed.done).toBe(1);
    expect(lines.some((l) => l.includes('ee-crash exited unexpectedly (exit code 3); the other regions keep running'))).toBe(true);
  });

  it('stops a region waiting for its restart at once', async () => {
    const cluster = dev(['ff-crash']);
    await waitFor(() => lines.some((l) => l.includes('restarting it in 1 s')));
    cluster.stop();
    expect(await cluster.done).toBe(0);
    expect(lines.filter((l) => l.includes('region ready'))).toHaveLength(1);
  });
});

describe('logger', () => {
  function capture(level: 'info' | 'warn', pretty = false) {
    const out: string[] = [];
    const logger = createLogger({ level, region: 'us-east', pretty, destination: { write: (s: string) => void out.push(s) } });
    return { logger, out };
  }

  it('writes JSON lines with the region and redacts secrets and tokens', () => {
    const { logger, out } = capture('info');
    logger.info(
      {
        secret: 'secret-1',
        config: { secret: 'secret-2', auth: { tokens: [{ token: 'token-3' }] } },
        token: 'token-4',
        link: { token: 'token-5' },
        req: { headers: { authorization: 'Bearer token-6' } },
        headers: { authorization: 'Bearer token-7' },
      },
      'hello',
    );
    expect(out).toHaveLength(1);
    const rec = JSON.parse(out[0]!) as Record<string, unknown>;
    expect(rec).toMatchObject({ level: 30, region: 'us-east', msg: 'hello' });
    expect(rec).not.toHaveProperty('pid');
    expect(out[0]).not.toMatch(/secret-\d|token-\d/);
  });

  it('drops lines below its level and renders them compactly when pretty', () => {
    const { logger, out } = capture('warn', true);
    logger.info('hidden');
    logger.warn({ peer: 'eu-west', err: new Error('boom') }, 'peer down');
    expect(out).toEqual(['warn  peer down peer=eu-west err="boom"\n']);
  });

  it('formats JSON lines and passes other lines through', () => {
    expect(formatLogLine('{"level":50,"time":1,"region":"x","msg":"failed","n":3,"note":"a b"}')).toBe('error failed n=3 note="a b"');
    expect(formatLogLine('not json {')).toBe('not json {');
    expect(formatLogLine('[1,2]')).toBe('[1,2]');
  });
});

async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}

