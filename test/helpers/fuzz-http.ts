/**
 * Runs one HTTP fuzz case against a region and checks it: the answer is 2xx
 * or a documented refusal, only a token that covers the request gets 2xx, a
 * refusal changes nothing, and an accepted write leaves no document pending,
 * fits what peers accept and never corrupts text.
 */
import * as Y from 'yjs';
import { ERRORS } from '../../src/errors.js';
import { isValidName } from '../../src/ids.js';
import { SCOPED_PREFIX, type AfterSpec, type BodySpec, type HttpCase } from './fuzz-http-cases.js';
import { corruptStrings, snapshotChange, snapshotDoc, undocumentedAnswer, type DocRef, type FuzzStats } from './fuzz-oracle.js';
import type { FuzzRequest, FuzzResponse, FuzzTarget } from './fuzz-target.js';

/** Tokens of a fuzzed region that checks them: `admin` and `reader` cover every collection, `scoped` only `fz-*`. */
export const FUZZ_TOKENS = [
  { token: 'fuzz-admin-token-0123456789', scope: 'read-write' as const, collections: ['*'], name: 'fuzz admin' },
  { token: 'fuzz-reader-token-0123456789', scope: 'read' as const, collections: ['*'], name: 'fuzz reader' },
  { token: 'fuzz-scoped-token-0123456789', scope: 'read-write' as const, collections: [`${SCOPED_PREFIX}*`], name: 'fuzz scoped' },
];
const [ADMIN, READER, SCOPED] = FUZZ_TOKENS.map((t) => `Bearer ${t.token}`) as [string, string, string];
/** Headers of the fuzzer's own reads and setup writes. */
export const ADMIN_HEADERS: Readonly<Record<string, string>> = { authorization: ADMIN };

export interface HttpRunContext {
  target: FuzzTarget;
  /** Whether the region checks tokens (then the access oracle applies). */
  tokens: boolean;
  /** The region's `limits.yjsUpdateBytes`: what its peers accept per entry. */
  yjsUpdateBytes: number;
  /** A fresh name part, so that cases do not share documents. */
  unique(): string;
  stats?: FuzzStats;
  /** The last `meridian-version` seen, for `meridian-after: last`. */
  lastVersion?: string;
}

export interface HttpOutcome {
  res: FuzzResponse;
  doc: DocRef | null;
  violations: string[];
}

const WRITES: ReadonlySet<string> = new Set(['PUT', 'PATCH', 'POST', 'DELETE']);
const DOC_ROUTES: ReadonlySet<string> = new Set(['put', 'patch', 'ops', 'get', 'delete', 'yjs-get', 'doc-sync']);

/** The small document written before a case with `prelude`: a map, a text with an emoji, a counter and a set. */
export const PRELUDE_OPS = {
  ops: [
    { op: 'set', path: ['a'], value: 1 },
    { op: 'set', path: ['o'], value: { x: 1 } },
    { op: 'insertText', path: ['t'], index: 0, text: '😀ab' },
    { op: 'increment', path: ['n'], by: 2 },
    { op: 'add', path: ['s'], value: 'x' },
  ],
};

/** Sends one case (after its prelude) and returns what it broke. */
export async function runHttpCase(ctx: HttpRunContext, c: HttpCase): Promise<HttpOutcome> {
  const id = c.id === null || isValidName(c.id) ? `${c.id ?? 'f'}-${ctx.unique()}` : c.id;
  // '.' and '..' are valid names, but a URL cannot address them (the path is normalised first).
  const addressable = (name: string): boolean => isValidName(name) && name !== '.' && name !== '..';
  const doc = addressable(c.collection) && addressable(id) ? { collection: c.collection, id } : null;
  if (c.prelude && doc !== null) await sendOps(ctx.target, doc, PRELUDE_OPS);
  const before = doc === null ? null : await snapshotDoc(ctx.target, doc, ADMIN_HEADERS);
  const req = buildRequest(ctx, c, id);
  const res = await ctx.target.send(req);
  ctx.stats?.countAnswer(res);
  const version = res.headers['meridian-version'];
  if (version !== undefined) ctx.lastVersion = version;
  const violations: string[] = [];
  const answer = c.method === 'HEAD' ? headProblem(res) : undocumentedAnswer(res);
  if (answer !== null) violations.push(`undocumented answer to ${describe(req)}: ${answer}`);
  if (res.status < 300 && !permitted(ctx, c)) violations.push(`${describe(req)} with ${c.auth} token answered ${res.status}`);
  if (doc !== null && before !== null) {
    const after = await snapshotDoc(ctx.target, doc, ADMIN_HEADERS);
    // 504 quorum_timeout is a write that stands locally; every other refusal must leave the document as it was.
    if (res.status >= 400 && res.status !== 504) {
      const change = snapshotChange(before, after);
      if (change !== null) violations.push(`refused ${res.status} but the document changed: ${change}`);
    }
    if (res.status < 300 && WRITES.has(c.method) && DOC_ROUTES.has(c.route)) {
      violations.push(...(await acceptedWriteProblems(ctx, c, doc, before.yjsStatus === 200 ? before.yjs : null, after.json)));
    }
  }
  return { res, doc, violations };
}

/** What an accepted write must not do: leave the document pending, outgrow peers' limit, or corrupt text. */
async function acceptedWriteProblems(ctx: HttpRunContext, c: HttpCase, doc: DocRef, stateBefore: Buffer | null, jsonAfter: string): Promise<string[]> {
  const problems: string[] = [];
  const sync = await ctx.target.send({ method: 'GET', path: '/v1/sync', headers: ADMIN_HEADERS });
  const pending = (JSON.parse(sync.body.toString('utf8')) as { pendingDocs?: number }).pendingDocs;
  if (pending !== 0) problems.push(`an accepted write left ${String(pending)} document(s) pending`);
  const sv = stateBefore === null ? Y.encodeStateVector(new Y.Doc()) : Y.encodeStateVectorFromUpdate(stateBefore);
  const diff = await ctx.target.send({
    method: 'GET', path: `/v1/docs/${doc.collection}/${doc.id}/yjs?sv=${Buffer.from(sv).toString('base64url')}`, headers: ADMIN_HEADERS,
  });
  if (diff.status === 200 && diff.body.length > ctx.yjsUpdateBytes) {
    problems.push(`an accepted write made a ${diff.body.length}-byte update; peers accept ${ctx.yjsUpdateBytes}`);
  }
  const corrupt = jsonAfter.length > 0 && jsonAfter.startsWith('{') ? corruptStrings(JSON.parse(jsonAfter)) : [];
  if (corrupt.length > 0 && !inputHasOddText(c)) {
    problems.push(`text corrupted: ${JSON.stringify(corrupt.slice(0, 3))}`);
  }
  return problems;
}

/** Whether the case itself sent lone surrogates or U+FFFD (then finding them stored is no corruption). */
function inputHasOddText(c: HttpCase): boolean {
  if (c.body === null || (c.body.kind !== 'json' && c.body.kind !== 'ops')) return false;
  const value = c.body.kind === 'json' ? c.body.value : c.body.ops;
  return corruptStrings(value).length > 0;
}

/** The access a case needs, checked against the token it carries. */
function permitted(ctx: HttpRunContext, c: HttpCase): boolean {
  if (!ctx.tokens) return true;
  const path = c.route === 'health' || c.route === 'raw' ? c.rawPath : '/v1/';
  if (!path.startsWith('/v1/')) return true;
  if (c.auth === 'none' || c.auth === 'garbage') return false;
  if (WRITES.has(c.method) && c.auth === 'reader') return false;
  // Replication status reveals every collection: only tokens that cover every collection may read it.
  if (c.route === 'sync' || path.startsWith('/v1/sync')) return c.auth !== 'scoped';
  return c.auth !== 'scoped' || c.collection.startsWith(SCOPED_PREFIX);
}

function headProblem(res: FuzzResponse): string | null {
  if (res.status < 300) return null;
  const documented = new Set<number>(Object.values(ERRORS));
  // A HEAD answer has no body to name its code: any documented status stands, 500 never does.
  return documented.has(res.status) && res.status !== 500 ? null : `HEAD answered ${res.status}`;
}

function describe(req: FuzzRequest): string {
  return `${req.method} ${req.path.slice(0, 120)}`;
}

async function sendOps(target: FuzzTarget, doc: DocRef, body: unknown): Promise<void> {
  const res = await target.send({
    method: 'POST', path: `/v1/docs/${doc.collection}/${doc.id}/ops`,
    headers: { ...ADMIN_HEADERS, 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify(body)),
  });
  if (res.status !== 200) throw new Error(`prelude write answered ${res.status}: ${res.body.toString('utf8').slice(0, 200)}`);
}

/** The bytes of a case: path, headers and body. */
export function buildRequest(ctx: HttpRunContext, c: HttpCase, id: string): FuzzRequest {
  const base = `/v1/docs/${c.collection}/${id}`;
  const paths: Record<HttpCase['route'], string> = {
    put: base, patch: base, ops: `${base}/ops`, get: base, delete: base,
    list: `/v1/docs/${c.collection}${c.query === '' ? '' : `?${c.query}`}`,
    'yjs-get': `${base}/yjs${c.query === '' ? '' : `?${c.query}`}`,
    sync: '/v1/sync', 'doc-sync': `${base}/sync`, health: c.rawPath, raw: c.rawPath,
  };
  const headers: Record<string, string> = {};
  const auth = { admin: ADMIN, reader: READER, scoped: SCOPED, garbage: 'Bearer not-a-token', none: null }[c.auth];
  if (auth !== null) headers['authorization'] = auth;
  const after = afterHeader(ctx, c.after);
  if (after !== null) headers['meridian-after'] = after;
  if (c.waitMs !== null) headers['meridian-wait-ms'] = c.waitMs;
  if (c.replicas !== null) headers['meridian-replicas'] = c.replicas;
  const withBody = c.body !== null && !['GET', 'HEAD', 'OPTIONS'].includes(c.method);
  if (withBody && c.contentType !== null) headers['content-type'] = c.contentType;
  return { method: c.method, path: paths[c.route], headers, ...(withBody && c.body !== null ? { body: bodyBytes(c.body) } : {}) };
}

function afterHeader(ctx: HttpRunContext, after: AfterSpec): string | null {
  switch (after.kind) {
    case 'none':
      return null;
    case 'last':
      return ctx.lastVersion ?? null;
    case 'unreachable':
      return `v1.${Buffer.from(JSON.stringify([['zz-fuzz~000000000000', after.seq]])).toString('base64url')}`;
    case 'raw':
      return after.value.replace(/[^\x20-\x7e]/g, '?');
  }
}

/** Builds a body; wide and deep bodies are made here, not by fast-check. */
export function bodyBytes(body: BodySpec): Buffer {
  switch (body.kind) {
    case 'json':
      return Buffer.from(JSON.stringify(body.value) ?? 'null');
    case 'ops':
      return Buffer.from(JSON.stringify(body.ops) ?? 'null');
    case 'deep':
      return Buffer.from(body.array ? `{"a":${'['.repeat(body.depth)}${']'.repeat(body.depth)}}` : `${'{"a":'.repeat(body.depth)}1${'}'.repeat(body.depth)}`);
    case 'wide':
      return Buffer.from(body.shape === 'keys'
        ? `{${Array.from({ length: body.count }, (_, i) => `"k${i}":{}`).join(',')}}`
        : `{"a":[${Array.from({ length: body.count }, () => '{}').join(',')}]}`);
    case 'malformed':
      return Buffer.from(body.text);
    case 'oversize':
      return Buffer.from(`{"a":"${'a'.repeat(body.bytes)}"}`);
    case 'bytes':
      return Buffer.from(body.bytes);
    case 'empty':
      return Buffer.alloc(0);
  }
}
