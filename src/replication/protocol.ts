/**
 * Binary frames exchanged between regions over an authenticated WebSocket.
 *
 * Layout: `FRAME_MAGIC` (uint8) | protocol version (uint8) | frame type (uint8) | body.
 * Bodies use lib0 varuints, length-prefixed byte arrays and UTF-8 strings; a
 * version vector is a count followed by (writer, seq) pairs.
 *
 * Every frame comes from another process, so decoding treats it as hostile:
 * each count and length is checked against the bytes that remain before
 * anything is read or allocated, and every defect surfaces as one error type,
 * {@link ProtocolError}, whose reason fits a WebSocket close frame. Every
 * number has a bound: sequence numbers, timestamps and counters below
 * {@link MAX_SEQ} (2^48), round ids below {@link MAX_ROUND}, times finite and
 * below 2^48 ms, version vectors at most {@link MAX_WRITERS} writers, each a
 * writer id, heartbeats at most {@link MAX_LINKS} links, entries frames at
 * most {@link MAX_ENTRIES_PER_FRAME} entries and ae-docs at most
 * {@link MAX_AE_DOCS} documents. What a frame claims
 * is checked against what this region asked for by the session.
 *
 * Frames are described by their fields (`struct`, `list`, `uint`, ...), and
 * the same description both writes and reads them, so the two cannot drift
 * apart. Adding a frame: add its interface to {@link Frame}, give it a new
 * `MSG_` number and add one row to `CODECS`.
 */
import * as decoding from 'lib0/decoding';
import * as encoding from 'lib0/encoding';
import type { DocKey, RegionId, VersionVector } from '../ids.js';
import {
  ProtocolError, bytes, docKey, fixed, float, list, nullable, oneOf, optional, readByte, regionId, remaining, seq, struct, text,
  uint, vv, writerId, type Field, type Fields,
} from './wire.js';
import { MAX_SEQ } from '../vv.js';

export { ProtocolError, MAX_ID_BYTES, MAX_REASON_BYTES, MAX_SEQ, MAX_WRITERS } from './wire.js';
import type { NewLogEntry } from '../storage/types.js';
import { MAX_AWARENESS_BYTES, type PeerState } from './types.js';

export { MAX_AWARENESS_BYTES };

export const PROTOCOL_VERSION = 2;
/** First byte of every frame (`M`); anything else is not ours. */
export const FRAME_MAGIC = 0x4d;

export const MSG_SYNC_REQUEST = 1;
export const MSG_ENTRIES = 2;
export const MSG_ACK = 3;
export const MSG_PING = 4;
export const MSG_PONG = 5;
export const MSG_AE_BUCKETS = 6;
export const MSG_AE_DOCS = 7;
export const MSG_DOC_SV = 8;
export const MSG_DOC_STATE = 9;
export const MSG_AE_DONE = 10;
export const MSG_ERROR = 11;
export const MSG_DOC_REPLACE = 12;
/**
 * Ephemeral presence of live clients. Sent only to peers that announced it
 * in the handshake ({@link FEATURES_HEADER}): a peer of this protocol
 * version that did not would close the link on an unknown frame type.
 */
export const MSG_AWARENESS = 13;

/** Request and response header in which a node lists the optional frames it understands. */
export const FEATURES_HEADER = 'meridian-features';
/** The feature token of {@link MSG_AWARENESS}. */
export const FEATURE_AWARENESS = 'awareness';

/**
 * Request and response header with the largest frame the node accepts
 * (`replication.maxFrameBytes`): each end sends at most the smaller bound,
 * so that a frame never closes the link at the other end (which the next
 * round would send again).
 */
export const MAX_FRAME_HEADER = 'meridian-max-frame';
/** What a peer that does not say accepts: the bound every node had before it was announced. */
export const UNANNOUNCED_MAX_FRAME_BYTES = 16 * 1024 * 1024;

/** The peer's announced frame bound; {@link UNANNOUNCED_MAX_FRAME_BYTES} when absent or malformed. */
export function announcedMaxFrame(header: string | string[] | undefined): number {
  const n = typeof header === 'string' && /^[1-9][0-9]{0,15}$/.test(header) ? Number(header) : NaN;
  return Number.isSafeInteger(n) ? n : UNANNOUNCED_MAX_FRAME_BYTES;
}

/** Anti-entropy round ids are below this (drawn at random by the initiator). */
export const MAX_ROUND = 2 ** 31;
/** Most anti-entropy buckets a round may use. */
export const MAX_BUCKETS = 4096;
export const BUCKET_DIGEST_BYTES = 8;
export const DOC_DIGEST_BYTES = 32;
/** A document's digest in two halves: structure (state vector, delete set), then content. */
export const DOC_PARTS_BYTES = 64;
const MAX_ERROR_CODE_BYTES = 64;
const MAX_ERROR_MESSAGE_BYTES = 1024;
const PEER_STATES: readonly PeerState[] = ['up', 'suspect', 'down'];

/** "I hold these; send me what is beyond." */
export interface SyncRequestFrame { type: 'sync-request'; vv: VersionVector }
/** A batch of log entries, in the sender's log order. */
export interface EntriesFrame { type: 'entries'; entries: NewLogEntry[] }
/** What the receiver has durably stored. */
export interface AckFrame { type: 'ack'; vv: VersionVector }
/** The sender's view of one of its own links. */
export interface LinkReport { region: RegionId; state: PeerState }
export interface PingFrame {
  type: 'ping';
  id: number;
  /** Sender's clock in ms (may be fractional); echoed in the pong. */
  sentAt: number;
  vv: VersionVector;
  links: LinkReport[];
  /** How far the sender's outbound stream toward the receiver lags, in ms. */
  lagMs: number;
  /** The sender's region digest (hex), so that each side can tell when both hold the same state. */
  digest?: string;
}
export interface PongFrame { type: 'pong'; id: number; sentAt: number }
/** Anti-entropy: one 8-byte digest per bucket. */
export interface AeBucketsFrame { type: 'ae-buckets'; round: number; buckets: Uint8Array[] }
/** Anti-entropy: the documents of one bucket whose digest differed. */
export interface AeDocsFrame {
  type: 'ae-docs';
  round: number;
  bucket: number;
  docs: { doc: DocKey; digest: Uint8Array }[];
}
/**
 * "My state vector for doc (empty if I lack it): send what I miss, and your
 * state vector." `parts` is the sender's digest in two halves (null when it
 * lacks the doc): equal structure with unequal content is a conflict that no
 * diff repairs, answered with a doc-replace offer.
 */
export interface DocSvFrame { type: 'doc-sv'; round: number; doc: DocKey; sv: Uint8Array; parts: Uint8Array | null }
/** A Yjs update for doc; a non-null sv asks the receiver to answer with its own diff against sv. */
export interface DocStateFrame { type: 'doc-state'; round: number; doc: DocKey; update: Uint8Array; sv: Uint8Array | null }
/**
 * The sender's whole state of a document whose replicas conflict (same
 * structure, other content). An `offer` is answered by an `answer` with the
 * receiver's own state from before it resolved the conflict, so that both
 * sides resolve it and both keep the losing state (see docs/replace.ts).
 */
export interface DocReplaceFrame { type: 'doc-replace'; round: number; doc: DocKey; update: Uint8Array; kind: 'offer' | 'answer' }
/** The sender has sent everything for this round; floor is its version vector when the round began. */
export interface AeDoneFrame { type: 'ae-done'; round: number; floor: VersionVector }
/** Why the sender is about to close. */
export interface ErrorFrame { type: 'error'; code: string; message: string }
/** A live client's presence in `doc` (a y-protocols awareness update); never stored. */
export interface AwarenessFrame { type: 'awareness'; doc: DocKey; update: Uint8Array }

export type Frame =
  | SyncRequestFrame | EntriesFrame | AckFrame | PingFrame | PongFrame | AeBucketsFrame
  | AeDocsFrame | DocSvFrame | DocStateFrame | DocReplaceFrame | AeDoneFrame | ErrorFrame | AwarenessFrame;
export type FrameType = Frame['type'];

// ---- one codec per frame type ----

type FrameOf<T extends FrameType> = Extract<Frame, { type: T }>;
interface Codec<T extends FrameType> {
  code: number;
  body: Field<Omit<FrameOf<T>, 'type'>>;
}

function frame<T extends FrameType>(_type: T, code: number, fields: Fields<Omit<FrameOf<T>, 'type'>>): Codec<T> {
  return { code, body: struct(fields) };
}

// Every number a peer sends has a bound (see MAX_SEQ): sequence numbers and
// timestamps below 2^48, rounds below 2^31, counts below what the bytes left can hold.
const round = uint(0, MAX_ROUND);
const counter = seq;
const entry = struct<NewLogEntry>({ origin: writerId, seq: uint(1, MAX_SEQ), doc: docKey, ts: seq, update: bytes });
const linkReport = struct<LinkReport>({ region: regionId, state: oneOf(PEER_STATES) });
/**
 * Entries one frame may carry. Every entry is handed to the write path at
 * once: a frame-sized list of a million minimal entries took seconds to
 * decode, in one call. The sender cuts its batches at this count too
 * (Session.stream), whatever `replication.batchBytes` allows.
 */
export const MAX_ENTRIES_PER_FRAME = 4096;
/**
 * Documents one ae-docs frame may list: those of one digest bucket. With
 * 1024 buckets (buckets.ts) a region reaches it only past some 67 million
 * documents; a bucket holding more is listed up to it, and the sender says
 * so (see AntiEntropy.onBuckets).
 */
export const MAX_AE_DOCS = 65_536;
/**
 * Links one heartbeat may report (one per peer of its sender). A heartbeat is
 * handled at once, beside nothing: a frame-sized list of millions would hold
 * the event loop for as long as decoding and comparing it takes.
 */
export const MAX_LINKS = 1024;

/** A byte array of at most `max` bytes. */
function boundedBytes(max: number): Field<Uint8Array> {
  return {
    min: bytes.min,
    write(e, b, what) {
      if (b.length > max) throw new RangeError(`${what} of ${b.length} bytes exceeds ${max}`);
      bytes.write(e, b, what);
    },
    read(d, what) {
      const b = bytes.read(d, what);
      if (b.length > max) throw new ProtocolError(`${what} of ${b.length} bytes exceeds ${max}`);
      return b;
    },
  };
}

const CODECS: { [T in FrameType]: Codec<T> } = {
  'sync-request': frame('sync-request', MSG_SYNC_REQUEST, { vv }),
  entries: frame('entries', MSG_ENTRIES, { entries: list(entry, MAX_ENTRIES_PER_FRAME) }),
  ack: frame('ack', MSG_ACK, { vv }),
  ping: frame('ping', MSG_PING, {
    id: counter,
    sentAt: float,
    vv,
    links: list(linkReport, MAX_LINKS),
    lagMs: float,
    digest: optional(text(1, 128)),
  }),
  pong: frame('pong', MSG_PONG, { id: counter, sentAt: float }),
  'ae-buckets': frame('ae-buckets', MSG_AE_BUCKETS, {
    round,
    buckets: list(fixed(BUCKET_DIGEST_BYTES), MAX_BUCKETS),
  }),
  'ae-docs': frame('ae-docs', MSG_AE_DOCS, {
    round,
    bucket: uint(0, MAX_BUCKETS),
    docs: list(struct({ doc: docKey, digest: fixed(DOC_DIGEST_BYTES) }), MAX_AE_DOCS),
  }),
  'doc-sv': frame('doc-sv', MSG_DOC_SV, { round, doc: docKey, sv: bytes, parts: nullable(fixed(DOC_PARTS_BYTES)) }),
  'doc-state': frame('doc-state', MSG_DOC_STATE, { round, doc: docKey, update: bytes, sv: nullable(bytes) }),
  'doc-replace': frame('doc-replace', MSG_DOC_REPLACE, { round, doc: docKey, update: bytes, kind: oneOf(['offer', 'answer'] as const) }),
  'ae-done': frame('ae-done', MSG_AE_DONE, { round, floor: vv }),
  error: frame('error', MSG_ERROR, {
    code: text(1, MAX_ERROR_CODE_BYTES),
    message: text(0, MAX_ERROR_MESSAGE_BYTES),
  }),
  awareness: frame('awareness', MSG_AWARENESS, { doc: docKey, update: boundedBytes(MAX_AWARENESS_BYTES) }),
};

const BY_CODE = new Map<number, [FrameType, Codec<FrameType>]>();
for (const [type, codec] of Object.entries(CODECS) as [FrameType, Codec<FrameType>][]) {
  if (BY_CODE.has(codec.code)) throw new Error(`frame code ${codec.code} used twice`);
  BY_CODE.set(codec.code, [type, codec]);
}

/** Encodes a frame; throws RangeError for values no peer would accept (seq 0, wrong digest size, ...). */
export function encodeFrame(f: Frame): Uint8Array {
  const codec = CODECS[f.type] as Codec<FrameType>;
  const e = encoding.createEncoder();
  encoding.writeUint8(e, FRAME_MAGIC);
  encoding.writeUint8(e, PROTOCOL_VERSION);
  encoding.writeUint8(e, codec.code);
  codec.body.write(e, f, f.type);
  return encoding.toUint8Array(e);
}

/**
 * Decodes one frame of at most `maxBytes`. Throws {@link ProtocolError} on
 * anything malformed; byte arrays in the result are copies, never views of `input`.
 */
export function decodeFrame(input: Uint8Array, maxBytes: number): Frame {
  const d = readHeader(input, maxBytes);
  const code = readByte(d, 'type');
  const known = BY_CODE.get(code);
  if (known === undefined) throw new ProtocolError(`unknown frame type ${code}`);
  const [type, codec] = known;
  const body = codec.body.read(d, type);
  if (remaining(d) > 0) throw new ProtocolError(`${remaining(d)} trailing bytes after ${type} frame`);
  return { type, ...body } as Frame;
}

/**
 * The `id` and `sentAt` of a ping, all a pong needs, checked as
 * {@link decodeFrame} checks them; the rest of the frame is not read (a
 * ping's vector and links take milliseconds to decode at their bounds).
 */
export function decodePingHead(input: Uint8Array, maxBytes: number): Pick<PingFrame, 'id' | 'sentAt'> {
  const d = readHeader(input, maxBytes);
  const code = readByte(d, 'type');
  if (code !== MSG_PING) throw new ProtocolError(`frame type ${code} is not a ping`);
  return { id: counter.read(d, 'id'), sentAt: float.read(d, 'sentAt') };
}

/** Checks the size, magic and version of a frame; the decoder stands at its type. */
function readHeader(input: Uint8Array, maxBytes: number): decoding.Decoder {
  if (input.length > maxBytes) throw new ProtocolError(`frame of ${input.length} bytes exceeds limit of ${maxBytes}`);
  const d = decoding.createDecoder(input);
  if (readByte(d, 'magic') !== FRAME_MAGIC) throw new ProtocolError('not a meridian frame');
  const version = readByte(d, 'version');
  if (version !== PROTOCOL_VERSION) throw new ProtocolError(`unsupported protocol version ${version}`);
  return d;
}
