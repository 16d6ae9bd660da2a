/**
 * One open document's live clients in this region, and their presence.
 *
 * Presence is held by a y-protocols `Awareness` per room, so it expires as
 * clients expect (a state not renewed for 30 s is removed) and merges by
 * each state's clock. It is never stored and never logged: it lives here,
 * in memory, while the room has clients, and is relayed to the peers whose
 * links are up (see `AwarenessRelay`); nothing is queued for a link that is down.
 */
import * as awarenessProtocol from 'y-protocols/awareness';
import * as Y from 'yjs';
import type { DocKey, RegionId } from '../ids.js';
import { awarenessMessage } from './messages.js';

/** What a room needs of a connection: somewhere to send bytes. */
export interface RoomMember {
  send(bytes: Uint8Array): void;
}

/** Where awareness changes of local clients go beyond this region (null: nowhere). */
export type RelayToPeers = (doc: DocKey, update: Uint8Array) => void;

/** Origins of awareness changes that are not a local client's own message. */
interface PeerOrigin { peer: RegionId }
const DISCONNECT = 'disconnect';

export class Room<M extends RoomMember = RoomMember> {
  readonly members = new Set<M>();
  private readonly awareness: awarenessProtocol.Awareness;
  /** The awareness client ids each member announced, removed when it leaves. */
  private readonly controlled = new Map<M, Set<number>>();

  constructor(readonly doc: DocKey, private readonly relay: RelayToPeers) {
    // The Y.Doc only gives the Awareness a client id; the region itself has no presence.
    this.awareness = new awarenessProtocol.Awareness(new Y.Doc());
    this.awareness.setLocalState(null);
    this.awareness.on('update', (change: AwarenessChange, origin: unknown) => this.onAwarenessChange(change, origin));
  }

  join(member: M): void {
    this.members.add(member);
    this.controlled.set(member, new Set());
  }

  /** Removes a member and, for everyone else here and at the peers, the presence it announced. */
  leave(member: M): void {
    this.members.delete(member);
    const ids = this.controlled.get(member);
    this.controlled.delete(member);
    if (ids && ids.size > 0) awarenessProtocol.removeAwarenessStates(this.awareness, [...ids], DISCONNECT);
  }

  /** Sends bytes to every member but `except`. */
  broadcast(bytes: Uint8Array, except?: M): void {
    for (const member of this.members) if (member !== except) member.send(bytes);
  }

  /**
   * Applies a member's awareness update (y-protocols encoding).
   * @throws Error when the update does not decode.
   */
  applyFromMember(member: M, update: Uint8Array): void {
    awarenessProtocol.applyAwarenessUpdate(this.awareness, update, member);
  }

  /** Applies an awareness update relayed by a peer; malformed ones are dropped by the caller. */
  applyFromPeer(peer: RegionId, update: Uint8Array): void {
    const origin: PeerOrigin = { peer };
    awarenessProtocol.applyAwarenessUpdate(this.awareness, update, origin);
  }

  /** Every known presence state as one message, or null when there is none. */
  statesMessage(): Uint8Array | null {
    const clients = [...this.awareness.getStates().keys()];
    if (clients.length === 0) return null;
    return awarenessMessage(awarenessProtocol.encodeAwarenessUpdate(this.awareness, clients));
  }

  /** Stops the expiry timer; the room is forgotten. */
  close(): void {
    this.awareness.destroy();
  }

  private onAwarenessChange({ added, updated, removed }: AwarenessChange, origin: unknown): void {
    const member = this.isMember(origin) ? origin : undefined;
    if (member) {
      const ids = this.controlled.get(member);
      for (const id of added) ids?.add(id);
      for (const id of removed) ids?.delete(id);
    }
    const changed = [...added, ...updated, ...removed];
    if (changed.length === 0) return;
    const update = awarenessProtocol.encodeAwarenessUpdate(this.awareness, changed);
    this.broadcast(awarenessMessage(update), member);
    // Local changes go to the peers; a peer's own changes and expiries (every
    // region expires states on its own clock) do not go back out.
    if (member !== undefined || origin === DISCONNECT) this.relay(this.doc, update);
  }

  private isMember(origin: unknown): origin is M {
    return typeof origin === 'object' && origin !== null && this.members.has(origin as M);
  }
}

interface AwarenessChange {
  added: number[];
  updated: number[];
  removed: number[];
}
