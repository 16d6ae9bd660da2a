/**
 * Random draws for Yjs, served from a pool. Yjs gives every Y.Doc it makes
 * a random client id (lib0's `random.uint32`, through
 * `webcrypto.getRandomValues`), even a document whose id is set right after,
 * and Node serves each call with a native job of its own: about 5 µs alone,
 * 10-20 µs in a busy region, 7 % of a region's thread while it catches up
 * (it builds a document for each one it is sent). Small `Uint32Array`
 * requests are served here from 4 KiB of the same generator's output,
 * refilled when spent, as Node caches entropy for `randomUUID`; each value
 * is handed out once and wiped from the pool. Every other request goes to
 * Node as before.
 *
 * lib0 binds the function when it loads, so this module must be evaluated
 * before it: it is the first import of each entry point (cli.ts, index.ts).
 */
import { randomFillSync, webcrypto } from 'node:crypto';

const POOL_WORDS = 1024;
/** Larger requests are rare (lib0's uint53 takes 8 words): Node serves them. */
const MAX_POOLED_WORDS = 8;

const pool = new Uint32Array(POOL_WORDS);
let next = POOL_WORDS;
let served = 0;
const native = webcrypto.getRandomValues.bind(webcrypto);

function getRandomValues<T extends Parameters<typeof native>[0]>(array: T): T {
  if (!(array instanceof Uint32Array) || array.length > MAX_POOLED_WORDS) return native(array);
  if (next + array.length > POOL_WORDS) {
    randomFillSync(pool);
    next = 0;
  }
  for (let i = 0; i < array.length; i++) {
    array[i] = pool[next]!;
    pool[next++] = 0;
  }
  served += 1;
  return array;
}

webcrypto.getRandomValues = getRandomValues;

/** Requests served from the pool so far in this process (tests: the pool is in place before Yjs). */
export function pooledDraws(): number {
  return served;
}
