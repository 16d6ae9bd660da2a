import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/faults/cluster.js';
import { http, waitFor } from './helpers/cluster.js';

let dir: string;
let sim: ChildProcess;
let control: string;
const urls: Record<string, string> = {};
let output = '';

async function command(line: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`${control}/command`, { method: 'POST', body: line, signal: AbortSignal.timeout(30_000) });
  return { status: res.status, text: await res.text() };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meridian-sim-'));
  const regions = join(dir, 'regions');
  mkdirSync(regions);
  for (const name of ['ap-south', 'eu-west', 'us-east']) {
    const port = await freePort();
    urls[name] = `http://127.0.0.1:${port}`;
    writeFileSync(join(regions, `${name}.json`), JSON.stringify({ region: name, listen: { port } }));
  }
  const controlPort = await freePort();
  control = `http://127.0.0.1:${controlPort}`;
  sim = spawn(process.execPath, [resolve('dist/src/cli.js'), 'sim', '--regions', regions, '--data', join(dir, 'data'),
    '--control-port', String(controlPort), '--no-prompt'], { stdio: ['ignore', 'pipe', 'pipe'] });
  sim.stdout?.on('data', (c: Buffer) => (output += c.toString()));
  sim.stderr?.on('data', (c: Buffer) => (output += c.toString()));
  await waitFor('simulator control endpoint', async () => (await fetch(`${control}/help`)).ok, 30_000);
}, 60_000);

afterAll(async () => {
  if (sim.exitCode === null) {
    const exited = new Promise((r) => sim.once('exit', r));
    sim.kill('SIGTERM');
    await exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('meridian sim', () => {
  it('cuts a region off, lets its clients write, and converges after heal', async () => {
    expect(output).toMatch(/ap-south\s+http:\/\/127\.0\.0\.1/);
    expect((await command('partition us-east')).text).toMatch(/cut off/);
    const write = await http(`${urls['us-east']}/v1/docs/sim/during`, { method: 'PUT', body: { cut: true } });
    expect(write.status).toBe(200);
    const status = await command('status');
    expect(status.text).toMatch(/digests agree: no/);
    expect(status.text).toMatch(/us-east\s+running\s+\S+\s+down/);
    expect((await command('heal')).status).toBe(200);
    await waitFor('converged', async () => (await command('status')).text.includes('digests agree: yes'), 30_000, 300);
    expect((await http(`${urls['eu-west']}/v1/docs/sim/during`)).body).toEqual({ cut: true });
  });

  it('kills and restarts a region, and refuses unknown commands with a hint', async () => {
    expect((await command('kill eu-west')).text).toMatch(/killed/);
    expect((await command('status')).text).toMatch(/eu-west\s+stopped/);
    expect((await command('restart eu-west')).text).toMatch(/restarted/);
    const bad = await command('explode');
    expect(bad.status).toBe(400);
    expect(bad.text).toMatch(/type 'help'/);
  });
});
