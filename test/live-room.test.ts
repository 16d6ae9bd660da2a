/**
 * A room's presence as joiners get it: every join and every query is
 * answered with all the room's states, encoded once until presence changes
 * (a room of hundreds of clients holds megabytes of it).
 */
import * as awarenessProtocol from 'y-protocols/awareness';
import * as decoding from 'lib0/decoding';
import * as encoding from 'lib0/encoding';
import * as Y from 'yjs';
import { describe, expect, it } from 'vitest';
import { MAX_ROOM_PRESENCE_BYTES, Room, type PresenceBudget, type RoomMember } from '../src/live/room.js';
import { docKey } from '../src/ids.js';

/** A client's presence update announcing `state` under its doc's client id, at its `clock`-th change. */
function presence(clientId: number, state: Record<string, unknown>, clock = 1): Uint8Array {
  const doc = new Y.Doc();
  doc.clientID = clientId;
  const awareness = new awarenessProtocol.Awareness(doc);
  for (let i = 0; i < clock; i++) awareness.setLocalState(state);
  const update = awarenessProtocol.encodeAwarenessUpdate(awareness, [clientId]);
  awareness.destroy();
  return update;
}

/** The states a room's message carries, as a fresh client's awareness would hold them. */
function statesIn(message: Uint8Array): Map<number, unknown> {
  const decoder = decoding.createDecoder(message);
  decoding.readVarUint(decoder);
  const client = new awarenessProtocol.Awareness(new Y.Doc());
  client.setLocalState(null);
  awarenessProtocol.applyAwarenessUpdate(client, decoding.readVarUint8Array(decoder), 'room');
  const states = new Map(client.getStates());
  client.destroy();
  return states;
}

describe('a room\'s presence message', () => {
  it('is encoded once for every joiner until presence changes, and then holds the change', () => {
    const room = new Room<RoomMember>(docKey('notes', 'one'), () => undefined, 16);
    const a: RoomMember = { send: () => undefined };
    const b: RoomMember = { send: () => undefined };
    room.join(a);
    room.join(b);
    expect(room.statesMessage()).toBeNull();
    expect(room.applyFromMember(a, presence(11, { user: 'ann' }))).toBeNull();
    const first = room.statesMessage()!;
    expect(room.statesMessage()).toBe(first);
    expect(statesIn(first).get(11)).toEqual({ user: 'ann' });
    expect(room.applyFromMember(b, presence(12, { user: 'bob' }))).toBeNull();
    const second = room.statesMessage()!;
    expect(second).not.toBe(first);
    expect([...statesIn(second).entries()]).toEqual(expect.arrayContaining([[11, { user: 'ann' }], [12, { user: 'bob' }]]));
    room.leave(a);
    const third = room.statesMessage()!;
    expect(statesIn(third).has(11)).toBe(false);
    room.leave(b);
    expect(room.statesMessage()).toBeNull();
    room.close();
  });
});

describe('a room\'s presence', () => {
  it('holds at most its bytes in all: beyond, an update that grows it is refused; one that shrinks it, or a leave, makes room', () => {
    const room = new Room<RoomMember>(docKey('notes', 'one'), () => undefined, 16);
    const note = 'n'.repeat(60_000);
    const members = Array.from({ length: Math.ceil(MAX_ROOM_PRESENCE_BYTES / 60_000) + 1 }, (): RoomMember => ({ send: () => undefined }));
    let accepted = 0;
    let refusedAt = -1;
    members.forEach((m, i) => {
      room.join(m);
      const refused = room.applyFromMember(m, presence(100 + i, { note }));
      if (refused === null) accepted++;
      else if (refusedAt < 0) refusedAt = i;
    });
    expect(refusedAt).toBe(accepted);
    expect(accepted).toBe(Math.floor(MAX_ROOM_PRESENCE_BYTES / JSON.stringify({ note }).length));
    expect(room.applyFromMember(members[refusedAt]!, presence(100 + refusedAt, { note }))).toBe('bytes');
    // A member may shrink its own state however full the room is, and a leave makes room for another.
    expect(room.applyFromMember(members[0]!, presence(100, { note: 'short' }, 2))).toBeNull();
    expect(room.applyFromMember(members[refusedAt]!, presence(100 + refusedAt, { note }))).toBeNull();
    room.leave(members[1]!);
    expect(room.applyFromMember(members[refusedAt + 1]!, presence(100 + refusedAt + 1, { note }))).toBeNull();
    expect(statesIn(room.statesMessage()!).size).toBe(accepted + 1);
    room.close();
  });
});

/** An awareness update as y-protocols encodes one, with each entry's state JSON as given (not checked). */
function rawPresence(entries: [id: number, clock: number, json: string][]): Uint8Array {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, entries.length);
  for (const [id, clock, json] of entries) {
    encoding.writeVarUint(e, id);
    encoding.writeVarUint(e, clock);
    encoding.writeVarString(e, json);
  }
  return encoding.toUint8Array(e);
}

/** Ids whose clock the room's awareness keeps (y-protocols' `meta`). */
function clocksKept(room: Room<RoomMember>): number {
  return (room as unknown as { awareness: awarenessProtocol.Awareness }).awareness.meta.size;
}

describe('a room\'s presence against a hostile client', () => {
  it('keeps no clock for ids named with null states, and counts each such id against the client\'s bound', () => {
    const room = new Room<RoomMember>(docKey('notes', 'one'), () => undefined, 16);
    const sent: Uint8Array[] = [];
    const a: RoomMember = { send: () => undefined };
    const b: RoomMember = { send: (bytes) => void sent.push(bytes) };
    room.join(a);
    room.join(b);
    const before = clocksKept(room);
    // New ids set to null: applied (nothing to hold), no clock left behind, nothing sent to the others.
    expect(room.applyFromMember(a, rawPresence([[1001, 1, 'null'], [1002, 1, 'null']]))).toBeNull();
    expect(clocksKept(room)).toBe(before);
    // Again with a later clock: still nothing to remove, and nothing sent.
    expect(room.applyFromMember(a, rawPresence([[1001, 2, 'null'], [1002, 2, 'null']]))).toBeNull();
    expect(sent).toEqual([]);
    // Thousands in one message: refused whole, as thousands of states would be.
    const flood = Array.from({ length: 5000 }, (_, i): [number, number, string] => [2000 + i, 1, 'null']);
    expect(room.applyFromMember(a, rawPresence(flood))).toBe('ids');
    expect(clocksKept(room)).toBe(before);
    // A state given and removed leaves no clock either.
    expect(room.applyFromMember(a, presence(11, { user: 'ann' }))).toBeNull();
    expect(clocksKept(room)).toBe(before + 1);
    room.leave(a);
    expect(clocksKept(room)).toBe(before);
    room.close();
  });

  it('refuses, applying none of it, an update one of whose states does not parse', () => {
    const room = new Room<RoomMember>(docKey('notes', 'one'), () => undefined, 16);
    const a: RoomMember = { send: () => undefined };
    room.join(a);
    const before = clocksKept(room);
    expect(() => room.applyFromMember(a, rawPresence([[11, 1, JSON.stringify({ note: 'x'.repeat(60_000) })], [12, 1, '{']]))).toThrow();
    expect(room.statesMessage()).toBeNull();
    expect(clocksKept(room)).toBe(before);
    room.close();
  });

  it('holds the region\'s presence to its budget over all rooms, and a closed room gives its share back', () => {
    const budget: PresenceBudget = { used: 0, max: 100_000 };
    const one = new Room<RoomMember>(docKey('notes', 'one'), () => undefined, 16, budget);
    const two = new Room<RoomMember>(docKey('notes', 'two'), () => undefined, 16, budget);
    const a: RoomMember = { send: () => undefined };
    const b: RoomMember = { send: () => undefined };
    one.join(a);
    two.join(b);
    const note = 'n'.repeat(60_000);
    expect(one.applyFromMember(a, presence(11, { note }))).toBeNull();
    expect(two.applyFromMember(b, presence(12, { note }))).toBe('bytes');
    expect(two.applyFromMember(b, presence(12, { note: 'short' }))).toBeNull();
    one.leave(a);
    one.close();
    expect(budget.used).toBe(JSON.stringify({ note: 'short' }).length);
    expect(two.applyFromMember(b, presence(12, { note }, 2))).toBeNull();
    two.close();
    expect(budget.used).toBe(0);
  });
});
