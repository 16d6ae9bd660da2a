/**
 * Small random draws served from a pool. Yjs draws a random client id for
 * every `Y.Doc` it constructs, through `crypto.webcrypto.getRandomValues` on
 * a one-element `Uint32Array`; each such call costs a few µs in Node 20
 * (argument checks, then a call into OpenSSL), and a region constructs a
 * document each time it decodes one it holds encoded: a tenth of its CPU
 * while it catches up after a partition. The pool is filled from the same
 * generator (`randomFillSync`) a few thousand bytes at a time, and each
 * byte is handed out once.
 *
 * Yjs binds the function when it is first imported, so this module must be
 * evaluated before Yjs: the process entry imports it first. Anything else
 * (other array types, larger draws) goes to Node's own function.
 */
import { randomFillSync, webcrypto } from 'node:crypto';

const POOL_BYTES = 4096;
/** Larger draws are not worth pooling. */
const MAX_POOLED_BYTES = 64;

type RandomValues = typeof webcrypto.getRandomValues;
const unpooled: RandomValues = webcrypto.getRandomValues.bind(webcrypto);
const pool = new Uint8Array(POOL_BYTES);
let used = POOL_BYTES;

const pooled = (<T extends Parameters<RandomValues>[0]>(array: T): T => {
  if (!(array instanceof Uint32Array) || array.byteLength > MAX_POOLED_BYTES) return unpooled(array);
  if (used + array.byteLength > POOL_BYTES) {
    randomFillSync(pool);
    used = 0;
  }
  new Uint8Array(array.buffer, array.byteOffset, array.byteLength).set(pool.subarray(used, used + array.byteLength));
  used += array.byteLength;
  return array;
}) as RandomValues;

webcrypto.getRandomValues = pooled;
