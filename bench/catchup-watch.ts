/**
 * Watching a region catch up after a heal, from outside: how each other
 * region sees it (its peer state and silence in their `/v1/sync`, polled),
 * when its first link is back, and when it holds a given version (a
 * `/v1/sync` request held with `meridian-after` until it does). All requests
 * go through the observer sockets, so they never queue behind the writes.
 */
import { AFTER_HEADER, WAIT_HEADER, type PeerStatus } from '../src/contract.js';
import { encodeVersion } from '../src/docs/token.js';
import type { VersionVector } from '../src/ids.js';
import { sleep, type BenchCluster } from './cluster.js';
import { round } from './stats.js';

/** The parts of a `/v1/sync` peer entry the watch reads. */
type PeerEntry = Pick<PeerStatus, 'region' | 'state' | 'lastSeenMs'>;

/** How one other region saw the catching-up region, from its link's first `up` after the heal on. */
export interface PeerView {
  observer: string;
  /** Heal → this region first reported the link up, ms. */
  firstUpMs: number | null;
  /** Polls after that first `up` that reported each state. */
  polls: Record<string, number>;
  /** First poll after the first `up` that reported `suspect` or `down`, ms from the heal. */
  firstNotUpMs: number | null;
  /** Longest silence (`lastSeenMs`) reported after the first `up`, ms: the worst heartbeat gap seen. */
  maxSilenceMs: number;
}

export interface Watch {
  /** Heal → the catching-up region first reported any link up, ms. */
  firstUpMs(): number | null;
  stop(): Promise<PeerView[]>;
}

const POLL_MS = 100;

/**
 * Polls `/v1/sync` of every region every 100 ms from `healedAt` on: the
 * catching-up region for its first link up, the others for their view of it.
 */
export function watchPeers(bench: BenchCluster, isolated: string, healedAt: number): Watch {
  let firstUp: number | null = null;
  let running = true;
  const views = new Map<string, PeerView>();
  const loops = bench.names.map(async (name) => {
    while (running) {
      const peers = await bench.observer(name).json<{ peers: PeerEntry[] }>('/v1/sync').then((s) => s.peers, () => null);
      const at = performance.now() - healedAt;
      if (peers && name === isolated) {
        if (firstUp === null && peers.some((p) => p.state === 'up')) firstUp = at;
      } else if (peers) {
        const entry = peers.find((p) => p.region === isolated);
        if (entry) observe(views, name, entry, at);
      }
      await sleep(POLL_MS);
    }
  });
  return {
    firstUpMs: () => (firstUp === null ? null : round(firstUp, 0)),
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return [...views.values()];
    },
  };
}

function observe(views: Map<string, PeerView>, observer: string, entry: PeerEntry, at: number): void {
  let view = views.get(observer);
  if (!view) {
    view = { observer, firstUpMs: null, polls: {}, firstNotUpMs: null, maxSilenceMs: 0 };
    views.set(observer, view);
  }
  if (view.firstUpMs === null) {
    if (entry.state === 'up') view.firstUpMs = round(at, 0);
    return;
  }
  view.polls[entry.state] = (view.polls[entry.state] ?? 0) + 1;
  if (entry.state !== 'up' && view.firstNotUpMs === null) view.firstNotUpMs = round(at, 0);
  view.maxSilenceMs = Math.max(view.maxSilenceMs, entry.lastSeenMs ?? 0);
}

/**
 * Resolves to the ms from `since` until region `name` has applied `vv`
 * (answered a `/v1/sync` held with `meridian-after`), or null after `timeoutMs`.
 */
export async function timeToVersion(
  bench: BenchCluster, name: string, vv: VersionVector, since: number, timeoutMs: number,
): Promise<number | null> {
  const headers = { [AFTER_HEADER]: encodeVersion(vv), [WAIT_HEADER]: '10000' };
  while (performance.now() - since < timeoutMs) {
    const r = await bench.observer(name).request('/v1/sync', { headers, timeoutMs: 15_000 }).catch(() => null);
    if (r?.status === 200) return round(performance.now() - since, 0);
    // 503 `lagging`: not yet within the wait; anything else (a refused poll): ask again shortly.
    if (r?.status !== 503) await sleep(50);
  }
  return null;
}
