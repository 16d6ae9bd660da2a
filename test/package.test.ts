import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);

/** Packages only a server needs; none may reach a browser bundle of the client. */
const SERVER_PACKAGES = ['better-sqlite3', 'fastify', '@fastify/', 'pino', 'ws', 'prom-client', 'commander', 'ajv'];

describe('the meridian/client entry', () => {
  it('bundles for the browser without node built-ins or server packages', async () => {
    const result = await build({
      entryPoints: ['src/client/index.ts'],
      bundle: true,
      platform: 'browser',
      format: 'esm',
      write: false,
      metafile: true,
      logLevel: 'silent',
    });
    expect(result.errors).toEqual([]);
    const inputs = Object.keys(result.metafile.inputs);
    expect(inputs).toContain('src/client/index.ts');
    for (const input of inputs) {
      expect(input, input).not.toMatch(/^node:/);
      for (const pkg of SERVER_PACKAGES) expect(input, input).not.toContain(`node_modules/${pkg}`);
      // Type-only imports vanish; no module of the server's own may be pulled in.
      expect(input, input).not.toMatch(/^src\/(api|storage|replication|docs|live|faults|verify|region|cli|config|logger|metrics)\b/);
    }
    const code = result.outputFiles[0]?.text ?? '';
    expect(code).not.toMatch(/from\s*["']node:|require\(["']/);
  });

  it('resolves by package name, for the client and the server entry, with types', async () => {
    const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { exports: Record<string, { types: string; default: string }> };
    expect(pkg.exports['./client']).toEqual({ types: './dist/src/client/index.d.ts', default: './dist/src/client/index.js' });
    expect(pkg.exports['.']?.types).toBe('./dist/src/index.d.ts');
    const script = "const c = await import('meridian/client'); const s = await import('meridian');" +
      'console.log(typeof c.createClient, typeof c.MeridianClient.prototype.resetSession, typeof s.startRegion, typeof s.loadConfig)';
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script]);
    expect(stdout.trim()).toBe('function function function function');
  });
});

describe('npm pack', () => {
  it('ships the built sources, their types and the README, and no tests, benchmarks or CI files', async () => {
    const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { maxBuffer: 16 * 1024 * 1024 });
    const [packed] = JSON.parse(stdout) as { files: { path: string }[] }[];
    const files = (packed?.files ?? []).map((f) => f.path);
    expect(files).toEqual(expect.arrayContaining([
      'package.json', 'README.md', 'dist/src/cli.js', 'dist/src/index.js', 'dist/src/index.d.ts',
      'dist/src/client/index.js', 'dist/src/client/index.d.ts',
    ]));
    const unwanted = files.filter((f) => /^(test|bench|\.ci|\.dev|src|regions|scripts|dist\/test|dist\/bench)\//.test(f) || /results/i.test(f));
    expect(unwanted).toEqual([]);
  }, 60_000);
});
