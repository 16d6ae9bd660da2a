/**
 * The bound on the work one write may cause. Applying a JSON write to a Yjs
 * document costs time in proportion to its number of JSON nodes (an empty
 * object becomes a nested Y.Map), and nothing else in a write is as costly,
 * so a write is measured by counting its nodes before any Yjs work starts.
 */
import { MeridianError } from '../errors.js';
import type { Op } from './types.js';

/**
 * Default most JSON nodes per write (`limits.maxWriteNodes`). Empty objects
 * are the costliest node (each a nested Y.Map): a PUT of 5,000 of them takes
 * about 15 ms of Yjs work, and one replacing 5,000 with 5,000 others about
 * 30 ms; 10,000 took 40-57 ms (measured on a shared 2-core machine).
 */
export const DEFAULT_MAX_WRITE_NODES = 5_000;

/**
 * Counts the JSON nodes of `value`: every object, array and scalar,
 * the root included (so every object key is counted with its value). Stops
 * once the count exceeds `limit` and returns `limit + 1`. Iterative, so an
 * untrusted, deeply nested body cannot overflow the stack.
 */
export function countJsonNodes(value: unknown, limit: number): number {
  let count = 0;
  const stack: unknown[] = [value];
  while (stack.length > 0 && count <= limit) {
    const node = stack.pop();
    count++;
    if (Array.isArray(node)) {
      for (const item of node) stack.push(item);
    } else if (typeof node === 'object' && node !== null) {
      for (const item of Object.values(node)) stack.push(item);
    }
  }
  return Math.min(count, limit + 1);
}

/**
 * Nodes of a list of ops: one per key of its path (a path through maps that
 * do not exist yet creates one nested map per key, as an object of a JSON
 * write does), plus the nodes of its value.
 */
export function countOpNodes(ops: readonly Op[], limit: number): number {
  let count = 0;
  for (const op of ops) {
    count += Math.max(1, op.path.length) + ('value' in op ? countJsonNodes(op.value, limit) : 0);
    if (count > limit) return limit + 1;
  }
  return count;
}

/**
 * Throws `MeridianError('too_complex')` (413) when a write of `nodes` JSON
 * nodes exceeds `limit`. `what` names the write in the message.
 */
function assertWriteBudget(nodes: number, limit: number, what: string): void {
  if (nodes > limit) {
    throw new MeridianError(
      'too_complex',
      `${what} has more than ${limit} JSON nodes (objects, arrays and values); split it into smaller writes (limits.maxWriteNodes)`,
      { limit },
    );
  }
}

/** A JSON write, as its nodes are counted. */
export type JsonWrite = { kind: 'put' | 'patch'; value: unknown } | { kind: 'ops'; ops: readonly Op[] };

const WRITE_NAMES = { put: 'the document', patch: 'the patch', ops: 'the ops request' } as const;

/** The JSON nodes of `write`; throws `too_complex` (413) past `limit`. */
export function writeNodes(write: JsonWrite, limit: number): number {
  const nodes = write.kind === 'ops' ? countOpNodes(write.ops, limit) : countJsonNodes(write.value, limit);
  assertWriteBudget(nodes, limit, WRITE_NAMES[write.kind]);
  return nodes;
}
