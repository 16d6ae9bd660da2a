/**
 * Following one write from its acknowledgement to its visibility at the
 * other regions, with `meridian-after` naming that write alone, so the
 * answer comes as soon as the observing region has applied it.
 */
import type { WriterId } from '../src/ids.js';
import { decodeVersion, encodeVersion } from '../src/docs/token.js';
import { AFTER_HEADER, WAIT_HEADER } from '../src/contract.js';
import { sleep, type BenchCluster } from './cluster.js';
import type { Latency } from './stats.js';

/** The writer id of each region, as `/v1/sync` reports it. */
export interface Follower {
  writers: Map<string, WriterId>;
}

export async function createFollower(bench: BenchCluster): Promise<Follower> {
  const all = await Promise.all(bench.names.map(async (n) => [n, (await bench.sync(n)).writer as WriterId] as const));
  return { writers: new Map(all) };
}

const WAIT_MS = 30_000;

/**
 * Called right after `origin` acknowledged a write of `doc` with `ackBody`;
 * records, for each other region, the time until it served the write
 * (`lag`) and the time of a plain GET sent at the same moment
 * (`observerGet`). Resolves to the number of regions that did not serve it
 * within the wait.
 */
export async function followWrite(
  bench: BenchCluster,
  follower: Follower,
  origin: string,
  doc: string,
  ackBody: string,
  rec: { lag: Latency; observerGet: Latency },
): Promise<number> {
  const acked = performance.now();
  const writer = follower.writers.get(origin);
  if (!writer) throw new Error(`unknown writer of ${origin}`);
  const seq = decodeVersion((JSON.parse(ackBody) as { version: string }).version).get(writer);
  if (seq === undefined) throw new Error(`the acknowledgement of ${origin} does not name its own writer`);
  const token = encodeVersion(new Map([[writer, seq]]));
  const missed = await Promise.all(bench.names.filter((n) => n !== origin).map(async (observer) => {
    const client = bench.observer(observer);
    const plain = client.request(`/v1/docs/${doc}`).then(
      () => rec.observerGet.record(performance.now() - acked),
      () => undefined,
    );
    try {
      const r = await client.request(`/v1/docs/${doc}`, {
        headers: { [AFTER_HEADER]: token, [WAIT_HEADER]: String(WAIT_MS) }, timeoutMs: WAIT_MS + 5000,
      });
      if (r.status !== 200) return 1;
      rec.lag.record(performance.now() - acked);
      return 0;
    } catch {
      // A failed follow-up says nothing about replication; it counts as unseen.
      return 1;
    } finally {
      await plain;
    }
  }));
  return missed.reduce<number>((a, b) => a + b, 0);
}

/** Waits until every region reports every peer `up`. */
export async function waitLinksUp(bench: BenchCluster, timeoutMs: number): Promise<number> {
  const start = performance.now();
  while (performance.now() - start < timeoutMs) {
    const all = await Promise.all(bench.names.map((n) => bench.sync(n))).catch(() => null);
    if (all?.every((s) => s.peers.length === bench.names.length - 1 && s.peers.every((p) => p.state === 'up'))) {
      return performance.now() - start;
    }
    await sleep(50);
  }
  throw new Error(`links not up within ${timeoutMs} ms`);
}
