/**
 * The jobs waiting for the write path's next group commit, in two lines:
 * this region's own writes, and what peers sent. Each commit takes every
 * local write first (bounded by their JSON nodes), then peer work (a little
 * beside local writes, and of a backlog only while the catch-up pacer
 * allows; much when there are none) for as long as the turn's budget lasts
 * (see Documents), so that a region catching up with its peers keeps
 * serving its clients and one commit never holds the event loop long.
 */
import type { BackgroundPacer } from '../pacer.js';
import type { Job } from './stage.js';

/** Most local writes staged into one group commit. */
const MAX_LOCAL_JOBS = 1024;
/** Most log entries and document merges from peers staged into one group commit (at least one job). */
const MAX_PEER_UNITS = 1024;
/**
 * Most peer units in a commit that also carries local writes. A client's
 * write waits for the commit in flight and then for its own; keeping its own
 * small keeps a catching-up region's write latency near its steady state,
 * while commits with no local write still take large steps through the backlog.
 */
const PEER_UNITS_BESIDE_LOCAL = 16;
/**
 * Most peer units in a commit without local writes while clients write
 * (see BackgroundPacer): a client's write that arrives while it is on the
 * writer thread waits for all of it.
 */
const PEER_UNITS_WHILE_CLIENTS_WRITE = 32;

export class JobQueue {
  /** Writes of this region's clients, first in every commit. */
  private local: Job[] = [];
  /** Entries, states and floors from peers, in arrival order. Their order matters (sequence numbers). */
  private peers: Job[] = [];
  /** The peer work queued, in units (see {@link unitsOf}). */
  private peerUnits = 0;
  /**
   * @param maxNodes most JSON nodes of local writes in one commit (`limits.maxWriteNodes`)
   * @param pacer told of every local write
   */
  constructor(
    private readonly maxNodes: number,
    private readonly pacer: BackgroundPacer,
  ) {}

  /** Is a local write waiting? */
  get hasLocal(): boolean {
    return this.local.length > 0;
  }

  /** More peer work is queued than one commit takes: a backlog (a catch-up) rather than live replication. */
  get backlogged(): boolean {
    return this.peerUnits > MAX_PEER_UNITS;
  }

  get size(): number {
    return this.local.length + this.peers.length;
  }

  push(job: Job): void {
    if (job.kind === 'local') {
      this.pacer.clientWrote();
      this.local.push(job);
    } else {
      this.peers.push(job);
      this.peerUnits += unitsOf(job);
    }
  }

  /** The local writes of the next commit. Several of the largest go to consecutive turns, not into one long turn. */
  takeLocal(): Job[] {
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

  /** The peer job {@link takePeer} would take next, left queued. */
  peekPeer(): Job | undefined {
    return this.peers[0];
  }

  /**
   * The next peer job for a commit that holds `units` of peer work so far
   * (and local writes, if `besideLocal`); undefined when none, or when it is full.
   */
  takePeer(units: number, besideLocal: boolean): Job | undefined {
    // A backlog (more queued than one commit beside local writes takes) is
    // paced beside local writes too: while clients write, nearly every commit
    // carries some, so unpaced it would be most of a catch-up. What fits in
    // one commit is live replication keeping up, and rides along.
    if (besideLocal && units === 0 && this.peerUnits > PEER_UNITS_BESIDE_LOCAL && this.pacer.wait() > 0) return undefined;
    const most = besideLocal ? PEER_UNITS_BESIDE_LOCAL : this.pacer.clientsActive() ? PEER_UNITS_WHILE_CLIENTS_WRITE : MAX_PEER_UNITS;
    if (units >= most) return undefined;
    const job = this.peers.shift();
    if (job !== undefined) this.peerUnits -= unitsOf(job);
    return job;
  }
}

/** How much peer work a job is: its entries, or one. */
export function unitsOf(job: Job): number {
  return job.kind === 'remote' ? Math.max(1, job.entries.length) : 1;
}
