/**
 * Updates a document holds back until what they depend on arrives. Out of
 * order delivery makes that common and short; but an entry that depends on
 * changes no region holds (a faulty peer's) waits for good, and keeps
 * `pendingDocs` above 0, and `agree` false, at every region it reaches.
 *
 * While updates wait, anti-entropy asks every peer about the document
 * (AntiEntropy.start); a peer answers with what it holds beyond this
 * region. Once the answer of every configured peer, merged, has left the
 * very same updates held back, no region holds anything they wait for; and
 * no honest region will make it later: a change is made before anything
 * that depends on it, and this region held the dependent updates before it
 * asked. So they are let go of (Documents.dropPending), logged and counted.
 * One peer down, or one answer that brings anything, and nothing is dropped.
 */
import type { Logger } from 'pino';
import type { DocKey, RegionId } from '../ids.js';
import type { Documents } from '../docs/types.js';
import { setNewest } from '../newest.js';

/** Documents followed at once, at most (each holds a string and a few peer names). */
const MAX_FOLLOWED = 4096;

export interface HeldBackOptions {
  /** Every configured peer. */
  peers(): Iterable<RegionId>;
  documents: Pick<Documents, 'dropPending'>;
  logger: Logger;
  /** A document's held-back updates were dropped. */
  dropped(doc: DocKey): void;
}

export class HeldBack {
  /** Per document, what it held back when asked, and the peers whose answers left exactly that. */
  private readonly answered = new Map<DocKey, { mark: string; peers: Set<RegionId> }>();

  constructor(private readonly o: HeldBackOptions) {}

  /** Whether `peer`'s answer about `doc` already left `mark` held back (and nothing was let go of since). */
  answeredBy(doc: DocKey, mark: string, peer: RegionId): boolean {
    const seen = this.answered.get(doc);
    return seen?.mark === mark && seen.peers.has(peer);
  }

  /** `peer`'s answer about `doc`, merged, left `mark` held back (see AntiEntropyPort.heldBackStill). */
  stillHeldBack(doc: DocKey, mark: string, peer: RegionId): void {
    let seen = this.answered.get(doc);
    if (seen?.mark !== mark) setNewest(this.answered, doc, (seen = { mark, peers: new Set() }), MAX_FOLLOWED);
    seen.peers.add(peer);
    for (const p of this.o.peers()) if (!seen.peers.has(p)) return;
    this.answered.delete(doc);
    this.o.documents.dropPending(doc, mark).then(
      (dropped) => {
        if (!dropped) return;
        this.o.logger.error(
          { doc, mark, peers: [...seen.peers] },
          'updates of this document waited for changes no region holds (every peer was asked); let go of them. A peer sent an entry it could not have made: check the peers\' versions and logs',
        );
        this.o.dropped(doc);
      },
      (err: unknown) => this.o.logger.warn({ err, doc }, 'letting go of updates that wait for changes no region holds failed; will try again'),
    );
  }
}
