import * as encoding from 'lib0/encoding';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { DocKey, RegionId, VersionVector, WriterId } from '../src/ids.js';
import {
  FRAME_MAGIC,
  MAX_BUCKETS,
  MAX_REASON_BYTES,
  MAX_ROUND,
  MAX_SEQ,
  MAX_WRITERS,
  MSG_ACK,
  MSG_AE_BUCKETS,
  MSG_AE_DOCS,
  MSG_DOC_STATE,
  MSG_ENTRIES,
  MSG_PING,
  MSG_PONG,
  MSG_SYNC_REQUEST,
  PROTOCOL_VERSION,
  ProtocolError,
  decodeFrame,
  encodeFrame,
  type Frame,
} from '../src/replication/protocol.js';
import { rawFrame as raw } from './helpers/raw-frame.js';

const LIMIT = 1 << 20;

const nameArb = fc.stringMatching(/^[A-Za-z0-9._~-]{1,12}$/);
const docArb = fc.tuple(nameArb, nameArb).map(([c, id]) => `${c}/${id}` as DocKey);
const idArb = fc.string({ unit: 'binary', minLength: 1, maxLength: 16 });
const writerArb = idArb.map((s) => s as WriterId);
const regionArb = idArb.map((s) => s as RegionId);
/** Sequence numbers, timestamps and counters: below MAX_SEQ. */
const natArb = fc.integer({ min: 0, max: MAX_SEQ - 1 });
const roundArb = fc.integer({ min: 0, max: MAX_ROUND - 1 });
const msArb = fc.double({ min: 0, max: 1e13, noNaN: true, noDefaultInfinity: true });
const bytesArb = fc.uint8Array({ maxLength: 64 });
/** Writers named in version vectors: writer ids (`<region>~<hex>`), as the codec requires. */
const vvWriterArb = fc
  .tuple(fc.stringMatching(/^[a-z0-9-]{1,12}$/), fc.stringMatching(/^[0-9a-f]{1,12}$/))
  .map(([region, hex]) => `${region}~${hex}` as WriterId);
const vvArb: fc.Arbitrary<VersionVector> = fc
  .uniqueArray(fc.tuple(vvWriterArb, natArb), { selector: ([w]) => w, maxLength: 6 })
  .map((pairs) => new Map(pairs));

const frameArb: fc.Arbitrary<Frame> = fc.oneof(
  vvArb.map((vv): Frame => ({ type: 'sync-request', vv })),
  vvArb.map((vv): Frame => ({ type: 'ack', vv })),
  fc
    .array(
      fc.record({ origin: writerArb, seq: fc.integer({ min: 1, max: MAX_SEQ - 1 }), doc: docArb, ts: natArb, update: bytesArb }),
      { maxLength: 5 },
    )
    .map((entries): Frame => ({ type: 'entries', entries })),
  fc.record({
    id: natArb,
    sentAt: msArb,
    vv: vvArb,
    links: fc.array(fc.record({ region: regionArb, state: fc.constantFrom('up' as const, 'suspect' as const, 'down' as const) }), { maxLength: 4 }),
    lagMs: msArb,
    digest: fc.option(fc.stringMatching(/^[0-9a-f]{1,64}$/), { nil: undefined }),
  }).map((p): Frame => ({ type: 'ping', ...p })),
  fc.record({ id: natArb, sentAt: msArb }).map((p): Frame => ({ type: 'pong', ...p })),
  fc
    .record({ round: roundArb, buckets: fc.array(fc.uint8Array({ minLength: 8, maxLength: 8 }), { maxLength: 64 }) })
    .map((p): Frame => ({ type: 'ae-buckets', ...p })),
  fc
    .record({
      round: roundArb,
      bucket: fc.integer({ min: 0, max: MAX_BUCKETS - 1 }),
      docs: fc.array(fc.record({ doc: docArb, digest: fc.uint8Array({ minLength: 32, maxLength: 32 }) }), { maxLength: 5 }),
    })
    .map((p): Frame => ({ type: 'ae-docs', ...p })),
  fc.record({ round: roundArb, doc: docArb, sv: bytesArb, parts: fc.option(fc.uint8Array({ minLength: 64, maxLength: 64 }), { nil: null }) }).map((p): Frame => ({ type: 'doc-sv', ...p })),
  fc
    .record({ round: roundArb, doc: docArb, update: bytesArb, kind: fc.constantFrom('offer' as const, 'answer' as const) })
    .map((p): Frame => ({ type: 'doc-replace', ...p })),
  fc
    .record({ round: roundArb, doc: docArb, update: bytesArb, sv: fc.option(bytesArb, { nil: null }) })
    .map((p): Frame => ({ type: 'doc-state', ...p })),
  fc.record({ round: roundArb, floor: vvArb }).map((p): Frame => ({ type: 'ae-done', ...p })),
  fc
    .record({ code: fc.stringMatching(/^[a-z_]{1,20}$/), message: fc.string({ unit: 'binary', maxLength: 40 }) })
    .map((p): Frame => ({ type: 'error', ...p })),
);

/** Decodes, and asserts that anything other than a frame is a well-formed ProtocolError. */
function decodeOrProtocolError(bytes: Uint8Array): Frame | ProtocolError {
  try {
    return decodeFrame(bytes, LIMIT);
  } catch (err) {
    expect(err).toBeInstanceOf(ProtocolError);
    const reason = (err as ProtocolError).reason;
    expect(reason.length).toBeGreaterThan(0);
    expect(Buffer.byteLength(reason)).toBeLessThanOrEqual(MAX_REASON_BYTES);
    return err as ProtocolError;
  }
}

function expectProtocolError(bytes: Uint8Array, reason: RegExp): void {
  const out = decodeOrProtocolError(bytes);
  expect(out).toBeInstanceOf(ProtocolError);
  expect((out as ProtocolError).reason).toMatch(reason);
}

describe('frame codec', () => {
  it('decodes every encoded frame to an equal frame', () => {
    fc.assert(
      fc.property(frameArb, (frame) => {
        expect(decodeFrame(encodeFrame(frame), LIMIT)).toEqual(frame);
      }),
      { numRuns: 500 },
    );
  });

  it('rejects every proper prefix and any trailing byte of a valid frame', () => {
    fc.assert(
      fc.property(frameArb, fc.integer({ min: 0, max: 255 }), (frame, extra) => {
        const bytes = encodeFrame(frame);
        for (let n = 0; n < bytes.length; n++) expectProtocolError(bytes.subarray(0, n), /./);
        expectProtocolError(new Uint8Array([...bytes, extra]), /trailing/);
      }),
      { numRuns: 200 },
    );
  });

  it('throws only ProtocolError on random bytes, with or without a valid header', () => {
    const header = fc.integer({ min: 1, max: 13 }).map((code) => [FRAME_MAGIC, PROTOCOL_VERSION, code]);
    const input = fc.oneof(
      fc.uint8Array({ maxLength: 200 }),
      fc.tuple(header, fc.uint8Array({ maxLength: 200 })).map(([h, body]) => new Uint8Array([...h, ...body])),
    );
    fc.assert(
      fc.property(input, (bytes) => {
        const out = decodeOrProtocolError(bytes);
        if (!(out instanceof ProtocolError)) expect(decodeFrame(encodeFrame(out), LIMIT)).toEqual(out);
      }),
      { numRuns: 3000 },
    );
  });

  it('throws only ProtocolError when one byte of a valid frame is changed', () => {
    fc.assert(
      fc.property(frameArb, fc.nat(), fc.integer({ min: 0, max: 255 }), (frame, at, value) => {
        const bytes = encodeFrame(frame);
        bytes[at % bytes.length] = value;
        decodeOrProtocolError(bytes);
      }),
      { numRuns: 2000 },
    );
  });

  it('refuses frames over the size limit before reading them', () => {
    const bytes = encodeFrame({ type: 'doc-sv', round: 1, doc: 'a/b' as DocKey, sv: new Uint8Array(100), parts: null });
    expect(decodeFrame(bytes, bytes.length).type).toBe('doc-sv');
    expect(() => decodeFrame(bytes, bytes.length - 1)).toThrow(/exceeds limit/);
  });

  it('rejects wrong magic, unknown versions and unknown frame types', () => {
    const good = encodeFrame({ type: 'pong', id: 1, sentAt: 2 });
    expectProtocolError(new Uint8Array([0x00, ...good.subarray(1)]), /not a meridian frame/);
    expectProtocolError(new Uint8Array([FRAME_MAGIC, PROTOCOL_VERSION + 1, ...good.subarray(2)]), new RegExp(`unsupported protocol version ${PROTOCOL_VERSION + 1}`));
    expectProtocolError(new Uint8Array([FRAME_MAGIC, PROTOCOL_VERSION, 200]), /unknown frame type 200/);
    expectProtocolError(new Uint8Array(), /truncated/);
  });

  it('checks counts and lengths against the remaining bytes before allocating', () => {
    const hugeCount = raw(MSG_SYNC_REQUEST, (e) => encoding.writeVarUint(e, MAX_WRITERS));
    expectProtocolError(hugeCount, /truncated frame: vv/);
    expectProtocolError(raw(MSG_SYNC_REQUEST, (e) => encoding.writeVarUint(e, 2 ** 52)), /vv: 4503599627370496 out of range/);
    const hugeUpdate = raw(MSG_DOC_STATE, (e) => {
      encoding.writeVarUint(e, 1);
      encoding.writeVarString(e, 'a/b');
      encoding.writeVarUint(e, 2 ** 40);
    });
    expectProtocolError(hugeUpdate, /truncated frame: update/);
    const tooManyBuckets = raw(MSG_AE_BUCKETS, (e) => {
      encoding.writeVarUint(e, 1);
      encoding.writeVarUint(e, MAX_BUCKETS + 1);
      encoding.writeUint8Array(e, new Uint8Array((MAX_BUCKETS + 1) * 8));
    });
    expectProtocolError(tooManyBuckets, /buckets: 4097 out of range/);
  });

  it('rejects integers beyond the safe range and overlong varuints', () => {
    const nineBytes = raw(MSG_PONG, (e) => encoding.writeUint8Array(e, new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])));
    expectProtocolError(nineBytes, /id: integer too large/);
    const overSafe = raw(MSG_PONG, (e) => encoding.writeUint8Array(e, new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])));
    expectProtocolError(overSafe, /id: integer too large/);
  });

  it('rejects non-finite and negative times', () => {
    for (const sentAt of [Number.NaN, Number.POSITIVE_INFINITY, -1]) {
      const bytes = raw(MSG_PONG, (e) => {
        encoding.writeVarUint(e, 1);
        encoding.writeFloat64(e, sentAt);
      });
      expectProtocolError(bytes, /sentAt: not a finite non-negative number/);
    }
  });

  it('rejects invalid UTF-8, invalid document keys and empty identifiers', () => {
    const badUtf8 = raw(MSG_SYNC_REQUEST, (e) => {
      encoding.writeVarUint(e, 1);
      encoding.writeVarUint8Array(e, new Uint8Array([0xc3, 0x28]));
      encoding.writeVarUint(e, 1);
    });
    expectProtocolError(badUtf8, /writer: invalid UTF-8/);
    const entryWithDoc = (doc: string): Uint8Array =>
      raw(MSG_ENTRIES, (e) => {
        encoding.writeVarUint(e, 1);
        encoding.writeVarString(e, 'w~1');
        encoding.writeVarUint(e, 1);
        encoding.writeVarString(e, doc);
        encoding.writeVarUint(e, 0);
        encoding.writeVarUint8Array(e, new Uint8Array([0, 0]));
      });
    expect(decodeFrame(entryWithDoc('a/b'), LIMIT).type).toBe('entries');
    for (const doc of ['ab/', '/ab', 'a b/c', 'a/b/c', 'ab', 'é/b']) expectProtocolError(entryWithDoc(doc), /doc/);
    const emptyWriter = raw(MSG_SYNC_REQUEST, (e) => {
      encoding.writeVarUint(e, 1);
      encoding.writeVarString(e, '');
      encoding.writeVarUint(e, 1);
      encoding.writeUint8(e, 0);
    });
    expectProtocolError(emptyWriter, /writer: length 0 out of range/);
    for (const writer of ['w', 'w~', '~1', 'W~1', 'w~1g', `${'w'.repeat(33)}~1`, `w~${'1'.repeat(33)}`]) {
      const notAWriter = raw(MSG_ACK, (e) => {
        encoding.writeVarUint(e, 1);
        encoding.writeVarString(e, writer);
        encoding.writeVarUint(e, 1);
      });
      expectProtocolError(notAWriter, /writer: a writer of \d+ characters is not a writer id/);
    }
  });

  it('rejects duplicate writers, seq 0, unknown link states, bad flags and buckets out of range', () => {
    const dup = raw(MSG_SYNC_REQUEST, (e) => {
      encoding.writeVarUint(e, 2);
      for (let i = 0; i < 2; i++) {
        encoding.writeVarString(e, 'w~1');
        encoding.writeVarUint(e, i);
      }
    });
    expectProtocolError(dup, /duplicate writer/);
    const seqZero = raw(MSG_ENTRIES, (e) => {
      encoding.writeVarUint(e, 1);
      encoding.writeVarString(e, 'w~1');
      encoding.writeVarUint(e, 0);
      encoding.writeUint8Array(e, new Uint8Array(10));
    });
    expectProtocolError(seqZero, /seq: 0 out of range/);
    const badState = raw(MSG_PING, (e) => {
      encoding.writeVarUint(e, 1);
      encoding.writeFloat64(e, 1);
      encoding.writeVarUint(e, 0);
      encoding.writeVarUint(e, 1);
      encoding.writeVarString(e, 'eu');
      encoding.writeUint8(e, 3);
    });
    expectProtocolError(badState, /unknown state/);
    const badFlag = raw(MSG_DOC_STATE, (e) => {
      encoding.writeVarUint(e, 1);
      encoding.writeVarString(e, 'a/b');
      encoding.writeVarUint8Array(e, new Uint8Array([1]));
      encoding.writeUint8(e, 2);
    });
    expectProtocolError(badFlag, /sv: presence flag/);
    const badBucket = raw(MSG_AE_DOCS, (e) => {
      encoding.writeVarUint(e, 1);
      encoding.writeVarUint(e, MAX_BUCKETS);
      encoding.writeVarUint(e, 0);
    });
    expectProtocolError(badBucket, /bucket: 4096 out of range/);
  });

  it('refuses to encode values that a peer would reject', () => {
    const doc = 'a/b' as DocKey;
    expect(() => encodeFrame({ type: 'pong', id: -1, sentAt: 0 })).toThrow(RangeError);
    expect(() => encodeFrame({ type: 'pong', id: 1.5, sentAt: 0 })).toThrow(RangeError);
    expect(() => encodeFrame({ type: 'pong', id: 1, sentAt: Number.NaN })).toThrow(RangeError);
    expect(() => encodeFrame({ type: 'doc-sv', round: 0, doc: 'nope' as DocKey, sv: new Uint8Array(), parts: null })).toThrow(RangeError);
    expect(() => encodeFrame({ type: 'ae-docs', round: 0, bucket: 0, docs: [{ doc, digest: new Uint8Array(31) }] })).toThrow(RangeError);
    expect(() => encodeFrame({ type: 'ae-buckets', round: 0, buckets: [new Uint8Array(9)] })).toThrow(RangeError);
    const entry = { origin: 'w~1' as WriterId, seq: 0, doc, ts: 0, update: new Uint8Array() };
    expect(() => encodeFrame({ type: 'entries', entries: [entry] })).toThrow(RangeError);
  });

  it('returns copies of byte arrays, so the input buffer can be reused', () => {
    const update = new Uint8Array([1, 2, 3]);
    const input = Buffer.from(encodeFrame({ type: 'doc-state', round: 3, doc: 'a/b' as DocKey, update, sv: null }));
    const frame = decodeFrame(input, LIMIT);
    input.fill(0);
    expect(frame).toEqual({ type: 'doc-state', round: 3, doc: 'a/b', update, sv: null });
    expect(Buffer.isBuffer((frame as { update: Uint8Array }).update)).toBe(false);
  });
});
