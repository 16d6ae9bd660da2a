import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { connect, createServer, type Server } from 'node:net';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/faults/cluster.js';
import { waitFor } from './helpers/cluster.js';

let echo: Server;
let proxy: ChildProcess;
let listenPort: number;
let control: string;

beforeAll(async () => {
  echo = createServer((s) => s.pipe(s));
  echo.listen(0, '127.0.0.1');
  await once(echo, 'listening');
  const address = echo.address();
  const echoPort = typeof address === 'object' && address ? address.port : 0;
  listenPort = await freePort();
  const controlPort = await freePort();
  control = `http://127.0.0.1:${controlPort}`;
  proxy = spawn(process.execPath, [resolve('dist/src/cli.js'), 'proxy', '--listen', String(listenPort),
    '--upstream', `127.0.0.1:${echoPort}`, '--control-port', String(controlPort)], { stdio: 'ignore' });
  await waitFor('proxy control', async () => (await fetch(`${control}/stats`)).ok, 15_000);
});

afterAll(async () => {
  const exited = once(proxy, 'exit');
  proxy.kill('SIGTERM');
  await exited;
  echo.close();
});

function roundTrip(text: string, timeoutMs = 500): Promise<string> {
  return new Promise((resolvePromise) => {
    const socket = connect(listenPort, '127.0.0.1');
    let got = '';
    socket.on('data', (c: Buffer) => (got += c.toString()));
    socket.on('error', () => undefined);
    socket.write(text);
    setTimeout(() => {
      socket.destroy();
      resolvePromise(got);
    }, timeoutMs);
  });
}

describe('meridian proxy (standalone)', () => {
  it('forwards, swallows bytes while black-holed, and heals, as told over HTTP', async () => {
    expect(await roundTrip('hello')).toBe('hello');
    const set = await fetch(`${control}/fault`, { method: 'POST', body: 'blackhole' });
    expect(set.status).toBe(200);
    expect(await roundTrip('lost')).toBe('');
    expect((await fetch(`${control}/fault`, { method: 'POST', body: 'heal' })).status).toBe(200);
    expect(await roundTrip('back')).toBe('back');
    const stats = (await (await fetch(`${control}/stats`)).json()) as { bytesDropped: number; connectionsTotal: number };
    expect(stats.bytesDropped).toBeGreaterThanOrEqual(4);
    expect(stats.connectionsTotal).toBe(3);
    const bad = await fetch(`${control}/fault`, { method: 'POST', body: 'explode' });
    expect(bad.status).toBe(400);
  });
});
