/**
 * The jobs waiting for the write path's next group commit, in two lines:
 * this region's own writes, and what peers sent. Each commit takes every
 * local write first (bounded by their JSON nodes) and then a bounded share
 * of peer work, so that a region catching up with its peers keeps serving
 * its clients, and one commit never holds the event loop long.
 */
import type { Job } from './stage.js';

/** Most local writes staged into one group commit. */
const MAX_LOCAL_JOBS = 1024;
/**
 * Log entries and document merges from peers staged into one group commit
 * (at least one job); more wait for the next turn.
 */
const PEER_UNITS_PER_COMMIT = 256;

export class JobQueue {
  /** Writes of this region's clients, first in every commit. */
  private local: Job[] = [];
  /** Entries, states and floors from peers, in arrival order. Their order matters (sequence numbers). */
  private peers: Job[] = [];

  /** @param maxNodes most JSON nodes of local writes in one commit (`limits.maxWriteNodes`) */
  constructor(private readonly maxNodes: number) {}

  get size(): number {
    return this.local.length + this.peers.length;
  }

  push(job: Job): void {
    (job.kind === 'local' ? this.local : this.peers).push(job);
  }

  /** The jobs of the next commit, removed from the queue. */
  next(): Job[] {
    return [...this.takeLocal(), ...this.takeFromPeers()];
  }

  /** Several of the largest writes go to consecutive turns, not into one long turn. */
  private takeLocal(): Job[] {
    let nodes = 0;
    let take = 0;
    for (const job of this.local) {
      const jobNodes = job.kind === 'local' ? job.nodes : 0;
      if (take > 0 && (take >= MAX_LOCAL_JOBS || nodes + jobNodes > this.maxNodes)) break;
      nodes += jobNodes;
      take++;
    }
    return this.local.splice(0, take);
  }

  private takeFromPeers(): Job[] {
    let units = 0;
    let take = 0;
    for (const job of this.peers) {
      if (take > 0 && units >= PEER_UNITS_PER_COMMIT) break;
      units += job.kind === 'remote' ? Math.max(1, job.entries.length) : 1;
      take++;
    }
    return this.peers.splice(0, take);
  }
}
