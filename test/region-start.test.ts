import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import WebSocket from 'ws';
import * as Y from 'yjs';
import * as encoding from 'lib0/encoding';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config.js';
import { freePort } from '../src/faults/cluster.js';
import { startRegion, type RunningRegion } from '../src/region.js';
import { http, waitFor } from './helpers/cluster.js';

let dir: string | null = null;
let region: RunningRegion | null = null;

afterEach(async () => {
  await region?.close();
  region = null;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = null;
});

/** A region whose one peer never answers: it holds writes for 3 × `deadAfterMs`, then takes them alone. */
async function startAlone(deadAfterMs: number): Promise<RunningRegion> {
  dir = mkdtempSync(join(tmpdir(), 'meridian-start-'));
  const silentPeer = await freePort();
  const config = parseConfig({
    region: 'us-east',
    listen: { host: '127.0.0.1', port: 0 },
    dataDir: 'data',
    secret: 'test-secret',
    peers: [{ region: 'eu-west', url: `http://127.0.0.1:${silentPeer}` }],
    replication: { heartbeatMs: 100, deadAfterMs },
  }, dir);
  return startRegion(config, { logger: pino({ level: 'silent' }) });
}

describe('a region whose peers do not answer', () => {
  it('is not ready while it holds writes, refuses them within a second, then takes them alone', async () => {
    region = await startAlone(1500);
    const { url } = region;

    const held = await http<{ ready: boolean; reason: string }>(`${url}/readyz`);
    expect(held.status).toBe(503);
    expect(held.body).toMatchObject({ ready: false, reason: expect.stringMatching(/holding writes/) });
    expect((await http(`${url}/healthz`)).status).toBe(200);

    // A write waits a moment, not the whole hold (3 × deadAfterMs = 4.5 s): it is
    // refused, nothing written, so that its client can go to another region.
    const began = Date.now();
    const refused = await http<{ error: string; message: string }>(`${url}/v1/docs/t/alone`, { method: 'PUT', body: { alone: true } });
    expect(refused.status).toBe(503);
    expect(refused.body).toMatchObject({ error: 'unavailable', message: expect.stringMatching(/has just started/) });
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(Date.now() - began).toBeLessThan(3000);
    expect((await http(`${url}/v1/docs/t/alone`)).status).toBe(404);
    // Past the hold's first second, a write is refused at once: its client need not wait to move on.
    const again = Date.now();
    expect((await http(`${url}/v1/docs/t/alone`, { method: 'PUT', body: { alone: true } })).status).toBe(503);
    expect(Date.now() - again).toBeLessThan(300);

    // Once the hold ends (no peer answered), the region takes writes alone.
    await waitFor('the hold to end', async () => (await http(`${url}/readyz`)).status === 200, 10_000);
    const write = await http(`${url}/v1/docs/t/alone`, { method: 'PUT', body: { alone: true } });
    expect(write.status).toBe(200);
    const ready = await http<{ ready: boolean; isolated: boolean }>(`${url}/readyz`);
    expect(ready.body).toMatchObject({ ready: true, isolated: true });
    expect((await http(`${url}/v1/docs/t/alone`)).body).toEqual({ alone: true });
  });
});

describe('a live update sent while the region holds writes', () => {
  it('waits out the hold on an open connection (no refusal), then is stored', async () => {
    region = await startAlone(1000);
    const { url } = region;
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/live/t/edited`);
    const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
    await new Promise((resolve) => ws.once('open', resolve));
    const edit = new Y.Doc();
    edit.getText('body').insert(0, 'written during the hold');
    const e = encoding.createEncoder();
    encoding.writeVarUint(e, 0); // sync message
    encoding.writeVarUint(e, 2); // update
    encoding.writeVarUint8Array(e, Y.encodeStateAsUpdate(edit));
    ws.send(encoding.toUint8Array(e));

    // An HTTP write would be refused after 1 s; the live update is still waiting, its connection open.
    const early = await Promise.race([closed, new Promise<null>((resolve) => setTimeout(() => resolve(null), 1500))]);
    expect(early).toBeNull();
    expect((await http(`${url}/readyz`)).status).toBe(503);
    const stored = await waitFor('the update stored once the hold ended', async () => {
      const r = await http<Record<string, unknown>>(`${url}/v1/docs/t/edited`);
      return r.status === 200 ? r.body : undefined;
    }, 10_000);
    expect(JSON.stringify(stored)).toContain('written during the hold');
    ws.close();
  });
});

describe('a frame bound set below what the cluster needs', () => {
  it('is named in a warning at start', async () => {
    dir = mkdtempSync(join(tmpdir(), 'meridian-start-'));
    const lines: string[] = [];
    const config = parseConfig({
      region: 'us-east', listen: { host: '127.0.0.1', port: 0 }, dataDir: 'data', secret: 'test-secret',
      peers: [{ region: 'eu-west', url: `http://127.0.0.1:${await freePort()}` }],
      replication: { maxFrameBytes: 4 * 1024 * 1024, batchBytes: 64 * 1024 },
    }, dir);
    region = await startRegion(config, { logger: pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) }) });
    const warning = lines.map((l) => JSON.parse(l) as { msg: string; needed?: number }).find((l) => l.msg.startsWith('replication.maxFrameBytes is below'));
    expect(warning?.needed).toBe(2 * 8 * 1024 * 1024 + 1024 * 1024);
  });
});
