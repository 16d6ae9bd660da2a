import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCluster } from '../src/faults/cluster.js';
import { FAST_REPLICATION, waitFor } from './helpers/cluster.js';

let dir: string;
let cluster: LocalCluster;
let ca: Buffer;

/** A throwaway CA and a certificate for 127.0.0.1 signed by it. */
function makeCertificates(folder: string): { ca: string; cert: string; key: string } {
  const f = (name: string) => join(folder, name);
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=meridian test CA',
    '-keyout', f('ca.key'), '-out', f('ca.pem'));
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', f('node.key'), '-out', f('node.csr'));
  writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  ssl('x509', '-req', '-in', f('node.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
    '-days', '2', '-extfile', f('ext.cnf'), '-out', f('node.pem'));
  return { ca: f('ca.pem'), cert: f('node.pem'), key: f('node.key') };
}

function https(url: string, method = 'GET', body?: unknown): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, ca, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meridian-tls-'));
  const tls = makeCertificates(dir);
  ca = readFileSync(tls.ca);
  const start = async (attempt: number): Promise<LocalCluster> => {
    const baseDir = join(dir, `cluster-${attempt}`);
    const c = new LocalCluster({ regions: [{ region: 'ap-south' }, { region: 'eu-west' }], baseDir, extra: FAST_REPLICATION, tls });
    await c.start();
    return c;
  };
  // Ports are picked free and bound a moment later by the region process; a
  // test running beside this one can take one in between. Start again then.
  cluster = await start(1).catch(async () => start(2));
}, 60_000);

afterAll(async () => {
  await cluster.stop(true);
  rmSync(dir, { recursive: true, force: true });
});

describe('TLS', () => {
  it('serves https and replicates over wss between regions that trust the same CA', async () => {
    expect(cluster.url('ap-south')).toMatch(/^https:/);
    const put = await https(`${cluster.url('ap-south')}/v1/docs/secure/one`, 'PUT', { sealed: true });
    expect(put.status).toBe(200);
    const read = await waitFor('replicated over wss', async () => {
      const r = await https(`${cluster.url('eu-west')}/v1/docs/secure/one`);
      return r.status === 200 ? r : undefined;
    });
    expect(JSON.parse(read.body)).toEqual({ sealed: true });
  });
});
