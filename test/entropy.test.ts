import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const dist = (path: string): string => pathToFileURL(resolve('dist/src', path)).href;

/** Runs `body` (an ES module) in a fresh Node process, whose last line of output is JSON. */
function run(body: string): Record<string, unknown> {
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', body], { encoding: 'utf8' });
  return JSON.parse(out.trim().split('\n').pop()!) as Record<string, unknown>;
}

describe('random draws for Yjs', () => {
  it('are served from the pool in a process that loads the package, each value once', () => {
    const r = run(`
      await import(${JSON.stringify(dist('index.js'))});
      const { pooledDraws } = await import(${JSON.stringify(dist('crdt/entropy.js'))});
      const Y = await import('yjs');
      const before = pooledDraws();
      const ids = new Set();
      for (let i = 0; i < 1000; i++) ids.add(new Y.Doc({ guid: 'x' }).clientID);
      // Other requests still go to Node, and get random bytes.
      const large = crypto.getRandomValues(new Uint8Array(64));
      let refused = null;
      try { crypto.getRandomValues(new Float64Array(1)); } catch (err) { refused = err.name; }
      console.log(JSON.stringify({ pooled: pooledDraws() - before, distinct: ids.size, largeNonZero: large.some((b) => b !== 0), refused }));
    `);
    expect(r).toEqual({ pooled: 1000, distinct: 1000, largeNonZero: true, refused: 'TypeMismatchError' });
  });

  it('are not pooled for Yjs loaded before the pool (why the entry points import it first)', () => {
    const r = run(`
      const Y = await import('yjs');
      const { pooledDraws } = await import(${JSON.stringify(dist('crdt/entropy.js'))});
      for (let i = 0; i < 10; i++) new Y.Doc({ guid: 'x' });
      console.log(JSON.stringify({ pooled: pooledDraws() }));
    `);
    expect(r).toEqual({ pooled: 0 });
  });
});
