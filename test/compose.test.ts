import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadConfig, parseConfig } from '../src/config.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const REGIONS = path.join(ROOT, 'regions');
const COMPOSE_REGIONS = path.join(REGIONS, 'compose');

type Yaml = null | string | number | boolean | Yaml[] | { [key: string]: Yaml };
type YamlMap = { [key: string]: Yaml };

/**
 * Reads the small YAML subset docker-compose.yml keeps to: nested maps, block
 * lists of scalars, JSON-style quoted strings and flow lists, full-line
 * comments. Anything else throws, which keeps the file that simple.
 */
function parseYaml(text: string): Yaml {
  const lines = text
    .split('\n')
    .map((raw, i) => ({ n: i + 1, indent: raw.search(/\S/), body: raw.trim() }))
    .filter((l) => l.body !== '' && !l.body.startsWith('#'));
  let pos = 0;
  const fail = (n: number, why: string): never => {
    throw new Error(`docker-compose.yml line ${n}: ${why}`);
  };
  const scalar = (s: string, n: number): Yaml => {
    if (/^["[{]/.test(s)) return JSON.parse(s) as Yaml;
    if (s === 'true' || s === 'false') return s === 'true';
    if (/^-?\d+$/.test(s)) return Number(s);
    if (/: | #|^[&*!|>'%@`]/.test(s)) fail(n, `unsupported scalar ${s}`);
    return s;
  };
  const block = (indent: number): Yaml => {
    const isList = lines[pos]?.body.startsWith('- ');
    const list: Yaml[] = [];
    const map: YamlMap = {};
    while (pos < lines.length && lines[pos]!.indent >= indent) {
      const { n, indent: at, body } = lines[pos]!;
      if (at !== indent) fail(n, 'unexpected indentation');
      pos += 1;
      if (isList) {
        if (!body.startsWith('- ')) fail(n, 'expected a list item');
        list.push(scalar(body.slice(2).trim(), n));
        continue;
      }
      const m = /^([A-Za-z0-9_.-]+):(?: (.*))?$/.exec(body) ?? fail(n, `expected "key: value", got ${body}`);
      const [, key, value] = m;
      if (key! in map) fail(n, `duplicate key ${key}`);
      const next = lines[pos];
      map[key!] = value !== undefined ? scalar(value, n) : next && next.indent > indent ? block(next.indent) : null;
    }
    return isList ? list : map;
  };
  return block(0);
}

const asMap = (y: Yaml | undefined): YamlMap => {
  expect(y !== null && typeof y === 'object' && !Array.isArray(y)).toBe(true);
  return y as YamlMap;
};
const asList = (y: Yaml | undefined): Yaml[] => {
  expect(Array.isArray(y)).toBe(true);
  return y as Yaml[];
};
const readJson = (file: string) => JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown> & RawConfig;

interface RawConfig {
  region: string;
  listen: { host: string; port: number };
  dataDir: string;
  peers: { region: string; url: string }[];
}

const compose = asMap(parseYaml(readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8')));
const services = asMap(compose.services);
const regionNames = readdirSync(REGIONS)
  .filter((f) => f.endsWith('.json'))
  .map((f) => f.slice(0, -'.json'.length))
  .sort();
const loopback = new Map(regionNames.map((r) => [r, readJson(path.join(REGIONS, `${r}.json`))]));
const inCompose = new Map(regionNames.map((r) => [r, readJson(path.join(COMPOSE_REGIONS, `${r}.json`))]));

describe('region configs', () => {
  it('are three regions in a full mesh sharing cluster and secret', () => {
    expect(regionNames).toEqual(['ap-south', 'eu-west', 'us-east']);
    const ports = new Set<number>();
    for (const [name, raw] of loopback) {
      const c = loadConfig(path.join(REGIONS, `${name}.json`));
      expect(c.region).toBe(name);
      expect(c.listen.host).toBe('127.0.0.1');
      expect(c.dataDir).toBe(path.join(ROOT, 'data', name));
      expect(c.cluster).toBe('meridian-local');
      expect(c.secret).toBe('local-dev-secret-change-me');
      expect(c.auth.tokens).toEqual([]);
      ports.add(c.listen.port);
      expect(c.peers.map((p) => p.region).sort()).toEqual(regionNames.filter((r) => r !== name));
      for (const p of raw.peers) {
        expect(p.url).toBe(`http://127.0.0.1:${loopback.get(p.region)!.listen.port}`);
      }
    }
    expect([...ports].sort()).toEqual([7101, 7102, 7103]);
  });

  it('in compose differ from the loopback ones only in listen host, data folder and peer hosts', () => {
    expect(readdirSync(COMPOSE_REGIONS).filter((f) => f.endsWith('.json')).sort()).toEqual(regionNames.map((r) => `${r}.json`));
    for (const [name, raw] of inCompose) {
      const c = parseConfig(raw, COMPOSE_REGIONS, `${name}.json`);
      expect(c.listen.host).toBe('0.0.0.0');
      expect(c.dataDir).toBe('/data');
      const local = loopback.get(name)!;
      const peers = raw.peers.map((p) => {
        const url = new URL(p.url);
        expect(url.hostname).toBe(p.region);
        expect(Number(url.port)).toBe(inCompose.get(p.region)!.listen.port);
        return { ...p, url: `${url.protocol}//127.0.0.1:${url.port}` };
      });
      expect({ ...raw, listen: { ...raw.listen, host: local.listen.host }, dataDir: local.dataDir, peers }).toEqual(local);
    }
  });
});

describe('docker-compose.yml', () => {
  const networks = asMap(compose.networks);
  const volumes = asMap(compose.volumes);

  it('has one service per region config', () => {
    expect(Object.keys(services).sort()).toEqual(regionNames);
    expect(compose.name).toBe('meridian');
  });

  it.each(regionNames)('%s builds the image, keeps data in a volume and checks /healthz', (name) => {
    const svc = asMap(services[name]);
    const build = asMap(svc.build);
    expect(build.context).toBe('.');
    expect(existsSync(path.join(ROOT, String(build.dockerfile)))).toBe(true);
    expect(build.dockerfile).toBe('Dockerfile');
    // Partition commands name the container after the region.
    expect(svc.container_name).toBe(name);
    expect(svc.command).toEqual(['start', '--config', `/app/regions/compose/${name}.json`]);

    const mounts = asList(svc.volumes).map(String);
    expect(mounts).toHaveLength(1);
    const [volume, target] = mounts[0]!.split(':');
    expect(target).toBe('/data');
    expect(Object.keys(volumes)).toContain(volume);
    expect(Object.values(services).filter((s) => asList(asMap(s).volumes).map(String).some((m) => m.startsWith(`${volume}:`)))).toHaveLength(1);

    const port = inCompose.get(name)!.listen.port;
    expect(asList(svc.ports)).toEqual([`${port}:${port}`]);
    const probe = asList(asMap(svc.healthcheck).test).map(String);
    expect(probe[0]).toBe('CMD');
    expect(probe.join(' ')).toContain(`http://127.0.0.1:${port}/healthz`);
  });

  it.each(regionNames)('%s is on wan and on a client network shared with no other region', (name) => {
    const own = asList(asMap(services[name]).networks).map(String);
    expect(own).toContain('wan');
    const clients = own.filter((n) => n !== 'wan');
    expect(clients).toHaveLength(1);
    for (const n of own) expect(Object.keys(networks)).toContain(n);
    const sharing = Object.values(services).filter((s) => asList(asMap(s).networks).includes(clients[0]!));
    expect(sharing).toHaveLength(1);
    // No gateway on wan, so published ports can only go through the client network.
    expect(asMap(networks.wan).internal).toBe(true);
    expect(networks[clients[0]!]).toBeNull();
  });

  it('passes `docker compose config` where the docker compose client is installed', () => {
    const version = spawnSync('docker', ['compose', 'version'], { encoding: 'utf8' });
    if (version.status !== 0) {
      console.log('note: `docker compose` is not available here; the compose file was checked structurally only');
      return;
    }
    const check = spawnSync('docker', ['compose', '-f', path.join(ROOT, 'docker-compose.yml'), 'config', '-q'], { encoding: 'utf8' });
    expect(check.stderr).toBe('');
    expect(check.status).toBe(0);
  });
});

describe('Dockerfile', () => {
  const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
  it('runs the compiled CLI as the node user with /data as a volume', () => {
    expect(dockerfile).toMatch(/^ENTRYPOINT \["node", "dist\/src\/cli\.js"\]$/m);
    expect(dockerfile).toMatch(/^CMD \["start", "--config", "\/app\/regions\/compose\/us-east\.json"\]$/m);
    expect(dockerfile).toMatch(/^USER node$/m);
    expect(dockerfile).toMatch(/^VOLUME \["\/data"\]$/m);
    expect(dockerfile).toMatch(/MERIDIAN_HEALTHCHECK_URL=http:\/\/127\.0\.0\.1:7101\/healthz/);
    expect(dockerfile).toMatch(/^HEALTHCHECK [^\n]*\\\n\s+CMD \["node", "-e", "fetch\(process\.env\.MERIDIAN_HEALTHCHECK_URL\)/m);
    expect(existsSync(path.join(COMPOSE_REGIONS, 'us-east.json'))).toBe(true);
  });
});
