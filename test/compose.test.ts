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
  const proxies = Object.keys(services).filter((s) => s.startsWith('wan-'));
  const envOf = (name: string) => asMap(asMap(services[name]).environment ?? {});

  it('has one service per region config and one link proxy per pair, and works with compose v1 (no top-level name)', () => {
    expect(Object.keys(services).filter((s) => !proxies.includes(s)).sort()).toEqual(regionNames);
    expect(proxies.sort()).toEqual(['wan-ap-south-eu-west', 'wan-ap-south-us-east', 'wan-eu-west-us-east']);
    expect(compose).not.toHaveProperty('name');
    expect(compose).not.toHaveProperty('version');
  });

  it.each(regionNames)('%s keeps data in its own volume and publishes its port on 127.0.0.1 by default', (name) => {
    const svc = asMap(services[name]);
    // Two stacks side by side need container names of their own.
    expect(svc).not.toHaveProperty('container_name');
    expect(svc.image).toBe('${MERIDIAN_IMAGE:-meridian:local}');
    expect(svc.command).toEqual(['start', '--config', `/app/regions/compose/${name}.json`]);
    // The image's HEALTHCHECK probes /readyz on the port of the config the container runs.
    expect(svc).not.toHaveProperty('healthcheck');

    const mounts = asList(svc.volumes).map(String);
    expect(mounts).toHaveLength(1);
    const [volume, target] = mounts[0]!.split(':');
    expect(target).toBe('/data');
    expect(Object.keys(volumes)).toContain(volume);
    expect(Object.values(services).filter((s) => asList(asMap(s).volumes ?? []).map(String).some((m) => m.startsWith(`${volume}:`)))).toHaveLength(1);

    const port = inCompose.get(name)!.listen.port;
    const portVar = `MERIDIAN_PORT_${name.toUpperCase().replace(/-/g, '_')}`;
    expect(asList(svc.ports)).toEqual([`\${MERIDIAN_BIND:-127.0.0.1}:\${${portVar}-${port}}:${port}`]);
    expect(envOf(name).MERIDIAN_SECRET).toBe('${MERIDIAN_SECRET:-local-dev-secret-change-me}');
  });

  it('builds the image once, from a base image given as a build argument', () => {
    const built = Object.entries(services).filter(([, s]) => asMap(s).build !== undefined);
    expect(built.map(([name]) => name)).toEqual(['us-east']);
    const build = asMap(asMap(built[0]![1]).build);
    expect(build.context).toBe('.');
    expect(build.dockerfile).toBe('Dockerfile');
    expect(asMap(build.args).BASE_IMAGE).toBe('${MERIDIAN_BASE_IMAGE:-node:20-bookworm-slim}');
    // Services without `build` would try to pull the image if created first.
    for (const name of Object.keys(services).filter((s) => s !== 'us-east')) expect(asList(asMap(services[name]).depends_on)).toContain('us-east');
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

  it('sends every link through its proxy: the region whose name sorts first dials the proxy, which leads to the other', () => {
    for (const proxy of proxies) {
      const [dialler, accepter] = regionNames.filter((r) => proxy.includes(r)).sort();
      const svc = asMap(services[proxy]);
      expect(asList(svc.networks)).toEqual(['wan']);
      const port = inCompose.get(accepter!)!.listen.port;
      expect(svc.command).toEqual(['proxy', '--listen', `0.0.0.0:${port}`, '--upstream', `${accepter}:${port}`, '--control-port', '7300']);
      expect(asList(asMap(svc.healthcheck).test).join(' ')).toContain('http://127.0.0.1:7300/stats');
      const peers = String(envOf(dialler!).MERIDIAN_PEERS).split(',');
      expect(peers).toContain(`${accepter}=http://${proxy}:${port}`);
    }
    // Every other peer URL is the file's.
    for (const name of regionNames) {
      const fromEnv = envOf(name).MERIDIAN_PEERS;
      if (fromEnv === undefined) continue;
      for (const item of String(fromEnv).split(',')) {
        const [peer, url] = item.split('=');
        const fileUrl = inCompose.get(name)!.peers.find((p) => p.region === peer)!.url;
        expect([fileUrl, ...proxies.map((p) => `http://${p}:${inCompose.get(peer!)!.listen.port}`)]).toContain(url);
      }
    }
  });

  it('passes `config` of docker compose v2 or docker-compose v1, where installed', () => {
    const clients = [['docker', 'compose'], ['docker-compose']].filter(([cmd, ...sub]) => spawnSync(cmd!, [...sub, 'version'], { encoding: 'utf8' }).status === 0);
    if (clients.length === 0) {
      console.log('note: no docker compose client is installed here; the compose file was checked structurally only');
      return;
    }
    for (const [cmd, ...sub] of clients) {
      const check = spawnSync(cmd!, [...sub, '-f', path.join(ROOT, 'docker-compose.yml'), 'config', '-q'], { encoding: 'utf8' });
      expect(check.stderr).toBe('');
      expect(check.status).toBe(0);
    }
  });
});

describe('Dockerfile', () => {
  const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
  it('runs the compiled CLI as the node user with /data as a volume', () => {
    expect(dockerfile).toMatch(/^ENTRYPOINT \["node", "dist\/src\/cli\.js"\]$/m);
    expect(dockerfile).toMatch(/^CMD \["start", "--config", "\/app\/regions\/compose\/us-east\.json"\]$/m);
    expect(dockerfile).toMatch(/^USER node$/m);
    expect(dockerfile).toMatch(/^VOLUME \["\/data"\]$/m);
    expect(existsSync(path.join(COMPOSE_REGIONS, 'us-east.json'))).toBe(true);
  });

  it('takes its base image as a build argument, defaulting to the official Node image, and pulls no frontend', () => {
    expect(dockerfile).toMatch(/^ARG BASE_IMAGE=node:20-bookworm-slim$/m);
    expect(dockerfile.match(/^FROM .*$/gm)).toEqual(['FROM ${BASE_IMAGE} AS build', 'FROM ${BASE_IMAGE}']);
    expect(dockerfile).not.toMatch(/^# syntax=/m);
    expect(existsSync(path.join(ROOT, 'scripts', 'docker-base.sh'))).toBe(true);
  });

  it('checks health on /readyz through the config the container runs, not a fixed port', () => {
    expect(dockerfile).toMatch(/^HEALTHCHECK [^\n]*\\\n\s+CMD \["node", "scripts\/healthcheck\.mjs"\]$/m);
    expect(dockerfile).toMatch(/^COPY scripts\/healthcheck\.mjs \.\/scripts\/healthcheck\.mjs$/m);
    expect(dockerfile).not.toMatch(/7101\/(healthz|readyz)/);
    const probe = readFileSync(path.join(ROOT, 'scripts', 'healthcheck.mjs'), 'utf8');
    expect(probe).toContain("path: '/readyz'");
    expect(probe).toContain('loadConfigWithEnv');
  });
});
