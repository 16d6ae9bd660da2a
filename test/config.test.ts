import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, DEFAULTS, loadConfig, parseConfig, type RegionConfig } from '../src/config.js';

let dir: string;
const MIB = 1024 * 1024;

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'meridian-config-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function minimal(): Record<string, unknown> {
  return {
    region: 'us-east',
    listen: { port: 7101 },
    dataDir: 'data/us-east',
    secret: 'change-me-please',
  };
}

/** Writes `content` (an object or raw text) to a config file in the temp folder. */
function writeConfig(name: string, content: unknown): string {
  const file = path.join(dir, name);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content, null, 2));
  return file;
}

/** The ConfigError message for a config, with the minimal config's fields overridden by `patch`. */
function errorFor(patch: Record<string, unknown>): string {
  const raw = { ...minimal(), ...patch };
  for (const [k, v] of Object.entries(raw)) if (v === undefined) delete raw[k];
  try {
    parseConfig(raw, dir, 'test.json');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).message;
  }
  throw new Error('config was accepted');
}

describe('loadConfig', () => {
  it('fills every default and resolves paths against the config folder', () => {
    writeConfig('sub/ca.pem', 'ca');
    writeConfig('sub/cert.pem', 'cert');
    writeConfig('sub/key.pem', 'key');
    const file = writeConfig('sub/us-east.json', {
      ...minimal(),
      peers: [{ region: 'eu-west', url: 'http://127.0.0.1:7102/' }],
      auth: { tokens: [{ token: 'x'.repeat(16), scope: 'read' }] },
      tls: { ca: 'ca.pem', cert: 'cert.pem', key: './key.pem' },
      storage: { synchronous: 'normal' },
    });
    const c = loadConfig(file);
    const sub = path.join(dir, 'sub');
    expect(c.dataDir).toBe(path.join(sub, 'data/us-east'));
    expect(c.tls).toEqual({ ca: path.join(sub, 'ca.pem'), cert: path.join(sub, 'cert.pem'), key: path.join(sub, 'key.pem') });
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 7101 });
    expect(c.cluster).toBe(DEFAULTS.cluster);
    expect(c.peers).toEqual([{ region: 'eu-west', url: 'http://127.0.0.1:7102' }]);
    expect(c.storage).toEqual({ ...DEFAULTS.storage, synchronous: 'normal' });
    // Two regions may each grow a document to 8 MiB apart: its merged state must still fit a frame.
    expect(c.replication).toEqual({ ...DEFAULTS.replication, maxFrameBytes: 17 * MIB });
    expect(c.limits).toEqual(DEFAULTS.limits);
    expect(c.auth).toEqual({
      tokens: [{ token: 'x'.repeat(16), scope: 'read', collections: ['*'], name: 'auth.tokens[0]' }],
      protectMetrics: false,
    });
    expect(c.log.level).toBe('info');
  });

  it('sizes the frame bound for the largest document concurrent writes can merge, unless it is set', () => {
    const peers = (n: number) => Array.from({ length: n }, (_, i) => ({ region: `r${i}`, url: `http://127.0.0.1:${7200 + i}` }));
    const frame = (patch: Record<string, unknown>) => parseConfig({ ...minimal(), ...patch }, dir).replication.maxFrameBytes;
    expect(frame({})).toBe(16 * MIB);
    expect(frame({ peers: peers(2) })).toBe(3 * 8 * MIB + MIB);
    expect(frame({ peers: peers(4), limits: { maxDocumentBytes: 2 * MIB } })).toBe(16 * MIB);
    expect(frame({ peers: peers(2), replication: { maxFrameBytes: 4 * MIB } })).toBe(4 * MIB);
  });

  it("gives each caller a quarter of the region's bounds unless set", () => {
    const shares = (limits: Record<string, unknown>) => {
      const l = parseConfig({ ...minimal(), limits }, dir).limits;
      return [l.maxConcurrentPerCaller, l.maxFeedSubscribersPerCaller, l.liveConnectionsPerCaller];
    };
    expect(shares({})).toEqual([64, 250, 2500]);
    expect(shares({ maxConcurrentRequests: 2, maxFeedSubscribers: 0, liveConnections: 40 })).toEqual([1, 0, 10]);
    expect(shares({ liveConnections: 40, liveConnectionsPerCaller: 40, maxFeedSubscribersPerCaller: 7 })).toEqual([64, 7, 40]);
  });

  it('gives tls null and no tokens when they are left out', () => {
    const c = parseConfig(minimal(), dir);
    expect(c.tls).toBeNull();
    expect(c.auth.tokens).toEqual([]);
    expect(c.peers).toEqual([]);
  });

  it('accepts ui.simControl null, its default, as written in a config file', () => {
    const c = parseConfig({ ...minimal(), ui: { simControl: null } }, dir);
    expect(c.ui.simControl).toBeNull();
    expect(() => parseConfig({ ...minimal(), ui: { simControl: 'ftp://x' } }, dir)).toThrow(/ui\.simControl/);
  });

  it('returns a deeply frozen config', () => {
    const c = parseConfig({ ...minimal(), peers: [{ region: 'eu-west', url: 'http://a:1' }] }, dir);
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.listen)).toBe(true);
    expect(Object.isFrozen(c.peers)).toBe(true);
    expect(Object.isFrozen(c.peers[0])).toBe(true);
    expect(Object.isFrozen(c.storage)).toBe(true);
    expect(Object.isFrozen(DEFAULTS.storage)).toBe(true);
    expect(() => {
      (c.listen as { port: number }).port = 1;
    }).toThrow(TypeError);
  });

  it('does not change the raw object it was given', () => {
    const raw = minimal();
    const before = JSON.stringify(raw);
    parseConfig(raw, dir);
    expect(JSON.stringify(raw)).toBe(before);
    expect(Object.isFrozen(raw)).toBe(false);
  });

  it('names the file and the position of a JSON syntax error', () => {
    const file = writeConfig('broken.json', '{\n  "region": "us-east",\n}\n');
    expect(() => loadConfig(file)).toThrow(ConfigError);
    expect(() => loadConfig(file)).toThrow(/broken\.json: invalid JSON: .*line 3 column 1/);
  });

  it('names a file that does not exist', () => {
    expect(() => loadConfig(path.join(dir, 'nope.json'))).toThrow(/nope\.json: cannot read config: file not found/);
  });
});

describe('config errors name the field and the fault', () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['missing region', { region: undefined }, /^test\.json: region: is required$/],
    ['missing nested field', { listen: {} }, /listen\.port: is required/],
    ['unknown top-level field', { prot: 1 }, /^test\.json: unknown field 'prot'$/],
    ['unknown nested field', { listen: { port: 1, prot: 2 } }, /^test\.json: listen: unknown field 'prot'$/],
    ['unknown field in a list item', { peers: [{ region: 'eu-west', url: 'http://a:1', extra: 1 }] }, /peers\[0\]: unknown field 'extra'/],
    ['wrong type', { peers: [{ region: 'eu-west', url: 7 }] }, /peers\[0\]\.url: must be a string/],
    ['wrong type, integer', { listen: { port: '7101' } }, /listen\.port: must be an integer/],
    ['port out of range', { listen: { port: 65536 } }, /listen\.port: must be <= 65535/],
    ['bad enum', { storage: { synchronous: 'fast' } }, /storage\.synchronous: must be one of off\|normal\|full\|extra/],
    ['bad log level', { log: { level: 'loud' } }, /log\.level: must be one of fatal\|error\|warn\|info\|debug\|trace\|silent/],
    ['bad region name', { region: 'US East' }, /region: must be 1-32 characters of a-z, 0-9 and -/],
    ['bad peer URL', { peers: [{ region: 'eu-west', url: 'ftp://a:1' }] }, /peers\[0\]\.url: must be an http:\/\/ or https:\/\/ URL/],
    ['peer URL that is no URL', { peers: [{ region: 'eu-west', url: 'eu-west:7102' }] }, /peers\[0\]\.url: must be an http/],
    [
      'duplicate peer',
      { peers: [{ region: 'eu-west', url: 'http://a:1' }, { region: 'eu-west', url: 'http://b:1' }] },
      /peers\[1\]\.region: duplicates peers\[0\]\.region 'eu-west'/,
    ],
    ['peer equal to self', { peers: [{ region: 'us-east', url: 'http://a:1' }] }, /peers\[0\]\.region: must differ from region 'us-east'/],
    ['short secret', { secret: 'short' }, /^test\.json: secret: must be at least 8 characters$/],
    ['short token', { auth: { tokens: [{ token: 'too-short', scope: 'read' }] } }, /auth\.tokens\[0\]\.token: must be at least 16 characters/],
    ['bad scope', { auth: { tokens: [{ token: 'x'.repeat(16), scope: 'admin' }] } }, /auth\.tokens\[0\]\.scope: must be one of read\|read-write/],
    [
      'bad collection pattern',
      { auth: { tokens: [{ token: 'x'.repeat(16), scope: 'read', collections: ['a*b'] }] } },
      /auth\.tokens\[0\]\.collections\[0\]: must be a collection name or a prefix ending in \*/,
    ],
    ['missing tls file', { tls: { cert: 'missing-cert.pem', key: 'missing-key.pem' } }, /tls\.cert: file not found: .*missing-cert\.pem/],
    ['inconsistent bounds', { replication: { reconnectMinMs: 500, reconnectMaxMs: 100 } }, /replication\.reconnectMinMs: must be <= replication\.reconnectMaxMs/],
    ['not an object', { storage: [] }, /storage: must be an object/],
    ['a caller share over its bound', { limits: { liveConnections: 10, liveConnectionsPerCaller: 11 } }, /limits\.liveConnectionsPerCaller: must be <= limits\.liveConnections \(10\)/],
  ];
  it.each(cases)('%s', (_name, patch, expected) => {
    expect(errorFor(patch)).toMatch(expected);
  });

  it('reports every problem, one line each, each naming the file', () => {
    const message = errorFor({ region: 'x y', secret: 's', prot: 1 });
    const lines = message.split('\n');
    expect(lines).toHaveLength(3);
    for (const line of lines) expect(line.startsWith('test.json: ')).toBe(true);
    const err = (() => {
      try {
        parseConfig({ ...minimal(), secret: 1 }, dir);
      } catch (e) {
        return e as ConfigError;
      }
      return null;
    })();
    expect(err?.problems).toEqual([{ path: 'secret', message: 'must be a string' }]);
  });

  it('never repeats a secret or token value in a message', () => {
    const token = 'duplicate-token-value';
    const message = errorFor({
      secret: 'sec',
      auth: { tokens: [{ token, scope: 'read' }, { token, scope: 'read-write' }] },
    });
    expect(message).toMatch(/secret: must be at least 8 characters/);
    expect(message).not.toContain(token);
    const dup = errorFor({ auth: { tokens: [{ token, scope: 'read' }, { token, scope: 'read-write' }] } });
    expect(dup).toMatch(/auth\.tokens\[1\]\.token: duplicates auth\.tokens\[0\]\.token/);
    expect(dup).not.toContain(token);
  });

  it('accepts the boundary values', () => {
    const c: RegionConfig = parseConfig(
      {
        ...minimal(),
        region: 'a'.repeat(32),
        listen: { host: '0.0.0.0', port: 0 },
        secret: '8'.repeat(8),
        auth: { tokens: [{ token: 't'.repeat(16), scope: 'read-write', collections: ['notes', 'app-*', '*'], name: 'billing' }] },
      },
      dir,
    );
    expect(c.listen.port).toBe(0);
    expect(c.auth.tokens[0]?.collections).toEqual(['notes', 'app-*', '*']);
    expect(() => parseConfig({ ...minimal(), region: 'a'.repeat(33) }, dir)).toThrow(/region: must be 1-32/);
  });
});
