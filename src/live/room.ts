/**
 * One open document's live clients in this region, and their presence.
 *
 * Presence is held by a y-protocols `Awareness` per room, so it expires as
 * clients expect (a state not renewed for 30 s is removed) and merges by
 * each state's clock. It is never stored and never logged: it lives here,
 * in memory, while the room has clients, and is relayed to the peers whose
 * links are up (see `AwarenessRelay`); nothing is queued for a link that is down.
 */
import * as decoding from 'lib0/decoding';
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

/**
 * Presence ids one live client may hold. y-websocket announces one (its
 * Y.Doc's client id), two for a moment when it replaces its Y.Doc. Without
 * a bound one message of 64 KB could announce thousands, each kept 30 s,
 * sent to every client of the document and relayed to every region.
 */
export const PRESENCE_IDS_PER_CLIENT = 4;

/**
 * Bytes of presence state a room holds at most, all ids together. Each
 * client's is bounded (a message of 64 KiB, four ids), but a document's
 * hundreds of clients could hold 128 MB, all of it sent to every joiner.
 * A cursor and a name take a few hundred bytes.
 */
export const MAX_ROOM_PRESENCE_BYTES = 4 * 1024 * 1024;

/**
 * Bytes of presence state a region holds at most, all rooms together.
 * Each room's is bounded, but one caller's connections (a quarter of the
 * region's) spread over a few hundred documents could fill as many rooms,
 * and a state's JSON parsed takes up to about 11 times its length of heap
 * (`[[],[],...]`). Thousands of editors' cursors and names take a few MB.
 */
export const MAX_REGION_PRESENCE_BYTES = 32 * 1024 * 1024;

/** The presence bytes all of a region's rooms hold, shared by them. */
export interface PresenceBudget {
  used: number;
  readonly max: number;
}

/** Why an awareness update was not applied. */
export type PresenceRefusal = 'ids' | 'bytes';

export class Room<M extends RoomMember = RoomMember> {
  readonly members = new Set<M>();
  private readonly awareness: awarenessProtocol.Awareness;
  /** Who announced each presence id now held: a member, or the peer that relayed it. */
  private readonly owner = new Map<number, M | RegionId>();
  /** The presence ids each member and each peer holds (the inverse of `owner`). */
  private readonly held = new Map<M | RegionId, Set<number>>();
  /**
   * {@link statesMessage} as last encoded, until presence changes (undefined:
   * not encoded since). Every join and every query is answered with all the
   * room's states, up to megabytes: encoded once, one buffer for all.
   */
  private encodedStates: Uint8Array | null | undefined = undefined;
  /** Bytes of each held presence id's state (as encoded), and their sum. */
  private readonly stateBytes = new Map<number, number>();
  private totalStateBytes = 0;

  /**
   * @param maxPeerIds presence ids one peer may hold here: as many as its own
   *   clients of the document could (`limits.liveConnectionsPerDoc` times
   *   {@link PRESENCE_IDS_PER_CLIENT})
   */
  constructor(
    readonly doc: DocKey,
    private readonly relay: RelayToPeers,
    private readonly maxPeerIds: number,
    private readonly budget: PresenceBudget = { used: 0, max: MAX_REGION_PRESENCE_BYTES },
  ) {
    // The Y.Doc only gives the Awareness a client id; the region itself has no presence.
    this.awareness = new awarenessProtocol.Awareness(new Y.Doc());
    this.awareness.setLocalState(null);
    this.awareness.on('update', (change: AwarenessChange, origin: unknown) => this.onAwarenessChange(change, origin));
  }

  join(member: M): void {
    this.members.add(member);
  }

  /** Removes a member and, for everyone else here and at the peers, the presence it announced. */
  leave(member: M): void {
    this.members.delete(member);
    const ids = this.held.get(member);
    if (ids && ids.size > 0) awarenessProtocol.removeAwarenessStates(this.awareness, [...ids], DISCONNECT);
    this.held.delete(member);
  }

  /** Sends bytes to every member but `except`. */
  broadcast(bytes: Uint8Array, except?: M): void {
    for (const member of this.members) if (member !== except) member.send(bytes);
  }

  /**
   * Applies a member's awareness update (y-protocols encoding). Returns why
   * not, applying nothing, when it would leave the member holding more than
   * {@link PRESENCE_IDS_PER_CLIENT} presence ids, or names the room's own
   * ('ids'), or the room more than {@link MAX_ROOM_PRESENCE_BYTES} ('bytes');
   * null once applied.
   * @throws Error when the update does not decode.
   */
  applyFromMember(member: M, update: Uint8Array): PresenceRefusal | null {
    return this.apply(member, update, PRESENCE_IDS_PER_CLIENT, member);
  }

  /**
   * Applies an awareness update relayed by a peer, as {@link applyFromMember}
   * does, holding the peer to `maxPeerIds` ids here.
   * @throws Error when the update does not decode.
   */
  applyFromPeer(peer: RegionId, update: Uint8Array): PresenceRefusal | null {
    const origin: PeerOrigin = { peer };
    return this.apply(peer, update, this.maxPeerIds, origin);
  }

  private apply(owner: M | RegionId, update: Uint8Array, most: number, origin: M | PeerOrigin): PresenceRefusal | null {
    const entries = announcedStates(update);
    const refused = this.refusal(owner, entries, most);
    if (refused !== null) return refused;
    awarenessProtocol.applyAwarenessUpdate(this.awareness, update, origin);
    // An id set to null that held no state left only its clock behind, and no event.
    for (const { id, stateBytes } of entries) if (stateBytes === null && !this.awareness.states.has(id)) this.forgetClock(id);
    return null;
  }

  /**
   * Whether `owner` would hold more than `most` ids, or the room or the
   * region more than their bytes, once the update's `entries` are applied.
   * Every id it names that it does not hold counts, null states too: each
   * one leaves a clock behind until it is forgotten, and a removal is sent
   * to every client and peer. Ids it hands back are not counted off; states
   * it replaces are. Bytes are counted as y-protocols will apply the
   * entries, in order, by their clocks: an entry it ignores (an older
   * clock, sent again) frees nothing, else a stale null for a large state
   * held would let a new large state in beside it, message after message;
   * an id named twice counts once, with the state it ends up holding.
   */
  private refusal(owner: M | RegionId, entries: readonly AnnouncedState[], most: number): PresenceRefusal | null {
    const holds = this.held.get(owner);
    const taken = new Set<number>();
    const after = new Map<number, HeldState>();
    for (const entry of entries) {
      const { id } = entry;
      // The room's own id: told to remove a state there, y-protocols keeps
      // it (and renews it every 15 s), held by no member and never expiring.
      if (id === this.awareness.clientID) return 'ids';
      if (holds?.has(id) !== true) taken.add(id);
      if ((holds?.size ?? 0) + taken.size > most) return 'ids';
      const now = after.get(id) ?? this.heldState(id);
      if (applies(now, entry)) after.set(id, { clock: entry.clock, stateBytes: entry.stateBytes });
      else after.set(id, now);
    }
    let delta = 0;
    for (const [id, { stateBytes }] of after) delta += (stateBytes ?? 0) - (this.stateBytes.get(id) ?? 0);
    if (delta <= 0) return null;
    return this.totalStateBytes + delta > MAX_ROOM_PRESENCE_BYTES || this.budget.used + delta > this.budget.max ? 'bytes' : null;
  }

  /** What presence id `id` holds now, as y-protocols reads it (an id it has never seen: clock 0). */
  private heldState(id: number): HeldState {
    const clock = this.awareness.meta.get(id)?.clock ?? 0;
    return { clock, stateBytes: this.awareness.states.has(id) ? (this.stateBytes.get(id) ?? 0) : null };
  }

  /** Every known presence state as one message, or null when there is none. */
  statesMessage(): Uint8Array | null {
    if (this.encodedStates !== undefined) return this.encodedStates;
    const clients = [...this.awareness.getStates().keys()];
    this.encodedStates = clients.length === 0 ? null : awarenessMessage(awarenessProtocol.encodeAwarenessUpdate(this.awareness, clients));
    return this.encodedStates;
  }

  /** Stops the expiry timer; the room is forgotten, and its presence bytes given back to the region. */
  close(): void {
    this.awareness.destroy();
    this.budget.used -= this.totalStateBytes;
    this.totalStateBytes = 0;
    this.stateBytes.clear();
  }

  private onAwarenessChange({ added, updated, removed }: AwarenessChange, origin: unknown): void {
    // Any update, a renewal too (its clock is in the message).
    this.encodedStates = undefined;
    const member = this.isMember(origin) ? origin : undefined;
    const announcer = member ?? (isPeerOrigin(origin) ? origin.peer : undefined);
    // An id named twice in one update can be in two lists (removed, then
    // given a state again): what it holds now decides who holds it, else a
    // state would stay with nobody to remove it and no clock to expire it.
    const changed = [...new Set([...added, ...updated, ...removed])];
    if (changed.length === 0) return;
    const states = this.awareness.getStates();
    const gone: number[] = [];
    for (const id of changed) {
      const state: unknown = states.get(id);
      if (state === undefined) {
        this.own(id, undefined);
        gone.push(id);
      } else if (announcer !== undefined) {
        this.own(id, announcer);
      }
      this.countBytes(id, state === undefined ? 0 : stateLength(state));
    }
    const update = awarenessProtocol.encodeAwarenessUpdate(this.awareness, changed);
    this.broadcast(awarenessMessage(update), member);
    // Local changes go to the peers; a peer's own changes and expiries (every
    // region expires states on its own clock) do not go back out.
    if (member !== undefined || origin === DISCONNECT) this.relay(this.doc, update);
    // After encoding, which reads them.
    for (const id of gone) this.forgetClock(id);
  }

  /**
   * Forgets the clock y-protocols keeps for an id that holds no state: it
   * keeps one for every id ever named, for as long as the room is open, so
   * a long-lived room of changing editors, or a client naming new ids with
   * null states, would grow it without end. Forgotten, an older update of
   * the id still on its way could show its state again, until it expires.
   */
  private forgetClock(id: number): void {
    if (id !== this.awareness.clientID) this.awareness.meta.delete(id);
  }

  /** Records the bytes of presence id `id`'s state (0: it holds none). */
  private countBytes(id: number, bytes: number): void {
    const delta = bytes - (this.stateBytes.get(id) ?? 0);
    this.totalStateBytes += delta;
    this.budget.used += delta;
    if (bytes > 0) this.stateBytes.set(id, bytes);
    else this.stateBytes.delete(id);
  }

  private isMember(origin: unknown): origin is M {
    return typeof origin === 'object' && origin !== null && this.members.has(origin as M);
  }

  /** Records who holds presence id `id` now (undefined: nobody, it was removed). */
  private own(id: number, owner: M | RegionId | undefined): void {
    const before = this.owner.get(id);
    if (before === owner) return;
    if (before !== undefined) {
      const ids = this.held.get(before);
      ids?.delete(id);
      if (ids?.size === 0) this.held.delete(before);
    }
    if (owner === undefined) {
      this.owner.delete(id);
      return;
    }
    this.owner.set(id, owner);
    let ids = this.held.get(owner);
    if (!ids) this.held.set(owner, (ids = new Set()));
    ids.add(id);
  }
}

function isPeerOrigin(origin: unknown): origin is PeerOrigin {
  return typeof origin === 'object' && origin !== null && typeof (origin as Partial<PeerOrigin>).peer === 'string';
}

/** What an id holds: its clock, and the length of its state's JSON (null: no state). */
interface HeldState {
  clock: number;
  stateBytes: number | null;
}

/** One entry of an awareness update: the id, its clock, and the length of its state's JSON (null: it removes the id's state). */
interface AnnouncedState extends HeldState {
  id: number;
}

/** Whether y-protocols' `applyAwarenessUpdate` applies `entry` to an id holding `held`, or ignores it. */
function applies(held: HeldState, entry: AnnouncedState): boolean {
  return held.clock < entry.clock || (held.clock === entry.clock && entry.stateBytes === null && held.stateBytes !== null);
}

/**
 * The entries of an awareness update (y-protocols encoding). Each state is
 * parsed here as y-protocols will parse it: one that does not parse refuses
 * the whole update before any of it is applied (y-protocols would apply
 * the entries before it, and keep their states outside every count). Its
 * length is the one the room counts once it holds the state (see
 * `Room.countBytes`), the JSON as sent on: the JSON as received may be
 * shorter (`1e20` is sent on as `100000000000000000000`).
 * @throws Error when it does not decode (each entry takes at least three bytes, so this ends).
 */
function announcedStates(update: Uint8Array): AnnouncedState[] {
  const decoder = decoding.createDecoder(update);
  const states: AnnouncedState[] = [];
  for (let n = decoding.readVarUint(decoder); n > 0; n--) {
    const id = decoding.readVarUint(decoder);
    const clock = decoding.readVarUint(decoder);
    const state: unknown = JSON.parse(decoding.readVarString(decoder));
    states.push({ id, clock, stateBytes: state === null ? null : stateLength(state) });
  }
  return states;
}

/** The length of a state's JSON as the room sends it on, and counts it. */
function stateLength(state: unknown): number {
  return JSON.stringify(state).length;
}

interface AwarenessChange {
  added: number[];
  updated: number[];
  removed: number[];
}
