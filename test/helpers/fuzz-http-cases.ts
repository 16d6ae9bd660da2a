/**
 * Arbitraries for HTTP requests as an outside client can send them: routes
 * and methods, odd and overlong names, bodies (random, deep, wide, malformed
 * JSON, wrong content types), session headers, tokens and `/ops` payloads.
 * A case is a description; `fuzz-http.ts` turns it into bytes at run time,
 * so that a 90,000-object body is not built by fast-check (or shrunk).
 */
import fc from 'fast-check';

/** Which token a request carries (see `FUZZ_TOKENS`). */
export type AuthSpec = 'none' | 'admin' | 'reader' | 'scoped' | 'garbage';

export type RouteKind =
  | 'put' | 'patch' | 'ops' | 'get' | 'delete' | 'list' | 'yjs-get' | 'sync' | 'doc-sync' | 'health' | 'raw';

/** Bodies, by shape; `wide` and `deep` are built when the request is. */
export type BodySpec =
  | { kind: 'json'; value: unknown }
  | { kind: 'deep'; depth: number; array: boolean }
  | { kind: 'wide'; count: number; shape: 'keys' | 'array' }
  | { kind: 'malformed'; text: string }
  | { kind: 'oversize'; bytes: number }
  | { kind: 'ops'; ops: unknown }
  | { kind: 'bytes'; bytes: Uint8Array }
  | { kind: 'empty' };

/** `meridian-after`: none, the last version this case saw, one no region will reach, or garbage. */
export type AfterSpec = { kind: 'none' } | { kind: 'last' } | { kind: 'unreachable'; seq: number } | { kind: 'raw'; value: string };

export interface HttpCase {
  route: RouteKind;
  method: string;
  /** Path segments, percent-encoded, or null for a fresh valid name chosen at run time. */
  collection: string;
  id: string | null;
  /** Query string (without `?`) for list, yjs-get and raw routes. */
  query: string;
  /** A raw path for the `raw` and `health` routes. */
  rawPath: string;
  body: BodySpec | null;
  contentType: string | null;
  after: AfterSpec;
  waitMs: string | null;
  replicas: string | null;
  auth: AuthSpec;
  /** Write a small document (text, counter, set, map) first, so that a refusal has something to change. */
  prelude: boolean;
}

/** Collections the scoped token may and may not reach. */
export const SCOPED_PREFIX = 'fz-';
const VALID_COLLECTIONS = ['fz-a', 'fz-b', 'notes', 'A.b_c~d-1'];

/** Percent-encodes every byte of the UTF-8 form that is not unreserved. */
export function encodeSegment(s: string): string {
  let out = '';
  for (const byte of Buffer.from(s, 'utf8')) {
    const ch = String.fromCharCode(byte);
    out += /[A-Za-z0-9._~-]/.test(ch) ? ch : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

const oddText = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.string({ unit: 'grapheme', maxLength: 12 }),
  fc.constantFrom('..', '.', '', ' ', '\u0000', 'a/b', '😀', 'é', '\ud83d', '__proto__', 'constructor'),
);

/** A collection or id segment: mostly valid, sometimes odd, overlong, or raw percent noise. */
const segment = (valid: fc.Arbitrary<string>): fc.Arbitrary<string> =>
  fc.oneof(
    { arbitrary: valid, weight: 8 },
    { arbitrary: oddText.map(encodeSegment), weight: 2 },
    { arbitrary: fc.integer({ min: 120, max: 1200 }).map((n) => 'x'.repeat(n)), weight: 1 },
    { arbitrary: fc.constantFrom('%', '%zz', '%00', '%2F', '%2e%2e', 'a%20b', '%C0%AF', '%ED%A0%BD'), weight: 1 },
  );

const keyArb = fc.constantFrom('a', 'b', 't', 'n', 's', 'o', '__proto__', '\u0000k', '', '😀', 'é');
const pathArb = fc.oneof(
  { arbitrary: fc.array(keyArb, { minLength: 1, maxLength: 3 }), weight: 8 },
  { arbitrary: fc.constantFrom<unknown>([], 'a', [1], null, Array.from({ length: 70 }, () => 'a')), weight: 1 },
);
const textArb = fc.oneof(
  fc.constantFrom('😀', 'X', '', 'ab', '\ud83d', '\ude00', 'e\u0301', '👩‍👩‍👧', '\uFFFD'),
  fc.string({ unit: 'grapheme', maxLength: 6 }),
);
/** Indexes and lengths: small ones that land inside surrogate pairs, and out-of-range numbers. */
const indexArb = fc.oneof(
  { arbitrary: fc.nat(6), weight: 8 },
  { arbitrary: fc.constantFrom<unknown>(-1, 1.5, 2 ** 31, 2 ** 53, Number.MAX_SAFE_INTEGER, '1', null), weight: 1 },
);
const scalarArb = fc.oneof(fc.constantFrom<unknown>(null, true, 'x', '😀', 0, -1, 1.5), fc.integer());

const validOp = fc.oneof(
  fc.record({ op: fc.constant('set'), path: pathArb, value: fc.jsonValue({ maxDepth: 3 }) }),
  fc.record({ op: fc.constant('delete'), path: pathArb }),
  fc.record({
    op: fc.constant('increment'), path: pathArb,
    by: fc.oneof(fc.integer({ min: -5, max: 5 }), fc.constantFrom<unknown>(Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 1.5, '1')),
  }),
  fc.record({ op: fc.constant('add'), path: pathArb, value: scalarArb }),
  fc.record({ op: fc.constant('remove'), path: pathArb, value: scalarArb }),
  fc.record({ op: fc.constant('insertText'), path: pathArb, index: indexArb, text: textArb }),
  fc.record({ op: fc.constant('deleteText'), path: pathArb, index: indexArb, length: indexArb }),
);

/** One op, sometimes broken: a field dropped, one added, or the op renamed. */
const mutatedOp = fc.tuple(validOp, fc.nat(9), fc.string({ maxLength: 6 })).map(([op, how, word]): unknown => {
  const o: Record<string, unknown> = { ...op };
  if (how === 0) delete o[Object.keys(o)[Object.keys(o).length - 1] ?? 'op'];
  if (how === 1) o[word || 'extra'] = 1;
  if (how === 2) o['op'] = word;
  if (how === 3) return [o];
  return o;
});

const opsPayload: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: fc.array(mutatedOp, { minLength: 1, maxLength: 5 }).map((ops) => ({ ops })), weight: 6 },
  { arbitrary: fc.array(mutatedOp, { minLength: 1, maxLength: 3 }), weight: 2 },
  { arbitrary: fc.constantFrom<unknown>({ ops: [] }, {}, [], null, 'ops', { ops: {} }, { ops: [], extra: 1 }), weight: 1 },
  { arbitrary: fc.constant({ ops: Array.from({ length: 1001 }, () => ({ op: 'delete', path: ['a'] })) }), weight: 1 },
);

const bodyArb = (maxWide: number): fc.Arbitrary<BodySpec> =>
  fc.oneof(
    { arbitrary: fc.jsonValue({ maxDepth: 4 }).map((value): BodySpec => ({ kind: 'json', value })), weight: 3 },
    {
      arbitrary: fc.dictionary(keyArb, fc.jsonValue({ maxDepth: 3 }), { maxKeys: 4 }).map((value): BodySpec => ({ kind: 'json', value })),
      weight: 6,
    },
    { arbitrary: fc.record({ kind: fc.constant('deep' as const), depth: fc.integer({ min: 1, max: 400 }), array: fc.boolean() }), weight: 1 },
    {
      arbitrary: fc.record({ kind: fc.constant('wide' as const), count: fc.integer({ min: 1, max: maxWide }), shape: fc.constantFrom('keys' as const, 'array' as const) }),
      weight: 1,
    },
    {
      arbitrary: fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('{', '{"a":', '[1,2', '{"a":1}}', '\u0000', 'null', '{"__proto__":{"x":1}}'))
        .map((text): BodySpec => ({ kind: 'malformed', text })),
      weight: 2,
    },
    { arbitrary: fc.constant<BodySpec>({ kind: 'oversize', bytes: 1024 * 1024 + 16 }), weight: 1 },
    { arbitrary: opsPayload.map((ops): BodySpec => ({ kind: 'ops', ops })), weight: 4 },
    { arbitrary: fc.uint8Array({ minLength: 1, maxLength: 64 }).map((bytes): BodySpec => ({ kind: 'bytes', bytes })), weight: 1 },
    { arbitrary: fc.constant<BodySpec>({ kind: 'empty' }), weight: 1 },
  );

const contentTypeArb = fc.oneof(
  { arbitrary: fc.constant('application/json'), weight: 8 },
  {
    arbitrary: fc.constantFrom<string | null>(
      null, 'text/plain', 'application/merge-patch+json', 'application/octet-stream', 'application/x-www-form-urlencoded',
      'application/json; charset=latin1', 'application/json; charset=utf-8', 'APPLICATION/JSON', 'multipart/form-data; boundary=x', 'garbage',
    ),
    weight: 3,
  },
);

const afterArb: fc.Arbitrary<AfterSpec> = fc.oneof(
  { arbitrary: fc.constant<AfterSpec>({ kind: 'none' }), weight: 8 },
  { arbitrary: fc.constant<AfterSpec>({ kind: 'last' }), weight: 2 },
  {
    arbitrary: fc.constantFrom(1_000, 2 ** 31, Number.MAX_SAFE_INTEGER).map((seq): AfterSpec => ({ kind: 'unreachable', seq })),
    weight: 1,
  },
  {
    arbitrary: fc.oneof(fc.string({ maxLength: 30 }), fc.constantFrom('v1.', 'v1.W10', 'v1.W1siYSIsMF1d', 'v2.xx', `v1.${'A'.repeat(20_000)}`))
      .map((value): AfterSpec => ({ kind: 'raw', value })),
    weight: 1,
  },
);

/** Header values node:http accepts (printable ASCII), including the out-of-range numbers. */
const numberHeader = (valid: fc.Arbitrary<number>): fc.Arbitrary<string | null> =>
  fc.oneof(
    { arbitrary: fc.constant(null), weight: 8 },
    { arbitrary: valid.map(String), weight: 2 },
    { arbitrary: fc.constantFrom('', '-1', '1.5', '1e3', 'abc', '99999999999', String(2 ** 53), ' 5', '0x10'), weight: 1 },
  );

const ROUTE_METHOD: Record<RouteKind, string> = {
  put: 'PUT', patch: 'PATCH', ops: 'POST', get: 'GET', delete: 'DELETE', list: 'GET', 'yjs-get': 'GET',
  sync: 'GET', 'doc-sync': 'GET', health: 'GET', raw: 'GET',
};

const routeArb = fc.constantFrom<RouteKind>(
  'put', 'put', 'patch', 'ops', 'ops', 'ops', 'get', 'delete', 'list', 'yjs-get', 'sync', 'doc-sync', 'health', 'raw',
);

/** Options: `maxWide` bounds the wide bodies drawn at random (the 90,000-object body is an explicit example). */
export function httpCaseArb(options: { maxWide?: number } = {}): fc.Arbitrary<HttpCase> {
  return fc
    .record({
      route: routeArb,
      otherMethod: fc.option(fc.constantFrom('GET', 'PUT', 'POST', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'), { freq: 8 }),
      collection: segment(fc.constantFrom(...VALID_COLLECTIONS)),
      id: fc.option(segment(fc.constantFrom('doc', 'x.y', '~z')), { freq: 4 }),
      query: fc.oneof(
        fc.constant(''),
        fc.constantFrom('limit=1', 'limit=0', 'limit=1001', 'limit=abc', 'after=%00', 'after=a&limit=5', 'sv=AA%3D%3D', 'sv=%%%', 'sv=AAAA', 'sv=_-_-'),
        fc.uint8Array({ maxLength: 24 }).map((b) => `sv=${Buffer.from(b).toString('base64url')}`),
      ),
      rawPath: fc.constantFrom(
        '/healthz', '/readyz', '/metrics', '/', '//', '/v1', '/v1/docs', '/v1/docs//x', '/v1/docs/a/b/c/d', '/v1/replicate',
        '/v1/replicate/challenge', '/v1/docs/a/%2e%2e/yjs', '/v1/sync?x=1', '/healthz?%', '/v1/docs/a/b/conflicts',
      ),
      body: bodyArb(options.maxWide ?? 3000),
      contentType: contentTypeArb,
      after: afterArb,
      waitMs: numberHeader(fc.constantFrom(0, 1, 20)),
      replicas: numberHeader(fc.integer({ min: 0, max: 4 })),
      auth: fc.constantFrom<AuthSpec>('admin', 'admin', 'admin', 'reader', 'scoped', 'none', 'garbage'),
      prelude: fc.boolean(),
    })
    .map((r): HttpCase => ({
      route: r.route,
      method: r.otherMethod ?? ROUTE_METHOD[r.route],
      collection: r.collection,
      id: r.id,
      query: r.query,
      rawPath: r.rawPath,
      body: r.body,
      contentType: r.contentType,
      after: r.after,
      waitMs: r.waitMs,
      replicas: r.replicas,
      auth: r.auth,
      prelude: r.prelude,
    }));
}

/** A valid PUT of a body the region should accept: the base of the explicit examples. */
export function plainCase(overrides: Partial<HttpCase>): HttpCase {
  return {
    route: 'put', method: 'PUT', collection: 'fz-a', id: null, query: '', rawPath: '/healthz',
    body: { kind: 'json', value: { a: 1 } }, contentType: 'application/json', after: { kind: 'none' },
    waitMs: null, replicas: null, auth: 'admin', prelude: false, ...overrides,
  };
}
