import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { MeridianError } from '../src/errors.js';
import type { VersionVector, WriterId } from '../src/ids.js';
import { MAX_TOKEN_CHARS, decodeVersion, encodeVersion } from '../src/docs/token.js';

const writer = fc.stringMatching(/^[a-z0-9-]{1,12}~[A-Za-z0-9]{1,10}$/).map((s) => s as WriterId);
const vector = fc
  .array(fc.tuple(writer, fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })), { maxLength: 20 })
  .map((pairs) => new Map(pairs) as VersionVector);

function withoutZeros(vv: VersionVector): VersionVector {
  return new Map([...vv].filter(([, seq]) => seq > 0));
}

function tokenOf(json: unknown): string {
  return `v1.${Buffer.from(JSON.stringify(json)).toString('base64url')}`;
}

function expectInvalid(token: string): void {
  try {
    decodeVersion(token);
  } catch (err) {
    expect(err).toBeInstanceOf(MeridianError);
    expect((err as MeridianError).code).toBe('invalid_token');
    expect((err as MeridianError).status).toBe(400);
    return;
  }
  throw new Error(`decoded ${token}`);
}

describe('version tokens', () => {
  test('round-trip any version vector (zero entries carry no information and are dropped)', () => {
    fc.assert(
      fc.property(vector, (vv) => {
        expect(decodeVersion(encodeVersion(vv))).toEqual(withoutZeros(vv));
      }),
    );
  });

  test('are deterministic: insertion order does not change the token', () => {
    fc.assert(
      fc.property(vector, (vv) => {
        const reversed = new Map([...vv].reverse()) as VersionVector;
        expect(encodeVersion(reversed)).toBe(encodeVersion(vv));
      }),
    );
  });

  test('are opaque strings with a version prefix and URL-safe characters', () => {
    const token = encodeVersion(new Map([['us-east~a1' as WriterId, 42]]));
    expect(token).toMatch(/^v1\.[A-Za-z0-9_-]+$/);
    expect(encodeVersion(new Map())).toMatch(/^v1\./);
    expect(decodeVersion(encodeVersion(new Map()))).toEqual(new Map());
  });

  test('reject malformed tokens with invalid_token', () => {
    expectInvalid('');
    expectInvalid('v2.W10');
    expectInvalid('v1.!!!');
    expectInvalid('v1.' + Buffer.from('not json').toString('base64url'));
    expectInvalid(tokenOf({ a: 1 }));
    expectInvalid(tokenOf([['w~1']]));
    expectInvalid(tokenOf([['w~1', 0]]));
    expectInvalid(tokenOf([['w~1', -1]]));
    expectInvalid(tokenOf([['w~1', 1.5]]));
    expectInvalid(tokenOf([['w~1', '3']]));
    expectInvalid(tokenOf([['w~1', 2 ** 60]]));
    expectInvalid(tokenOf([['', 1]]));
    expectInvalid(tokenOf([['x'.repeat(257), 1]]));
    // Duplicates and unsorted writers are not canonical.
    expectInvalid(tokenOf([['a~1', 1], ['a~1', 2]]));
    expectInvalid(tokenOf([['b~1', 1], ['a~1', 2]]));
    // Same vector, other spellings.
    expectInvalid('v1.' + Buffer.from('[ ]').toString('base64url'));
    expectInvalid('v1.W11');
  });

  test('reject tokens over the size cap before decoding them', () => {
    expectInvalid('v1.' + 'A'.repeat(MAX_TOKEN_CHARS));
  });

  test('never throw anything but invalid_token on arbitrary input', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string().map((s) => `v1.${s}`), fc.json().map(tokenOf)), (input) => {
        try {
          const vv = decodeVersion(input);
          // Whatever decodes must re-encode to the same token.
          expect(encodeVersion(vv)).toBe(input);
        } catch (err) {
          expect((err as MeridianError).code).toBe('invalid_token');
        }
      }),
    );
  });
});
