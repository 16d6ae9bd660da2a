/**
 * The field codecs that frames are built from: each writes our own values
 * (RangeError if no peer would accept them) and reads a peer's bytes,
 * checking every count and length against what remains before it reads or
 * allocates, and failing only with {@link ProtocolError}.
 */
import * as decoding from 'lib0/decoding';
import * as encoding from 'lib0/encoding';
import { NAME_PATTERN, isWriterId, type DocKey, type RegionId, type VersionVector, type WriterId } from '../ids.js';
import { MAX_SEQ, MAX_WRITERS } from '../vv.js';

export { MAX_SEQ, MAX_WRITERS } from '../vv.js';

/** Longest region, writer or cluster name, in UTF-8 bytes. */
export const MAX_ID_BYTES = 256;
/** WebSocket close reasons may hold 123 bytes; keep a margin. */
export const MAX_REASON_BYTES = 120;
/** 8 varuint bytes carry 56 bits, enough for every safe integer. */
const MAX_VARUINT_BYTES = 8;

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

export type Encoder = encoding.Encoder;
export type Decoder = decoding.Decoder;

export interface Field<T> {
  /** Fewest bytes an encoded value takes: lets a count be checked against what remains. */
  min: number;
  write(e: Encoder, value: T, what: string): void;
  read(d: Decoder, what: string): T;
}
export type Fields<T> = { [K in keyof T]-?: Field<T[K]> };

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export function remaining(d: Decoder): number {
  return d.arr.length - d.pos;
}

export function need(d: Decoder, n: number, what: string): void {
  if (n > remaining(d)) throw new ProtocolError(`truncated frame: ${what}`);
}

export function readByte(d: Decoder, what: string): number {
  need(d, 1, what);
  return decoding.readUint8(d);
}

export function readVarUint(d: Decoder, what: string): number {
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
export function readCopy(d: Decoder, n: number, what: string): Uint8Array {
  need(d, n, what);
  const out = new Uint8Array(n);
  out.set(decoding.readUint8Array(d, n));
  return out;
}

/** Integers in [min, max), as varuints. */
export function uint(min = 0, max = Number.MAX_SAFE_INTEGER + 1): Field<number> {
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

/**
 * Sequence numbers, timestamps (ms since the epoch) and counters: below
 * {@link MAX_SEQ}, whatever a peer sends.
 */
export const seq = uint(0, MAX_SEQ);

/** A duration or clock reading in ms, as float64: finite, non-negative and below {@link MAX_SEQ}. */
export const float: Field<number> = {
  min: 8,
  write(e, n, what) {
    if (!inMsRange(n)) throw new RangeError(`${what} must be finite, non-negative and below 2^48, got ${n}`);
    encoding.writeFloat64(e, n);
  },
  read(d, what) {
    need(d, 8, what);
    const n = decoding.readFloat64(d);
    if (!inMsRange(n)) throw new ProtocolError(`${what}: not a finite non-negative number below 2^48`);
    return n;
  },
};

function inMsRange(n: number): boolean {
  return Number.isFinite(n) && n >= 0 && n < MAX_SEQ;
}

/** UTF-8 text of minBytes..maxBytes, optionally checked further. */
export function text<T extends string = string>(minBytes: number, maxBytes: number, valid?: (s: string) => boolean): Field<T> {
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

export function isDocKey(s: string): boolean {
  const slash = s.indexOf('/');
  return slash > 0 && NAME_PATTERN.test(s.slice(0, slash)) && NAME_PATTERN.test(s.slice(slash + 1));
}

export const bytes: Field<Uint8Array> = {
  min: 1,
  write: (e, b) => encoding.writeVarUint8Array(e, b),
  read: (d, what) => readCopy(d, readVarUint(d, what), what),
};

export function fixed(len: number): Field<Uint8Array> {
  return {
    min: len,
    write(e, b, what) {
      if (b.length !== len) throw new RangeError(`${what} must be ${len} bytes, got ${b.length}`);
      encoding.writeUint8Array(e, b);
    },
    read: (d, what) => readCopy(d, len, what),
  };
}

export function nullable<T>(field: Field<T>): Field<T | null> {
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
export function optional<T>(field: Field<T>): Field<T | undefined> {
  const inner = nullable(field);
  return {
    min: 1,
    write: (e, v, what) => inner.write(e, v ?? null, what),
    read: (d, what) => inner.read(d, what) ?? undefined,
  };
}

/** One of a few strings, as its index. */
export function oneOf<T extends string>(values: readonly T[]): Field<T> {
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

/** A count, then the items; the count is checked against `max` and the bytes left before any item is read. */
export function list<T>(item: Field<T>, max = Number.MAX_SAFE_INTEGER): Field<T[]> {
  const count = uint(0, max + 1);
  return {
    min: 1,
    write(e, items, what) {
      count.write(e, items.length, what);
      for (const x of items) item.write(e, x, what);
    },
    read(d, what) {
      const n = readVarUint(d, what);
      if (n > max) throw new ProtocolError(`${what}: ${n} out of range, more than the ${max} items a frame may hold`);
      need(d, n * item.min, what);
      const out: T[] = [];
      for (let i = 0; i < n; i++) out.push(item.read(d, what));
      return out;
    },
  };
}

/** Fields in the order they are listed. */
export function struct<T>(fields: Fields<T>): Field<T> {
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

export const writerId = text<WriterId>(1, MAX_ID_BYTES);
export const regionId = text<RegionId>(1, MAX_ID_BYTES);
export const docKey = text<DocKey>(3, 257, isDocKey);
/**
 * A writer named in a peer's version vector: a writer id, or the peer made it
 * up (it would be stored with a floor and relayed for good). Checked on
 * reading only: this region's own vector is written as it is held.
 */
const vvWriter: Field<WriterId> = {
  ...writerId,
  read(d, what) {
    const writer = writerId.read(d, what);
    if (!isWriterId(writer)) throw new ProtocolError(`${what}: a writer of ${writer.length} characters is not a writer id (<region>~<hex>)`);
    return writer;
  },
};
const pairs = list(struct({ writer: vvWriter, seq }), MAX_WRITERS);

/** Count, then (writer, seq) pairs; a writer may appear once, and each seq is below {@link MAX_SEQ}. */
export const vv: Field<VersionVector> = {
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

