/**
 * Replication frames as a peer holding the cluster secret can send them,
 * after a valid handshake: random bytes, well-formed frames with
 * out-of-range numbers (sequences at 2^53-1, floors naming the receiver's
 * own writer, huge counts), and mutations of valid frames.
 *
 * Frames are written here from the documented layout (magic, version, type,
 * lib0 varuints and strings), not with the product's `encodeFrame`, which
 * refuses to write the very numbers a hostile peer would send.
 */
import fc from 'fast-check';
import * as encoding from 'lib0/encoding';
import { WebSocket } from 'ws';
import * as Y from 'yjs';
import type { RegionId } from '../../src/ids.js';
import {
  FRAME_MAGIC, MSG_ACK, MSG_AE_BUCKETS, MSG_AE_DONE, MSG_DOC_STATE, MSG_DOC_SV, MSG_ENTRIES, MSG_ERROR, MSG_PING,
  MSG_SYNC_REQUEST, PROTOCOL_VERSION,
} from '../../src/replication/protocol.js';
import { CHALLENGE_PATH, REPLICATE_PATH, createDialHeaders } from '../../src/replication/handshake.js';
import { mutate, type Mutation } from './fuzz-yjs.js';

/** Who a writer field names: the receiver itself, the peer we pretend to be, or a writer nobody knows. */
export type WriterChoice = 'receiver' | 'peer' | 'stranger';
/** Numbers a peer may send, from plausible to hostile. */
export type NumberChoice = 'one' | 'small' | 'large' | 'bound' | 'max';

export type FrameSpec =
  | { kind: 'random'; bytes: Uint8Array }
  | { kind: 'count-bomb'; type: number; count: NumberChoice }
  | { kind: 'frame'; frame: FrameBody; mutation: Mutation | null };

export type FrameBody =
  | { type: 'sync-request' | 'ack'; vv: [WriterChoice, NumberChoice][] }
  | { type: 'ae-done'; round: NumberChoice; floor: [WriterChoice, NumberChoice][] }
  | { type: 'entries'; entries: { origin: WriterChoice; seq: NumberChoice; ts: NumberChoice; clientId: number; valid: boolean }[] }
  | { type: 'ping'; id: NumberChoice; vv: [WriterChoice, NumberChoice][]; lagMs: number }
  | { type: 'ae-buckets'; round: NumberChoice; count: number }
  | { type: 'doc-sv'; round: NumberChoice; sv: Uint8Array }
  | { type: 'doc-state'; round: NumberChoice; clientId: number; withSv: boolean }
  | { type: 'error'; code: string; message: string };

/** What a frame case needs to know about the cluster: writer ids and a document that exists. */
export interface FrameContext {
  receiverWriter: string;
  peerWriter: string;
  doc: string;
}

export const NUMBERS: Record<NumberChoice, number> = {
  one: 1, small: 3, large: 2 ** 32, bound: 2 ** 48, max: Number.MAX_SAFE_INTEGER,
};

const number = fc.oneof(
  { arbitrary: fc.constantFrom<NumberChoice>('one', 'small'), weight: 4 },
  { arbitrary: fc.constantFrom<NumberChoice>('large', 'bound', 'max'), weight: 1 },
);
const writer = fc.constantFrom<WriterChoice>('receiver', 'peer', 'stranger');
const vvArb = fc.array(fc.tuple(writer, number), { maxLength: 3 });

const bodyArb: fc.Arbitrary<FrameBody> = fc.oneof(
  fc.record({ type: fc.constantFrom('sync-request' as const, 'ack' as const), vv: vvArb }),
  fc.record({ type: fc.constant('ae-done' as const), round: number, floor: vvArb }),
  fc.record({
    type: fc.constant('entries' as const),
    entries: fc.array(fc.record({ origin: writer, seq: number, ts: number, clientId: fc.integer({ min: 1, max: 2 ** 31 }), valid: fc.boolean() }), { minLength: 1, maxLength: 3 }),
  }),
  fc.record({ type: fc.constant('ping' as const), id: number, vv: vvArb, lagMs: fc.constantFrom(0, 5, 1e12) }),
  fc.record({ type: fc.constant('ae-buckets' as const), round: number, count: fc.constantFrom(0, 1, 1024, 4096) }),
  fc.record({ type: fc.constant('doc-sv' as const), round: number, sv: fc.uint8Array({ maxLength: 16 }) }),
  fc.record({ type: fc.constant('doc-state' as const), round: number, clientId: fc.integer({ min: 1, max: 2 ** 31 }), withSv: fc.boolean() }),
  fc.record({ type: fc.constant('error' as const), code: fc.string({ minLength: 1, maxLength: 8 }), message: fc.string({ maxLength: 20 }) }),
);

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('truncate' as const), at: fc.double({ min: 0, max: 1, noNaN: true }) }),
  fc.record({ kind: fc.constant('flip' as const), at: fc.double({ min: 0, max: 1, noNaN: true }), xor: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.double({ min: 0, max: 1, noNaN: true }), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('drop' as const), at: fc.double({ min: 0, max: 1, noNaN: true }) }),
);

/** Frames of one case; `mutated` sets how often a well-formed frame is mutated. */
export function frameSpecArb(options: { mutated: boolean }): fc.Arbitrary<FrameSpec> {
  return fc.oneof(
    { arbitrary: fc.record({ kind: fc.constant('random' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }), weight: 1 },
    {
      arbitrary: fc.record({ kind: fc.constant('count-bomb' as const), type: fc.integer({ min: 1, max: 11 }), count: number }),
      weight: 1,
    },
    {
      arbitrary: fc.record({ kind: fc.constant('frame' as const), frame: bodyArb, mutation: options.mutated ? fc.option(mutationArb, { freq: 2 }) : fc.constant(null) }),
      weight: 5,
    },
  );
}

/** The bytes of one frame spec. */
export function frameBytes(spec: FrameSpec, ctx: FrameContext): Uint8Array {
  if (spec.kind === 'random') return spec.bytes;
  const e = header(spec.kind === 'count-bomb' ? spec.type : codeOf(spec.frame));
  if (spec.kind === 'count-bomb') {
    encoding.writeVarUint(e, NUMBERS[spec.count]);
    return encoding.toUint8Array(e);
  }
  writeBody(e, spec.frame, ctx);
  const bytes = encoding.toUint8Array(e);
  return spec.mutation === null ? bytes : mutate(bytes, spec.mutation);
}

function header(code: number): encoding.Encoder {
  const e = encoding.createEncoder();
  encoding.writeUint8(e, FRAME_MAGIC);
  encoding.writeUint8(e, PROTOCOL_VERSION);
  encoding.writeUint8(e, code);
  return e;
}

function codeOf(f: FrameBody): number {
  const codes: Record<FrameBody['type'], number> = {
    'sync-request': MSG_SYNC_REQUEST, ack: MSG_ACK, 'ae-done': MSG_AE_DONE, entries: MSG_ENTRIES, ping: MSG_PING,
    'ae-buckets': MSG_AE_BUCKETS, 'doc-sv': MSG_DOC_SV, 'doc-state': MSG_DOC_STATE, error: MSG_ERROR,
  };
  return codes[f.type];
}

function writerName(choice: WriterChoice, ctx: FrameContext): string {
  return choice === 'receiver' ? ctx.receiverWriter : choice === 'peer' ? ctx.peerWriter : 'mars~00000000beef';
}

function writeVv(e: encoding.Encoder, pairs: [WriterChoice, NumberChoice][], ctx: FrameContext): void {
  // A writer may appear once in a version vector: later duplicates are left out.
  const unique = new Map(pairs.map(([w, n]) => [writerName(w, ctx), NUMBERS[n]]));
  encoding.writeVarUint(e, unique.size);
  for (const [w, n] of unique) {
    encoding.writeVarString(e, w);
    encoding.writeVarUint(e, n);
  }
}

function writeBody(e: encoding.Encoder, f: FrameBody, ctx: FrameContext): void {
  switch (f.type) {
    case 'sync-request':
    case 'ack':
      return writeVv(e, f.vv, ctx);
    case 'ae-done':
      encoding.writeVarUint(e, NUMBERS[f.round]);
      return writeVv(e, f.floor, ctx);
    case 'entries':
      encoding.writeVarUint(e, f.entries.length);
      for (const x of f.entries) {
        encoding.writeVarString(e, writerName(x.origin, ctx));
        encoding.writeVarUint(e, NUMBERS[x.seq]);
        encoding.writeVarString(e, ctx.doc);
        encoding.writeVarUint(e, NUMBERS[x.ts]);
        encoding.writeVarUint8Array(e, x.valid ? yjsUpdate(x.clientId) : Uint8Array.of(1, 2, 3));
      }
      return;
    case 'ping':
      encoding.writeVarUint(e, NUMBERS[f.id]);
      encoding.writeFloat64(e, performance.now());
      writeVv(e, f.vv, ctx);
      encoding.writeVarUint(e, 0);
      encoding.writeFloat64(e, f.lagMs);
      encoding.writeUint8(e, 0);
      return;
    case 'ae-buckets':
      encoding.writeVarUint(e, NUMBERS[f.round]);
      encoding.writeVarUint(e, f.count);
      encoding.writeUint8Array(e, new Uint8Array(f.count * 8));
      return;
    case 'doc-sv':
      encoding.writeVarUint(e, NUMBERS[f.round]);
      encoding.writeVarString(e, ctx.doc);
      encoding.writeVarUint8Array(e, f.sv);
      return;
    case 'doc-state':
      encoding.writeVarUint(e, NUMBERS[f.round]);
      encoding.writeVarString(e, ctx.doc);
      encoding.writeVarUint8Array(e, yjsUpdate(f.clientId));
      encoding.writeUint8(e, f.withSv ? 1 : 0);
      if (f.withSv) encoding.writeVarUint8Array(e, Y.encodeStateVector(new Y.Doc()));
      return;
    case 'error':
      encoding.writeVarString(e, f.code);
      encoding.writeVarString(e, f.message);
      return;
  }
}

/** A small valid update under `clientId`, as a region's entry would carry. */
function yjsUpdate(clientId: number): Uint8Array {
  const doc = new Y.Doc();
  doc.clientID = clientId;
  doc.getMap('root').set('peer', clientId);
  return Y.encodeStateAsUpdate(doc);
}

/** Our end of a replication link, opened as `self` with the cluster secret. */
export interface ImpostorLink {
  ws: WebSocket;
  /** Resolves with the close code once the link closes (from either side). */
  closed: Promise<number>;
}

export async function dialAsPeer(opts: { url: string; self: string; peer: string; secret: string; cluster: string }): Promise<ImpostorLink> {
  const res = await fetch(`${opts.url}${CHALLENGE_PATH}`);
  const { nonce } = (await res.json()) as { nonce: string };
  const { headers } = createDialHeaders({
    secret: opts.secret, cluster: opts.cluster, self: opts.self as RegionId, peer: opts.peer as RegionId, serverNonce: nonce,
  });
  const ws = new WebSocket(`${opts.url.replace(/^http/, 'ws')}${REPLICATE_PATH}`, { headers });
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, r) => reject(new Error(`upgrade refused: ${r.statusCode ?? 0}`)));
    ws.once('error', reject);
  });
  return { ws, closed };
}
