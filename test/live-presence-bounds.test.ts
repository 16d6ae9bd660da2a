/**
 * A document's presence held to its bound against clients whose awareness
 * entries y-protocols will not apply as they read: a stale entry (an older
 * clock) changes nothing, so it frees nothing; an id named twice ends with
 * its last state. A client with a read token may send any of it. Real
 * region process, real sockets.
 */
import * as decoding from 'lib0/decoding';
import * as encoding from 'lib0/encoding';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { WebSocket } from 'ws';
import { WebsocketProvider } from 'y-websocket';
import * as Y from 'yjs';
import { QUERY_AWARENESS_BURST } from '../src/live/connection.js';
import { MAX_ROOM_PRESENCE_BYTES, Room, type PresenceBudget, type RoomMember } from '../src/live/room.js';
import { docKey } from '../src/ids.js';
import { http, startTestCluster, waitFor } from './helpers/cluster.js';

const RW = 'presence-bounds-token-read-write';
const RO = 'presence-bounds-token-read-only!';

let cluster: Awaited<ReturnType<typeof startTestCluster>>;
let base: string;
const providers: WebsocketProvider[] = [];
const sockets: WebSocket[] = [];

beforeAll(async () => {
  cluster = await startTestCluster(['solo'], {
    // Every client of a room is sent every presence change, megabytes here;
    // in a test process short of CPU one would fall behind and be dropped as slow.
    limits: { liveSendBufferBytes: 64 * 1024 * 1024 },
    auth: { tokens: [{ token: RW, scope: 'read-write' }, { token: RO, scope: 'read' }] },
  });
  base = cluster.region('solo').url;
}, 60_000);
afterAll(async () => {
  for (const p of providers) p.destroy();
  for (const s of sockets) s.terminate();
  await cluster?.dispose();
});

const wsBase = (): string => `${base.replace(/^http/, 'ws')}/v1/live`;

/** A y-websocket client with its presence set to `user`. */
async function editor(doc: string, user: string): Promise<WebsocketProvider> {
  const p = new WebsocketProvider(`${wsBase()}/presence`, doc, new Y.Doc(), {
    WebSocketPolyfill: WebSocket as never, disableBc: true, params: { token: RW },
  });
  providers.push(p);
  p.awareness.setLocalStateField('user', user);
  await waitFor('its presence held', async () => (await held(doc)).has(p.awareness.clientID), 15_000, 50);
  return p;
}

/**
 * A bare client. Every client of the room is sent every presence change,
 * megabytes here: only the presence messages of a client that asks for
 * them (`keep`) are kept, and the sync step 2 answers counted.
 */
interface Raw {
  ws: WebSocket;
  awareness: Uint8Array[];
  answers: number;
}

async function raw(doc: string, keep = false): Promise<Raw> {
  const ws = new WebSocket(`${wsBase()}/presence/${doc}`, { headers: { authorization: `Bearer ${RO}` } });
  sockets.push(ws);
  const client: Raw = { ws, awareness: [], answers: 0 };
  ws.on('message', (data: Buffer) => {
    if (data[0] === 0 && data[1] === 1) client.answers++;
    if (data[0] === 1 && keep) client.awareness.push(new Uint8Array(data));
  });
  ws.on('error', () => undefined);
  await new Promise<void>((resolve) => ws.once('open', () => resolve()));
  return client;
}

/**
 * Waits until the region has handled everything `client` sent: messages are
 * handled in order, and sync step 1 is answered.
 */
async function handled(client: Raw): Promise<void> {
  const before = client.answers;
  client.ws.send(new Uint8Array([0, 0, 1, 0]));
  await waitFor('sync step 1 answered', async () => {
    if (client.ws.readyState !== WebSocket.OPEN) throw new Error('the connection closed');
    return client.answers > before;
  }, 15_000, 10);
}

/** A y-websocket awareness message whose entries are given as sent: id, clock, state's JSON. */
function awareness(entries: [id: number, clock: number, json: string][]): Uint8Array {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, 1);
  encoding.writeVarUint8Array(e, awarenessUpdate(entries));
  return encoding.toUint8Array(e);
}

/** An awareness update (y-protocols encoding) whose entries are given as sent. */
function awarenessUpdate(entries: [id: number, clock: number, json: string][]): Uint8Array {
  const update = encoding.createEncoder();
  encoding.writeVarUint(update, entries.length);
  for (const [id, clock, json] of entries) {
    encoding.writeVarUint(update, id);
    encoding.writeVarUint(update, clock);
    encoding.writeVarString(update, json);
  }
  return encoding.toUint8Array(update);
}

/** A state whose JSON is `length` characters. */
function sized(length: number): string {
  return JSON.stringify({ pad: 'x'.repeat(length - '{"pad":""}'.length) });
}

/** The states (id to JSON length) an awareness message carries. */
function statesIn(message: Uint8Array): Map<number, number> {
  const outer = decoding.createDecoder(message);
  decoding.readVarUint(outer);
  const d = decoding.createDecoder(decoding.readVarUint8Array(outer));
  const states = new Map<number, number>();
  for (let n = decoding.readVarUint(d); n > 0; n--) {
    const id = decoding.readVarUint(d);
    decoding.readVarUint(d);
    states.set(id, decoding.readVarString(d).length);
  }
  return states;
}

/** The states the document's room holds, as a client joining now is sent them. */
async function held(doc: string): Promise<Map<number, number>> {
  const joiner = await raw(doc, true);
  await handled(joiner);
  joiner.ws.close();
  const [states] = joiner.awareness;
  return states === undefined ? new Map() : statesIn(states);
}

async function refusals(reason: string): Promise<number> {
  const metrics = String((await http<string>(`${base}/metrics`)).body);
  const count = new RegExp(`meridian_requests_refused_total\\{[^}]*reason="${reason}"[^}]*\\} (\\d+)`).exec(metrics);
  return Number(count?.[1] ?? 0);
}

const sum = (states: Map<number, number>): number => [...states.values()].reduce((a, b) => a + b, 0);

/** Presence id `Z`, held with a state of {@link TRICK_BYTES}; the tricks name it to cancel the bytes of new states. */
const Z = 7;
const TRICK_BYTES = 30_000;
/** Messages of a trick: each adds a state of TRICK_BYTES, together several times what the room has left. */
const TRICK_MESSAGES = 12;

/**
 * Each trick's next message, adding presence id `id`. Stale: a null for Z
 * at clock 0, which y-protocols ignores (Z is at 1). Twice: Z removed and
 * given its state again, both at newer clocks, so Z holds what it held.
 */
const tricks: Record<string, (id: number, message: number) => Uint8Array> = {
  'a stale null for a state held': (id) => awareness([[Z, 0, 'null'], [id, 1, sized(TRICK_BYTES)]]),
  'an id removed and given its state again in one message': (id, message) =>
    awareness([[Z, 2 * message + 2, 'null'], [Z, 2 * message + 3, sized(TRICK_BYTES)], [id, 1, sized(TRICK_BYTES)]]),
};

describe('a document\'s presence against entries y-protocols will not apply as they read', () => {
  test.each(Object.keys(tricks))('%s frees nothing: the room stays within its bound, the excess is refused and counted, and honest presence still works', async (name) => {
    const trick = tricks[name]!;
    const doc = `trick-${Object.keys(tricks).indexOf(name)}`;
    const ann = await editor(doc, 'ann');
    const holder = await raw(doc);
    holder.ws.send(awareness([[Z, 1, sized(TRICK_BYTES)]]));
    // Filled close to the bound (four ids a client, one 63 KB state a message), honestly: all of it is taken.
    const fill = 63_000;
    const fillers: Raw[] = [];
    const fills = Math.floor((MAX_ROOM_PRESENCE_BYTES - 4 * TRICK_BYTES) / fill);
    for (let i = 0; i < fills; i += 4) {
      const filler = await raw(doc);
      fillers.push(filler);
      for (let id = 1000 + i; id < 1000 + Math.min(i + 4, fills); id++) filler.ws.send(awareness([[id, 1, sized(fill)]]));
      await handled(filler);
    }
    await handled(holder);
    const refusedBefore = await refusals('live_presence_bytes');
    const filled = await held(doc);
    expect(filled.size).toBe(fills + 2);
    expect(sum(filled) + 4 * TRICK_BYTES).toBeLessThanOrEqual(MAX_ROOM_PRESENCE_BYTES);
    // Each client three new ids beside Z (four ids a client).
    const tricksters: Raw[] = [];
    for (let m = 0; m < TRICK_MESSAGES; m++) {
      if (m % 3 === 0) tricksters.push(await raw(doc));
      tricksters.at(-1)!.ws.send(trick(5000 + m, m));
    }
    for (const t of tricksters) await handled(t);
    const room = await held(doc);
    expect(sum(room)).toBeLessThanOrEqual(MAX_ROOM_PRESENCE_BYTES);
    expect(await refusals('live_presence_bytes')).toBeGreaterThan(refusedBefore);
    // Refused, not cut: the tricksters' connections are open, as is the editors'.
    for (const t of [holder, ...fillers, ...tricksters]) expect(t.ws.readyState).toBe(WebSocket.OPEN);
    expect(ann.wsconnected).toBe(true);
    // Gone, every presence they held goes with them, and the room takes an editor's again.
    for (const t of [holder, ...fillers, ...tricksters]) t.ws.close();
    await waitFor('their presence removed', async () => (await held(doc)).size === 1, 15_000, 100);
    const bob = await editor(doc, 'bob');
    await waitFor('ann and bob see each other', async () =>
      ann.awareness.getStates().get(bob.awareness.clientID)?.user === 'bob' && bob.awareness.getStates().get(ann.awareness.clientID)?.user === 'ann');
    expect([...(await held(doc)).keys()].sort()).toEqual([ann.awareness.clientID, bob.awareness.clientID].sort());
    ann.destroy();
    bob.destroy();
  }, 60_000);
});

describe('the region\'s count of presence bytes', () => {
  test('is what its rooms hold after stale, repeated and reordered entries, and nothing once their clients leave', () => {
    const budget: PresenceBudget = { used: 0, max: 1 << 20 };
    const room = new Room<RoomMember>(docKey('presence', 'count'), () => undefined, 16, budget);
    const a: RoomMember = { send: () => undefined };
    const b: RoomMember = { send: () => undefined };
    room.join(a);
    room.join(b);
    const holds = (): number => {
      const states = room.statesMessage();
      return states === null ? 0 : sum(statesIn(states));
    };
    const steps: [RoomMember, [number, number, string][]][] = [
      [a, [[1, 1, sized(500)]]],
      [b, [[1, 0, 'null'], [2, 1, sized(700)]]],
      [b, [[1, 2, 'null'], [1, 3, sized(300)], [3, 1, sized(100)]]],
      [a, [[4, 1, sized(200)], [4, 2, 'null']]],
      [a, [[5, 2, 'null'], [5, 1, sized(900)]]],
      [b, [[2, 1, 'null'], [2, 1, sized(800)]]],
    ];
    for (const [member, entries] of steps) {
      expect(room.applyFromMember(member, awarenessUpdate(entries))).toBeNull();
      expect(budget.used).toBe(holds());
    }
    // The room's own id is no client's.
    const own = (room as unknown as { awareness: { clientID: number } }).awareness.clientID;
    expect(room.applyFromMember(a, awarenessUpdate([[own, 5, sized(100)]]))).toBe('ids');
    room.leave(a);
    expect(budget.used).toBe(holds());
    room.leave(b);
    expect(holds()).toBe(0);
    expect(budget.used).toBe(0);
    room.close();
    expect(budget.used).toBe(0);
  });

  test('counts a state as it will be held and sent on, not as it came', () => {
    const budget: PresenceBudget = { used: 0, max: 10_000 };
    const room = new Room<RoomMember>(docKey('presence', 'numbers'), () => undefined, 16, budget);
    const a: RoomMember = { send: () => undefined };
    room.join(a);
    // 5,000 characters as sent; 22,000 as JSON.stringify writes it (each number spelled out).
    const numbers = `[${Array(1000).fill('1e20').join(',')}]`;
    expect(room.applyFromMember(a, awarenessUpdate([[1, 1, numbers]]))).toBe('bytes');
    expect(budget.used).toBe(0);
    expect(room.applyFromMember(a, awarenessUpdate([[1, 1, sized(5000)]]))).toBeNull();
    expect(budget.used).toBe(5000);
    room.close();
  });
});

describe('a query of the room\'s presence', () => {
  test('is answered a few times a second; the excess is dropped and counted, the connection stays open', async () => {
    const ann = await editor('query', 'ann');
    const asker = await raw('query', true);
    await handled(asker);
    // Joining, it was sent the room's states unasked.
    expect(asker.awareness).toHaveLength(1);
    const droppedBefore = await refusals('live_awareness_dropped');
    const asked = 20;
    for (let i = 0; i < asked; i++) asker.ws.send(new Uint8Array([3]));
    await handled(asker);
    const answered = asker.awareness.length - 1;
    expect(answered).toBeGreaterThanOrEqual(1);
    // The burst, and what the rate refilled while they were handled.
    expect(answered).toBeLessThanOrEqual(QUERY_AWARENESS_BURST + 1);
    expect(await refusals('live_awareness_dropped')).toBeGreaterThanOrEqual(droppedBefore + asked - answered);
    expect(asker.ws.readyState).toBe(WebSocket.OPEN);
    expect(statesIn(asker.awareness.at(-1)!).has(ann.awareness.clientID)).toBe(true);
    asker.ws.close();
    ann.destroy();
  });
});
