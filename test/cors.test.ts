import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../src/config.js';
import { applyEnv } from '../src/config-env.js';
import { http, startTestCluster } from './helpers/cluster.js';

type Cluster = Awaited<ReturnType<typeof startTestCluster>>;

const OPEN = 'eu-west';
const CLOSED = 'us-east';
const APP = 'https://app.example.com';
const TOKEN = 'cors-test-token-0123456789';

let cluster: Cluster;

beforeAll(async () => {
  // One region lets APP's pages in; the other keeps the default (CORS off). Both require a token.
  cluster = await startTestCluster([OPEN, CLOSED], { auth: { tokens: [{ token: TOKEN, scope: 'read-write' }] } }, {
    [OPEN]: { cors: { origins: [APP, 'http://localhost:5173'] } },
  });
}, 60_000);

afterAll(async () => {
  await cluster.dispose();
});

/** A browser's preflight before a PUT carrying the token and the session headers. */
function preflight(region: string, origin: string, path = '/v1/docs/notes/a') {
  return http(`${cluster.url(region)}${path}`, {
    method: 'OPTIONS',
    headers: {
      origin,
      'access-control-request-method': 'PUT',
      'access-control-request-headers': 'authorization,content-type,meridian-after,meridian-wait-ms',
    },
  });
}

describe('CORS', () => {
  it('answers a preflight from an allowed origin on every /v1 route, before access control', async () => {
    for (const path of ['/v1/docs/notes/a', '/v1/docs/notes', '/v1/docs/notes/a/ops', '/v1/sync']) {
      const r = await preflight(OPEN, APP, path);
      expect(r.status, path).toBe(204);
      expect(r.headers.get('access-control-allow-origin')).toBe(APP);
      expect(r.headers.get('access-control-allow-methods')).toContain('PUT');
      const allowed = r.headers.get('access-control-allow-headers')?.split(',').map((h) => h.trim()) ?? [];
      expect(allowed).toEqual(expect.arrayContaining(['authorization', 'content-type', 'meridian-after', 'meridian-wait-ms']));
      expect(r.headers.get('vary')).toMatch(/origin/i);
    }
  });

  it('lets the page read meridian-version from a real answer', async () => {
    const r = await http(`${cluster.url(OPEN)}/v1/docs/notes/cors`, {
      method: 'PUT', body: { ok: true }, headers: { origin: APP, authorization: `Bearer ${TOKEN}` },
    });
    expect(r.status).toBe(200);
    expect(r.headers.get('access-control-allow-origin')).toBe(APP);
    expect(r.headers.get('access-control-expose-headers')).toContain('meridian-version');
  });

  it('gives another origin no CORS headers', async () => {
    const r = await preflight(OPEN, 'https://evil.example.com');
    // Without allow-origin the browser refuses the call, whatever else the preflight says.
    expect(r.headers.get('access-control-allow-origin')).toBeNull();
    const get = await http(`${cluster.url(OPEN)}/v1/docs/notes/cors`, {
      headers: { origin: 'https://evil.example.com', authorization: `Bearer ${TOKEN}` },
    });
    expect(get.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('is off by default', async () => {
    const r = await preflight(CLOSED, APP);
    expect(r.headers.get('access-control-allow-origin')).toBeNull();
    const get = await http(`${cluster.url(CLOSED)}/v1/docs/notes/cors`, { headers: { origin: APP, authorization: `Bearer ${TOKEN}` } });
    expect(get.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('cors config', () => {
  const base = { region: 'eu-west', listen: { port: 0 }, dataDir: 'data', secret: 'secret-123' };

  it('defaults to no origins, accepts origins and an explicit *, refuses anything else', () => {
    expect(parseConfig(base, '/tmp').cors.origins).toEqual([]);
    expect(parseConfig({ ...base, cors: { origins: ['https://a.example:8443/', '*'] } }, '/tmp').cors.origins)
      .toEqual(['https://a.example:8443', '*']);
    for (const bad of ['https://a.example/app', 'a.example', 'https://*.example.com', 'ftp://a.example']) {
      expect(() => parseConfig({ ...base, cors: { origins: [bad] } }, '/tmp'), bad).toThrow(ConfigError);
    }
    expect(() => parseConfig({ ...base, cors: { origins: ['https://a.example/app'] } }, '/tmp')).toThrow(/cors\.origins\[0\]/);
  });

  it('reads MERIDIAN_CORS_ORIGINS as a comma-separated list', () => {
    const { config } = applyEnv(base, { MERIDIAN_CORS_ORIGINS: ' https://a.example , http://localhost:3000,' });
    expect(parseConfig(config, '/tmp').cors.origins).toEqual(['https://a.example', 'http://localhost:3000']);
    expect(parseConfig(applyEnv(base, { MERIDIAN_CORS_ORIGINS: '' }).config, '/tmp').cors.origins).toEqual([]);
  });
});
