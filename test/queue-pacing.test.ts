/**
 * The write path's queue under the catch-up pacer: a backlog of peer work
 * that rides along with clients' writes is held to the pacer's share like
 * peer work committed alone (or a region catching up while its clients
 * write back to back applies most of the backlog beside their writes,
 * unpaced), while live replication that fits in one commit is never held.
 */
import { describe, expect, it } from 'vitest';
import { docKey, type RegionId } from '../src/ids.js';
import { BackgroundPacer } from '../src/pacer.js';
import { JobQueue } from '../src/docs/queue.js';
import type { Job } from '../src/docs/stage.js';
import type { NewLogEntry } from '../src/storage/types.js';

const noop = (): void => undefined;
const local = (): Job => ({ kind: 'local', doc: docKey('c', 'd'), mutate: () => true, nodes: 1, resolve: noop, reject: noop });
/** A job of `n` entries from a peer (their content is not looked at here). */
const remote = (n: number): Job => ({
  kind: 'remote', entries: Array.from({ length: n }, () => ({}) as NewLogEntry), from: 'eu-west' as RegionId, resolve: noop, reject: noop,
});
/** A backlog: more than one commit beside local writes takes. */
const pushBacklog = (queue: JobQueue): void => {
  for (let i = 0; i < 4; i++) queue.push(remote(16));
};
const overdrawn = (): BackgroundPacer => {
  const pacer = new BackgroundPacer(0.2);
  pacer.clientWrote();
  pacer.spent(20); // 15 ms past the burst: 75 ms at a fifth share
  expect(pacer.wait()).toBeGreaterThan(0);
  return pacer;
};

describe('peer work beside local writes', () => {
  it('rides along while the pacer has budget', () => {
    const queue = new JobQueue(1000, new BackgroundPacer(0.2));
    queue.push(local());
    pushBacklog(queue);
    expect(queue.takeLocal()).toHaveLength(1);
    expect(queue.takePeer(0, true)).toBeDefined();
  });

  it('of a backlog waits while clients write and the pacer is overdrawn, and is taken again once it has earned its turn', async () => {
    const queue = new JobQueue(1000, overdrawn());
    queue.push(local());
    pushBacklog(queue);
    expect(queue.takeLocal()).toHaveLength(1);
    expect(queue.takePeer(0, true)).toBeUndefined();
    expect(queue.size).toBe(4);
    await new Promise((resolve) => setTimeout(resolve, 100));
    queue.push(local());
    expect(queue.takeLocal()).toHaveLength(1);
    expect(queue.takePeer(0, true)).toBeDefined();
  });

  it('that fits in one commit (live replication) is taken even when the pacer is overdrawn', () => {
    const queue = new JobQueue(1000, overdrawn());
    queue.push(local());
    queue.push(remote(10));
    queue.push(remote(6));
    expect(queue.takeLocal()).toHaveLength(1);
    expect(queue.takePeer(0, true)).toBeDefined();
    expect(queue.takePeer(10, true)).toBeDefined();
    expect(queue.size).toBe(0);
  });

  it('counts what it takes: once a backlog is worked off to one commit, the rest rides along', () => {
    const queue = new JobQueue(1000, overdrawn());
    pushBacklog(queue);
    for (let i = 0; i < 3; i++) expect(queue.takePeer(0, false)).toBeDefined();
    queue.push(local());
    expect(queue.takeLocal()).toHaveLength(1);
    expect(queue.takePeer(0, true)).toBeDefined();
  });

  it('is not held here in a commit without local writes (the write path waits before such a commit)', () => {
    const queue = new JobQueue(1000, overdrawn());
    pushBacklog(queue);
    expect(queue.takePeer(0, false)).toBeDefined();
  });
});
