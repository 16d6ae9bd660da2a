import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../src/config.js';
import { ENV_VARS, loadConfigWithEnv } from '../src/config-env.js';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'src', 'cli.js');
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'meridian-config-env-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function write(name: string, content: unknown): string {
  const file = path.join(dir, name);
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

const fileConfig = () => ({
  region: 'us-east',
  cluster: 'from-file',
  listen: { host: '127.0.0.1', port: 7101 },
  dataDir: 'data/us-east',
  peers: [{ region: 'eu-west', url: 'http://127.0.0.1:7102' }],
  secret: 'secret-from-file',
  auth: { protectMetrics: true },
  log: { level: 'warn' },
});

/** Every variable at once, enough for a config with no file. */
const fullEnv = (): Record<string, string> => ({
  MERIDIAN_REGION: 'eu-west',
  MERIDIAN_CLUSTER: 'prod',
  MERIDIAN_LISTEN: '0.0.0.0:8102',
  MERIDIAN_DATA_DIR: '/data',
  MERIDIAN_PEERS: 'us-east=http://us-east:8101/, ap-south=https://ap-south:8103',
  MERIDIAN_SECRET: 'secret-from-env',
  MERIDIAN_LOG_LEVEL: 'debug',
});

function errorOf(run: () => unknown): ConfigError {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('config was accepted');
}

describe('loadConfigWithEnv', () => {
  it('builds a whole config from the environment alone', () => {
    const c = loadConfigWithEnv(undefined, fullEnv());
    expect(c.region).toBe('eu-west');
    expect(c.cluster).toBe('prod');
    expect(c.listen).toEqual({ host: '0.0.0.0', port: 8102 });
    expect(c.dataDir).toBe('/data');
    expect(c.peers).toEqual([
      { region: 'us-east', url: 'http://us-east:8101' },
      { region: 'ap-south', url: 'https://ap-south:8103' },
    ]);
    expect(c.secret).toBe('secret-from-env');
    expect(c.log.level).toBe('debug');
  });

  it('overrides the file field by field and keeps what the environment leaves alone', () => {
    const file = write('override.json', fileConfig());
    const c = loadConfigWithEnv(file, { MERIDIAN_LISTEN: '7201', MERIDIAN_PEERS: '', MERIDIAN_SECRET: 'secret-from-env' });
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 7201 });
    expect(c.peers).toEqual([]);
    expect(c.secret).toBe('secret-from-env');
    expect(c.cluster).toBe('from-file');
    expect(c.auth.protectMetrics).toBe(true);
    expect(c.log.level).toBe('warn');
    // The file's relative paths still resolve against its folder.
    expect(c.dataDir).toBe(path.join(dir, 'data/us-east'));
  });

  it('reads the file from MERIDIAN_CONFIG when no file is given', () => {
    const file = write('by-variable.json', fileConfig());
    expect(loadConfigWithEnv(undefined, { MERIDIAN_CONFIG: file }).region).toBe('us-east');
    expect(loadConfigWithEnv(undefined, { MERIDIAN_CONFIG: file, MERIDIAN_REGION: 'ap-south' }).region).toBe('ap-south');
  });

  it('reads the secret and the tokens from files (Docker secrets)', () => {
    const secret = write('secret.txt', 'secret-in-a-file\n');
    const tokens = write('tokens.json', [{ token: 't'.repeat(20), scope: 'read', collections: ['notes'] }]);
    const { MERIDIAN_SECRET: _unused, ...env } = fullEnv();
    const c = loadConfigWithEnv(undefined, { ...env, MERIDIAN_SECRET_FILE: secret, MERIDIAN_TOKENS_FILE: tokens, MERIDIAN_PROTECT_METRICS: 'true' });
    expect(c.secret).toBe('secret-in-a-file');
    expect(c.auth.tokens).toEqual([{ token: 't'.repeat(20), scope: 'read', collections: ['notes'], name: 'auth.tokens[0]' }]);
    expect(c.auth.protectMetrics).toBe(true);
  });

  it('names the variable and the field when the schema refuses a value', () => {
    const err = errorOf(() => loadConfigWithEnv(undefined, { ...fullEnv(), MERIDIAN_LISTEN: '0.0.0.0:70000', MERIDIAN_REGION: 'EU' }));
    expect(err.message).toContain('environment: MERIDIAN_LISTEN (listen.port): must be <= 65535');
    expect(err.message).toContain('environment: MERIDIAN_REGION (region): must be 1-32 characters of a-z, 0-9 and -');
  });

  it('names the variable when a value cannot be decoded', () => {
    const file = write('decode.json', fileConfig());
    const err = errorOf(() =>
      loadConfigWithEnv(file, { MERIDIAN_LISTEN: 'host:port', MERIDIAN_PEERS: 'us-east', MERIDIAN_PROTECT_METRICS: 'yes' }),
    );
    expect(err.source).toBe(`${file} + environment`);
    expect(err.problems.map((p) => p.path).sort()).toEqual(['MERIDIAN_LISTEN', 'MERIDIAN_PEERS', 'MERIDIAN_PROTECT_METRICS']);
    expect(err.message).toContain("MERIDIAN_PEERS: item 1 must be region=url, not 'us-east'");
  });

  it('refuses a peer URL and a tokens file the schema refuses, naming the variable', () => {
    const peers = errorOf(() => loadConfigWithEnv(undefined, { ...fullEnv(), MERIDIAN_PEERS: 'us-east=ftp://x' }));
    expect(peers.message).toContain('MERIDIAN_PEERS (peers[0].url): must be an http:// or https:// URL');
    const tokens = write('short-tokens.json', [{ token: 'short', scope: 'read' }]);
    const short = errorOf(() => loadConfigWithEnv(undefined, { ...fullEnv(), MERIDIAN_TOKENS_FILE: tokens }));
    expect(short.message).toContain('MERIDIAN_TOKENS_FILE (auth.tokens[0].token): must be at least 16 characters');
  });

  it('refuses both MERIDIAN_SECRET and MERIDIAN_SECRET_FILE, and a missing file, without printing the secret', () => {
    const secret = write('both.txt', 'secret-in-a-file');
    const both = errorOf(() => loadConfigWithEnv(undefined, { ...fullEnv(), MERIDIAN_SECRET_FILE: secret }));
    expect(both.message).toContain('MERIDIAN_SECRET_FILE: sets secret like MERIDIAN_SECRET; set only one of them');
    expect(both.message).not.toContain('secret-from-env');
    expect(both.message).not.toContain('secret-in-a-file');
    const missing = errorOf(() => loadConfigWithEnv(undefined, { ...fullEnv(), MERIDIAN_SECRET: undefined, MERIDIAN_SECRET_FILE: '/nonexistent/s' }));
    expect(missing.message).toContain('MERIDIAN_SECRET_FILE: cannot read /nonexistent/s: file not found');
  });

  it('reports required fields that neither the file nor the environment gives', () => {
    const err = errorOf(() => loadConfigWithEnv(undefined, { MERIDIAN_REGION: 'us-east' }));
    expect(err.problems.map((p) => p.path).sort()).toEqual(['dataDir', 'listen', 'secret']);
  });

  it('documents every variable it reads', () => {
    expect(Object.keys(ENV_VARS).sort()).toEqual([
      'MERIDIAN_CLUSTER', 'MERIDIAN_CONFIG', 'MERIDIAN_CORS_ORIGINS', 'MERIDIAN_DATA_DIR', 'MERIDIAN_LISTEN', 'MERIDIAN_LOG_LEVEL', 'MERIDIAN_PEERS',
      'MERIDIAN_PROTECT_METRICS', 'MERIDIAN_REGION', 'MERIDIAN_SECRET', 'MERIDIAN_SECRET_FILE', 'MERIDIAN_TOKENS_FILE',
      'MERIDIAN_UI',
    ]);
  });
});

describe('meridian start with MERIDIAN_* variables', () => {
  it('exits 2 naming the variable, with no --config', () => {
    const r = spawnSync(process.execPath, [CLI, 'start'], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, ...fullEnv(), MERIDIAN_LISTEN: '0.0.0.0:99999' },
      timeout: 20_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('environment: MERIDIAN_LISTEN (listen.port): must be <= 65535');
  });
});
