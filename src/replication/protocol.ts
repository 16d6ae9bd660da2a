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
 * {@link ProtocolError}, whose reason fits a WebSocket close frame.
 *
 * Frames are described by their fields (`struct`, `list`, `uint`, ...), and
 * the same description both writes and reads them, so the two cannot drift
 * apart. Adding a frame: add its interface to {@link Frame}, give it a new
 * `MSG_` number and add one row to `CODECS`.
 */
import * as decoding from 'lib0/decoding';
import * as encoding from 'lib0/encoding';
import { NAME_PATTERN, type DocKey, type RegionId, type VersionVector, type WriterId } from '../ids.js';
import type { NewLogEntry } from '../storage/types.js';
import type { PeerState } from './types.js';

export const PROTOCOL_VERSION = 1;
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

/** Most anti-entropy buckets a round may use. */
export const MAX_BUCKETS = 4096;
export const BUCKET_DIGEST_BYTES = 8;
export const DOC_DIGEST_BYTES = 32;
/** Longest region, writer or cluster name, in UTF-8 bytes. */
export const MAX_ID_BYTES = 256;
/** WebSocket close reasons may hold 123 bytes; keep a margin. */
export const MAX_REASON_BYTES = 120;
const MAX_ERROR_CODE_BYTES = 64;
const MAX_ERROR_MESSAGE_BYTES = 1024;
/** 8 varuint bytes carry 56 bits, enough for every safe integer. */
const MAX_VARUINT_BYTES = 8;
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
/** "My state vector for doc (empty if I lack it): send what I miss, and your state vector." */
export interface DocSvFrame { type: 'doc-sv'; round: number; doc: DocKey; sv: Uint8Array }
/** A Yjs update for doc; a non-null sv asks the receiver to answer with its own diff against sv. */
export interface DocStateFrame { type: 'doc-state'; round: number; doc: DocKey; update: Uint8Array; sv: Uint8Array | null }
/** The sender has sent everything for this round; floor is its version vector when the round began. */
export interface AeDoneFrame { type: 'ae-done'; round: number; floor: VersionVector }
/** Why the sender is about to close. */
export interface ErrorFrame { type: 'error'; code: string; message: string }

export type Frame =
  | SyncRequestFrame | EntriesFrame | AckFrame | PingFrame | PongFrame | AeBucketsFrame
  | AeDocsFrame | DocSvFrame | DocStateFrame | AeDoneFrame | ErrorFrame;
export type FrameType = Frame['type'];

/** A frame that cannot be decoded. `reason` is ASCII-safe and at most {@link MAX_REASON_BYTES} bytes. */
export class ProtocolError extends Error {
  readonly reason: string;
  constructor(reason: string, options?: { cause?: unknown }) {
    const short = truncateUtf8(reason, MAX_REASON_BYTES);
    super(short, options);
    this.name = 'ProtocolError';
    this.reason = short;
  }
}

function truncateUtf8(s: string, maxBytes: number): string {
  let out = s;
  while (Buffer.byteLength(out) > maxBytes) out = out.slice(0, -1);
  return out;
}

// ---- fields: each writes our own values (RangeError if no peer would accept
// them) and reads a peer's bytes, checking bounds before touching them ----

type Encoder = encoding.Encoder;
type Decoder = decoding.Decoder;

interface Field<T> {
  /** Fewest bytes an encoded value takes: lets a count be checked against what remains. */
  min: number;
  write(e: Encoder, value: T, what: string): void;
  read(d: Decoder, what: string): T;
}
type Fields<T> = { [K in keyof T]-?: Field<T[K]> };

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function remaining(d: Decoder): number {
  return d.arr.length - d.pos;
}

function need(d: Decoder, n: number, what: string): void {
  if (n > remaining(d)) throw new ProtocolError(`truncated frame: ${what}`);
}

function readByte(d: Decoder, what: string): number {
  need(d, 1, what);
  return decoding.readUint8(d);
}

function readVarUint(d: Decoder, what: string): number {
  const end = Math.min(d.arr.length, d.pos + MAX_VARUINT_BYTES);
  let i = d.pos;
  while (i < end && d.arr[i]! >= 0x80) i++;
  if (i >= d.arr.length) throw new ProtocolError(`truncated frame: ${what}`);
  if (i >= end) throw new ProtocolError(`${what}: integer too large`);
  const n = decoding.readVarUint(d);
  if (!Number.isSafeInteger(n)) throw new ProtocolError(`${what}: integer too large`);
  return n;
}

/** A copy, so that a kept value does not pin the whole frame buffer. */
function readCopy(d: Decoder, n: number, what: string): Uint8Array {
  need(d, n, what);
  const out = new Uint8Array(n);
  out.set(decoding.readUint8Array(d, n));
  return out;
}

/** Integers in [min, max), as varuints. */
function uint(min = 0, max = Number.MAX_SAFE_INTEGER + 1): Field<number> {
  const ok = (n: number): boolean => Number.isSafeInteger(n) && n >= min && n < max;
  return {
    min: 1,
    write(e, n, what) {
      if (!ok(n)) throw new RangeError(`${what} must be an integer in [${min}, ${max}), got ${n}`);
      encoding.writeVarUint(e, n);
    },
    read(d, what) {
      const n = readVarUint(d, what);
      if (!ok(n)) throw new ProtocolError(`${what}: ${n} out of range`);
      return n;
    },
  };
}

/** Finite, non-negative float64 (milliseconds). */
const float: Field<number> = {
  min: 8,
  write(e, n, what) {
    if (!Number.isFinite(n) || n < 0) throw new RangeError(`${what} must be finite and non-negative, got ${n}`);
    encoding.writeFloat64(e, n);
  },
  read(d, what) {
    need(d, 8, what);
    const n = decoding.readFloat64(d);
    if (!Number.isFinite(n) || n < 0) throw new ProtocolError(`${what}: not a finite non-negative number`);
    return n;
  },
};

/** UTF-8 text of minBytes..maxBytes, optionally checked further. */
function text<T extends string = string>(minBytes: number, maxBytes: number, valid?: (s: string) => boolean): Field<T> {
  return {
    min: 1 + minBytes,
    write(e, s, what) {
      const n = Buffer.byteLength(s);
      if (n < minBytes || n > maxBytes) throw new RangeError(`${what} must be ${minBytes}-${maxBytes} bytes, got ${n}`);
      if (valid && !valid(s)) throw new RangeError(`invalid ${what} ${JSON.stringify(s)}`);
      encoding.writeVarString(e, s);
    },
    read(d, what) {
      const n = readVarUint(d, what);
      if (n < minBytes || n > maxBytes) throw new ProtocolError(`${what}: length ${n} out of range`);
      need(d, n, what);
      let s: string;
      try {
        s = utf8.decode(decoding.readUint8Array(d, n));
      } catch (err) {
        throw new ProtocolError(`${what}: invalid UTF-8`, { cause: err });
      }
      if (valid && !valid(s)) throw new ProtocolError(`invalid ${what}`);
      return s as T;
    },
  };
}

function isDocKey(s: string): boolean {
  const slash = s.indexOf('/');
  return slash > 0 && NAME_PATTERN.test(s.slice(0, slash)) && NAME_PATTERN.test(s.slice(slash + 1));
}

const bytes: Field<Uint8Array> = {
  min: 1,
  write: (e, b) => encoding.writeVarUint8Array(e, b),
  read: (d, what) => readCopy(d, readVarUint(d, what), what),
};

function fixed(len: number): Field<Uint8Array> {
  return {
    min: len,
    write(e, b, what) {
      if (b.length !== len) throw new RangeError(`${what} must be ${len} bytes, got ${b.length}`);
      encoding.writeUint8Array(e, b);
    },
    read: (d, what) => readCopy(d, len, what),
  };
}

function nullable<T>(field: Field<T>): Field<T | null> {
  return {
    min: 1,
    write(e, v, what) {
      encoding.writeUint8(e, v === null ? 0 : 1);
      if (v !== null) field.write(e, v, what);
    },
    read(d, what) {
      const flag = readByte(d, what);
      if (flag > 1) throw new ProtocolError(`${what}: presence flag must be 0 or 1`);
      return flag === 1 ? field.read(d, what) : null;
    },
  };
}

/** A presence byte, then the value if present. */
function optional<T>(field: Field<T>): Field<T | undefined> {
  const inner = nullable(field);
  return {
    min: 1,
    write: (e, v, what) => inner.write(e, v ?? null, what),
    read: (d, what) => inner.read(d, what) ?? undefined,
  };
}

/** One of a few strings, as its index. */
function oneOf<T extends string>(values: readonly T[]): Field<T> {
  return {
    min: 1,
    write(e, v, what) {
      const i = values.indexOf(v);
      if (i < 0) throw new RangeError(`unknown ${what} ${String(v)}`);
      encoding.writeUint8(e, i);
    },
    read(d, what) {
      const v = values[readByte(d, what)];
      if (v === undefined) throw new ProtocolError(`unknown ${what}`);
      return v;
    },
  };
}

/** A count, then the items; the count is checked against the bytes left before any item is read. */
function list<T>(item: Field<T>, max = Number.MAX_SAFE_INTEGER): Field<T[]> {
  const count = uint(0, max + 1);
  return {
    min: 1,
    write(e, items, what) {
      count.write(e, items.length, what);
      for (const x of items) item.write(e, x, what);
    },
    read(d, what) {
      const n = count.read(d, what);
      need(d, n * item.min, what);
      const out: T[] = [];
      for (let i = 0; i < n; i++) out.push(item.read(d, what));
      return out;
    },
  };
}

/** Fields in the order they are listed. */
function struct<T>(fields: Fields<T>): Field<T> {
  const parts = Object.entries(fields) as [keyof T & string, Field<T[keyof T & string]>][];
  return {
    min: parts.reduce((n, [, f]) => n + f.min, 0),
    write(e, v) {
      for (const [key, f] of parts) f.write(e, v[key], key);
    },
    read(d) {
      const out: Partial<T> = {};
      for (const [key, f] of parts) out[key] = f.read(d, key);
      return out as T;
    },
  };
}

const writerId = text<WriterId>(1, MAX_ID_BYTES);
const regionId = text<RegionId>(1, MAX_ID_BYTES);
const docKey = text<DocKey>(3, 257, isDocKey);
const pairs = list(struct({ writer: writerId, seq: uint() }));

/** Count, then (writer, seq) pairs; a writer may appear once. */
const vv: Field<VersionVector> = {
  min: 1,
  write: (e, map, what) => pairs.write(e, [...map].map(([writer, n]) => ({ writer, seq: n })), what),
  read(d, what) {
    const map: VersionVector = new Map();
    for (const p of pairs.read(d, what)) {
      if (map.has(p.writer)) throw new ProtocolError(`${what}: duplicate writer`);
      map.set(p.writer, p.seq);
    }
    return map;
  },
};

// ---- one codec per frame type ----

type FrameOf<T extends FrameType> = Extract<Frame, { type: T }>;
interface Codec<T extends FrameType> {
  code: number;
  body: Field<Omit<FrameOf<T>, 'type'>>;
}

function frame<T extends FrameType>(_type: T, code: number, fields: Fields<Omit<FrameOf<T>, 'type'>>): Codec<T> {
  return { code, body: struct(fields) };
}

const round = uint();
const entry = struct<NewLogEntry>({ origin: writerId, seq: uint(1), doc: docKey, ts: uint(), update: bytes });
const linkReport = struct<LinkReport>({ region: regionId, state: oneOf(PEER_STATES) });

const CODECS: { [T in FrameType]: Codec<T> } = {
  'sync-request': frame('sync-request', MSG_SYNC_REQUEST, { vv }),
  entries: frame('entries', MSG_ENTRIES, { entries: list(entry) }),
  ack: frame('ack', MSG_ACK, { vv }),
  ping: frame('ping', MSG_PING, {
    id: uint(),
    sentAt: float,
    vv,
    links: list(linkReport),
    lagMs: float,
    digest: optional(text(1, 128)),
  }),
  pong: frame('pong', MSG_PONG, { id: uint(), sentAt: float }),
  'ae-buckets': frame('ae-buckets', MSG_AE_BUCKETS, {
    round,
    buckets: list(fixed(BUCKET_DIGEST_BYTES), MAX_BUCKETS),
  }),
  'ae-docs': frame('ae-docs', MSG_AE_DOCS, {
    round,
    bucket: uint(0, MAX_BUCKETS),
    docs: list(struct({ doc: docKey, digest: fixed(DOC_DIGEST_BYTES) })),
  }),
  'doc-sv': frame('doc-sv', MSG_DOC_SV, { round, doc: docKey, sv: bytes }),
  'doc-state': frame('doc-state', MSG_DOC_STATE, { round, doc: docKey, update: bytes, sv: nullable(bytes) }),
  'ae-done': frame('ae-done', MSG_AE_DONE, { round, floor: vv }),
  error: frame('error', MSG_ERROR, {
    code: text(1, MAX_ERROR_CODE_BYTES),
    message: text(0, MAX_ERROR_MESSAGE_BYTES),
  }),
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
  if (input.length > maxBytes) throw new ProtocolError(`frame of ${input.length} bytes exceeds limit of ${maxBytes}`);
  const d = decoding.createDecoder(input);
  if (readByte(d, 'magic') !== FRAME_MAGIC) throw new ProtocolError('not a meridian frame');
  const version = readByte(d, 'version');
  if (version !== PROTOCOL_VERSION) throw new ProtocolError(`unsupported protocol version ${version}`);
  const code = readByte(d, 'type');
  const known = BY_CODE.get(code);
  if (known === undefined) throw new ProtocolError(`unknown frame type ${code}`);
  const [type, codec] = known;
  const body = codec.body.read(d, type);
  if (remaining(d) > 0) throw new ProtocolError(`${remaining(d)} trailing bytes after ${type} frame`);
  return { type, ...body } as Frame;
}
