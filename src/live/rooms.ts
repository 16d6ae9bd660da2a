/**
 * The open rooms of a region: which live clients watch which document, the
 * bounds on how many there may be, and the fan-out of what happens to a
 * document to its clients. Committed changes (local writes of any kind,
 * replicated entries) arrive from `Documents.onCommitted`, after they are
 * durable, so a client never sees an update the region could still lose.
 */
import type { CommittedEntry, StateChange } from '../docs/types.js';
import { MeridianError } from '../errors.js';
import { encodeVersion } from '../docs/token.js';
import type { DocKey, RegionId, VersionVector } from '../ids.js';
import type { AwarenessRelay } from '../replication/types.js';
import { updateMessage, versionMessage } from './messages.js';
import { MAX_REGION_PRESENCE_BYTES, PRESENCE_IDS_PER_CLIENT, Room, type PresenceBudget, type PresenceRefusal, type RoomMember } from './room.js';

/** A member that may also want to hear the version token of each commit. */
export interface LiveMember extends RoomMember {
  /** Whether the client asked for meridian-version messages (`?versions=1`). */
  readonly wantsVersions: boolean;
  /** Ends the connection with the refusal's close code. */
  close(err: MeridianError): void;
}

export interface RoomsOptions {
  /** Live connections one document may have in this region. */
  maxPerDoc: number;
  /** Live connections this region may have. */
  maxTotal: number;
  /** Awareness to and from the peers; absent in a region without them. */
  relay?: AwarenessRelay;
  /** The region's version vector, read after a commit. */
  versionVector: () => VersionVector;
  /** The document's whole durable state as a Yjs update (`Documents.readYjs`); null if unknown. */
  stateOf: (doc: DocKey) => Uint8Array | null;
  /** Presence relayed by `peer` was dropped: it would have held more ids in a room than its clients could. */
  onPeerPresenceDropped?: (peer: RegionId) => void;
}

/** Why a connection may not open now; null when it may. */
export type Admission = null | 'region_full' | 'document_full';

export class Rooms {
  private readonly rooms = new Map<DocKey, Room<LiveMember>>();
  private total = 0;
  private readonly presence: PresenceBudget = { used: 0, max: MAX_REGION_PRESENCE_BYTES };
  private readonly stopRelay: () => void;

  constructor(private readonly o: RoomsOptions) {
    this.stopRelay = o.relay?.onAwareness((doc, update, from) => this.fromPeer(doc, update, from)) ?? (() => undefined);
  }

  /** Live connections open in this region. */
  connections(): number {
    return this.total;
  }

  /** Whether one more client of `doc` fits the bounds. */
  admission(doc: DocKey): Admission {
    if (this.total >= this.o.maxTotal) return 'region_full';
    if ((this.rooms.get(doc)?.members.size ?? 0) >= this.o.maxPerDoc) return 'document_full';
    return null;
  }

  /** Adds a client to its document's room (opened on first use). */
  join(doc: DocKey, member: LiveMember): Room<LiveMember> {
    let room = this.rooms.get(doc);
    if (!room) {
      room = new Room<LiveMember>(doc, (d, update) => this.o.relay?.relayAwareness(d, update), this.o.maxPerDoc * PRESENCE_IDS_PER_CLIENT, this.presence);
      this.rooms.set(doc, room);
    }
    room.join(member);
    this.total++;
    return room;
  }

  /** Removes a client; the room closes with its last one. */
  leave(room: Room<LiveMember>, member: LiveMember): void {
    if (!room.members.has(member)) return;
    room.leave(member);
    this.total--;
    if (room.members.size === 0) {
      room.close();
      this.rooms.delete(room.doc);
    }
  }

  /** Sends each committed update to the clients of its document, then the version token. */
  committed(entries: readonly CommittedEntry[]): void {
    const touched = new Set<Room<LiveMember>>();
    for (const entry of entries) {
      const room = this.rooms.get(entry.doc);
      if (!room) continue;
      // The client that wrote it holds it: not sent back.
      room.broadcast(updateMessage(entry.update), entry.source as LiveMember | null ?? undefined);
      touched.add(room);
    }
    if (touched.size === 0) return;
    const version = versionMessage(encodeVersion(this.o.versionVector()));
    for (const room of touched) {
      for (const member of room.members) if (member.wantsVersions) member.send(version);
    }
  }

  /**
   * Tells the clients of documents changed by state (repair, catch-up, a
   * conflict replace; `Documents.onStateChanged`). A merge sends what it
   * added (a region keeps no record of what each client has, but every
   * client of the room was sent all the document held before), or the whole
   * state when the document held updates waiting for missing dependencies
   * after it: encoding a large document for every repair of it would hold
   * the region, and send each client megabytes it holds already. A replace ends every connection of the
   * document with `document_replaced` (4410): their Y.Docs hold the losing
   * content under the winning one's ids, which no update can correct.
   */
  stateChanged(changes: readonly StateChange[]): void {
    for (const { doc, replaced, added } of changes) {
      const room = this.rooms.get(doc);
      if (!room) continue;
      if (replaced) {
        const err = new MeridianError('document_replaced', 'a peer region\'s state replaced this document (a content conflict): open it again with a new Y.Doc');
        for (const member of [...room.members]) member.close(err);
        continue;
      }
      if (added !== null) {
        for (const update of added) room.broadcast(updateMessage(update));
        continue;
      }
      const state = this.o.stateOf(doc);
      if (state) room.broadcast(updateMessage(state));
    }
  }

  /** Closes every room (the region is stopping); members are closed by their connections. */
  close(): void {
    this.stopRelay();
    for (const room of this.rooms.values()) room.close();
    this.rooms.clear();
  }

  private fromPeer(doc: DocKey, update: Uint8Array, from: RegionId): void {
    // Presence of a document nobody here watches is of no use: dropped.
    const room = this.rooms.get(doc);
    if (!room) return;
    let refused: PresenceRefusal | null;
    try {
      refused = room.applyFromPeer(from, update);
    } catch {
      // Malformed presence from a peer changes nothing; the frame's size was bounded by the codec.
      return;
    }
    if (refused !== null) this.o.onPeerPresenceDropped?.(from);
  }
}
