/**
 * How the parts of a region are kept apart.
 * - The import boundaries of eslint.config.js, proven to match: each boundary
 *   is tried with a forbidden and an allowed import, linted by ESLint's own
 *   Node API as if the snippet lived at a path inside the tree. A rule whose
 *   pattern matches nothing (as `'../replication/*\/**'` once did) fails here.
 * - The configuration each part receives from the composition root: only its
 *   slice, with TLS material read once.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';
import Fastify from 'fastify';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parseConfig, type RegionConfig } from '../src/config.js';
import type { RegionId } from '../src/ids.js';
import { apiConfig, linkOptions, loadTls, replicationOptions } from '../src/region.js';
import { acceptLinks, dialLink, type Link } from '../src/replication/transport.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const RULE = 'no-restricted-imports';

// The boundaries are the only rule under test, and they need no type
// information: skip building a TypeScript program for probe files that do not exist.
const eslint = new ESLint({
  cwd: ROOT,
  overrideConfig: { languageOptions: { parserOptions: { project: false, projectService: false } } },
  ruleFilter: ({ ruleId }) => ruleId === RULE,
});

/** The boundary messages ESLint reports for `source` placed at `file` (relative to the repository). */
async function boundaryMessages(file: string, source: string): Promise<string[]> {
  const [result] = await eslint.lintText(source, { filePath: path.join(ROOT, file) });
  if (!result) throw new Error(`no lint result for ${file}`);
  const fatal = result.messages.filter((m) => m.fatal === true);
  expect(fatal.map((m) => m.message)).toEqual([]);
  return result.messages.filter((m) => m.ruleId === RULE).map((m) => m.message);
}

/** `from` imports `spec`; whether a boundary must refuse it. */
interface Probe {
  from: string;
  spec: string;
  refused: boolean;
}

const forbid = (from: string, ...specs: string[]): Probe[] => specs.map((spec) => ({ from, spec, refused: true }));
const allow = (from: string, ...specs: string[]): Probe[] => specs.map((spec) => ({ from, spec, refused: false }));

const BOUNDARIES: Record<string, Probe[]> = {
  'storage and crdt never import ws, fastify, replication, api or docs': [
    ...forbid('src/storage/probe.ts', 'ws', 'fastify', '@fastify/websocket', '../replication/replicator.js', '../replication/types.js',
      '../api/app.js', '../api/errors.js', '../docs/types.js', '../docs/documents.js'),
    ...forbid('src/crdt/probe.ts', 'ws', 'fastify', '@fastify/websocket', '../replication/protocol.js', '../api/schemas.js', '../docs/types.js'),
    ...allow('src/storage/probe.ts', 'better-sqlite3', './types.js', './statements.js', '../ids.js', '../vv.js'),
    ...allow('src/crdt/probe.ts', 'yjs', 'lib0/encoding', './types.js', '../errors.js', '../ids.js'),
  ],
  'crdt never imports storage': [
    ...forbid('src/crdt/probe.ts', '../storage/types.js', '../storage/sqlite.js', 'better-sqlite3'),
  ],
  'replication never reaches into the SQLite engine': [
    ...forbid('src/replication/probe.ts', '../storage/sqlite.js', '../storage/store.js', '../storage/statements.js',
      '../storage/gc.js', '../storage/integrity.js', '../storage/writer.js', '../storage/sqlite-options.js', '../storage/memory.js',
      'better-sqlite3'),
    ...allow('src/replication/probe.ts', '../storage/types.js', '../docs/types.js', './session.js', 'ws'),
  ],
  'the write path depends on the storage contract, never on an engine': [
    ...forbid('src/docs/probe.ts', '../storage/sqlite.js', '../storage/store.js', '../storage/memory.js', '../storage/batch.js',
      '../storage/sqlite-options.js', 'better-sqlite3'),
    ...allow('src/docs/probe.ts', '../storage/types.js', './cache.js', '../crdt/index.js'),
  ],
  'the API never reaches into replication internals': [
    ...forbid('src/api/probe.ts', '../replication/replicator.js', '../replication/session.js', '../replication/transport.js',
      '../replication/protocol.js', '../replication/peer.js'),
    ...allow('src/api/probe.ts', '../replication/types.js', './schemas.js', 'fastify'),
  ],
  'the API never reaches into the SQLite engine': [
    ...forbid('src/api/probe.ts', '../storage/sqlite.js', '../storage/store.js', 'better-sqlite3'),
    ...allow('src/api/probe.ts', '../storage/types.js', '../docs/types.js'),
  ],
  'only src/region.ts (the composition root) constructs concrete parts': [
    ...forbid('src/probe.ts', './storage/sqlite.js', './docs/documents.js', './replication/replicator.js', './replication/transport.js', './api/app.js'),
    ...forbid('src/verify/probe.ts', '../storage/sqlite.js', '../docs/documents.js', '../api/app.js'),
    ...forbid('src/docs/probe.ts', '../storage/sqlite.js', '../storage/memory.js', '../replication/replicator.js'),
    ...forbid('src/api/probe.ts', '../storage/memory.js'),
    ...forbid('src/faults/sim.ts', '../replication/replicator.js'),
    ...allow('src/region.ts', './storage/sqlite.js', './docs/documents.js', './replication/replicator.js', './replication/transport.js', './api/app.js'),
    // Tooling excepted, as it always was: tests, benchmarks and the local cluster.
    ...allow('src/faults/cluster.ts', '../storage/sqlite.js', '../replication/replicator.js'),
    ...allow('test/probe.test.ts', '../src/storage/sqlite.js', '../src/storage/memory.js', '../src/replication/replicator.js', '../src/api/app.js'),
    ...allow('bench/probe.ts', '../src/storage/sqlite.js', '../src/docs/documents.js'),
    // Inside a part, its own modules are its own business.
    ...allow('src/docs/probe.ts', './documents.js', '../storage/types.js'),
    ...allow('src/api/probe.ts', './app.js'),
    ...allow('src/replication/probe.ts', './replicator.js', './transport.js'),
  ],
};

/** The same dependency written three ways. */
function sources(spec: string): string[] {
  return [
    `import * as m from '${spec}';\nexport const probe = m;\n`,
    `import type * as m from '${spec}';\nexport type Probe = typeof m;\n`,
    `export * from '${spec}';\n`,
  ];
}

describe('import boundaries (eslint.config.js)', () => {
  for (const [boundary, probes] of Object.entries(BOUNDARIES)) {
    describe(boundary, () => {
      for (const { from, spec, refused } of probes) {
        test(`${from} ${refused ? 'may not' : 'may'} import '${spec}'`, async () => {
          for (const source of sources(spec)) {
            const messages = await boundaryMessages(from, source);
            if (refused) {
              // This very boundary matched (another may too), and its message says why.
              expect(messages.some((m) => m.includes(boundary)), `${source}\n${messages.join('\n')}`).toBe(true);
            } else {
              expect(messages, source).toEqual([]);
            }
          }
        });
      }
    });
  }

  test('the source tree keeps every boundary', async () => {
    const results = await eslint.lintFiles(['src/**/*.ts']);
    const broken = results.flatMap((r) =>
      r.messages.filter((m) => m.ruleId === RULE || m.fatal === true).map((m) => `${path.relative(ROOT, r.filePath)}:${m.line} ${m.message}`));
    expect(results.length).toBeGreaterThan(50);
    expect(broken).toEqual([]);
  });
});

const SECRET = 'slice-secret-0123456789';
const TOKEN = 'slice-token-abcdefghijklmnop';
let dir: string;

/** A throwaway CA and a certificate for 127.0.0.1 signed by it (PEM paths). */
function makeCertificates(folder: string): { ca: string; cert: string; key: string } {
  const f = (name: string) => path.join(folder, name);
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=meridian test CA', '-keyout', f('ca.key'), '-out', f('ca.pem'));
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', f('node.key'), '-out', f('node.csr'));
  writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  ssl('x509', '-req', '-in', f('node.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
    '-days', '2', '-extfile', f('ext.cnf'), '-out', f('node.pem'));
  return { ca: f('ca.pem'), cert: f('node.pem'), key: f('node.key') };
}

/** A region's configuration with a secret, an API token and TLS files in `dir`. */
function regionConfig(region: string, peer: { region: string; url: string }): RegionConfig {
  const raw = {
    region, listen: { port: 0 }, dataDir: path.join(dir, region), secret: SECRET, peers: [peer],
    auth: { tokens: [{ token: TOKEN, scope: 'read' }] }, tls: { ca: 'ca.pem', cert: 'node.pem', key: 'node.key' },
  };
  return parseConfig(raw, dir);
}

describe('each part receives only its slice of the configuration', () => {
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'meridian-slices-'));
    makeCertificates(dir);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('replication sees neither the secret nor the tokens; links see the secret, not the tokens; the API the tokens, not the secret', () => {
    const config = regionConfig('ap-south', { region: 'eu-west', url: 'https://127.0.0.1:1' });
    const replication = JSON.stringify(replicationOptions(config));
    expect(replication).not.toContain(SECRET);
    expect(replication).not.toContain(TOKEN);
    expect(replication).not.toContain('node.key');
    expect(Object.keys(replicationOptions(config)).sort()).toEqual(['peers', 'region', 'replication', 'storage']);
    const link = linkOptions(config, loadTls(config.tls));
    expect(link.secret).toBe(SECRET);
    expect(JSON.stringify(link)).not.toContain(TOKEN);
    expect(link.peers).toEqual(['eu-west']);
    const api = JSON.stringify(apiConfig(config));
    expect(api).toContain(TOKEN);
    expect(api).not.toContain(SECRET);
  });

  test('the dialer uses TLS material read once: it still dials after the certificate files are gone', async () => {
    const acceptor = regionConfig('eu-west', { region: 'ap-south', url: 'https://127.0.0.1:1' });
    const tls = loadTls(acceptor.tls);
    if (!tls) throw new Error('the test config has TLS');
    const app = Fastify({ https: tls });
    const logger = pino({ level: 'silent' });
    const accepted: Link[] = [];
    try {
      await acceptLinks(app, {
        link: linkOptions(acceptor, tls), logger, onLink: (_region, link) => accepted.push(link), onRefused: () => undefined,
      });
      await app.listen({ host: '127.0.0.1', port: 0 });
      const address = app.server.address();
      const url = `https://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
      const dialer = regionConfig('ap-south', { region: 'eu-west', url });
      const options = { link: linkOptions(dialer, loadTls(dialer.tls)), logger };
      const peer = { region: 'eu-west' as RegionId, url };
      (await dialLink(peer, options)).close(1000, 'first dial');
      // A redial (after a partition, say) must not depend on files still being where they were at start.
      for (const file of ['ca.pem', 'node.pem', 'node.key']) rmSync(path.join(dir, file));
      (await dialLink(peer, options)).close(1000, 'second dial');
      expect(accepted).toHaveLength(2);
    } finally {
      for (const link of accepted) link.close(1000, 'test over');
      await app.close();
    }
  });
});
