import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config.js';
import { freePort } from '../src/faults/cluster.js';
import { startRegion, type RunningRegion } from '../src/region.js';
import { http } from './helpers/cluster.js';

let dir: string | null = null;
let region: RunningRegion | null = null;

afterEach(async () => {
  await region?.close();
  region = null;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = null;
});

describe('a region whose peers do not answer', () => {
  it('is not ready while it holds writes, then takes them alone', async () => {
    dir = mkdtempSync(join(tmpdir(), 'meridian-start-'));
    const silentPeer = await freePort();
    const config = parseConfig({
      region: 'us-east',
      listen: { host: '127.0.0.1', port: 0 },
      dataDir: 'data',
      secret: 'test-secret',
      peers: [{ region: 'eu-west', url: `http://127.0.0.1:${silentPeer}` }],
      replication: { heartbeatMs: 100, deadAfterMs: 700 },
    }, dir);
    region = await startRegion(config, { logger: pino({ level: 'silent' }) });

    const held = await http<{ ready: boolean; reason: string }>(`${region.url}/readyz`);
    expect(held.status).toBe(503);
    expect(held.body).toMatchObject({ ready: false, reason: expect.stringMatching(/holding writes/) });
    expect((await http(`${region.url}/healthz`)).status).toBe(200);

    // The write waits for the hold (3 × deadAfterMs) and then lands.
    const write = await http(`${region.url}/v1/docs/t/alone`, { method: 'PUT', body: { alone: true } });
    expect(write.status).toBe(200);
    const ready = await http<{ ready: boolean; isolated: boolean }>(`${region.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(ready.body).toMatchObject({ ready: true, isolated: true });
    expect((await http(`${region.url}/v1/docs/t/alone`)).body).toEqual({ alone: true });
  });
});
