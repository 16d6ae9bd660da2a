/**
 * Yjs updates as outside clients can post them to `POST .../yjs`: random
 * bytes, updates made by real `Y.Doc` clients (some sharing a clientID, so
 * their structs collide), those updates truncated or mutated, and updates
 * holding only deletions for clients nobody knows. Each case runs on a fresh
 * document of its own.
 */
import fc from 'fast-check';
import * as encoding from 'lib0/encoding';
import * as Y from 'yjs';
import { PRELUDE_OPS, ADMIN_HEADERS } from './fuzz-http.js';
import { snapshotChange, snapshotDoc, undocumentedAnswer, type DocRef, type FuzzStats } from './fuzz-oracle.js';
import type { FuzzResponse, FuzzTarget } from './fuzz-target.js';

export type Edit =
  | { t: 'set'; key: string; value: string | number | boolean | null }
  | { t: 'map'; key: string }
  | { t: 'text'; name: string; index: number; text: string }
  | { t: 'del'; key: string }
  | { t: 'array'; name: string; value: number };

export type Mutation =
  | { kind: 'truncate'; at: number }
  | { kind: 'flip'; at: number; xor: number }
  | { kind: 'insert'; at: number; byte: number }
  | { kind: 'drop'; at: number };

export type YjsStep =
  /** A client (index into the case's clients) edits its own Y.Doc and posts the change. */
  | { kind: 'client'; client: number; clientId: number; sync: boolean; edits: Edit[]; mutation: Mutation | null; region: number }
  | { kind: 'random'; bytes: Uint8Array; region: number }
  | { kind: 'deletes-only'; clients: number; clockBase: number; len: number; region: number };

export interface YjsCase {
  prelude: boolean;
  steps: YjsStep[];
}

/** Client ids drawn from a small pool so that clients collide; 0xffffffff is the largest Yjs takes. */
const CLIENT_IDS = [1, 2, 7, 0xffffffff, 123_456_789];

const editArb: fc.Arbitrary<Edit> = fc.oneof(
  fc.record({ t: fc.constant('set' as const), key: fc.constantFrom('a', 'b', 'o'), value: fc.oneof(fc.integer(), fc.constantFrom('x', '😀', true, null)) }),
  fc.record({ t: fc.constant('map' as const), key: fc.constantFrom('o', 'm') }),
  fc.record({ t: fc.constant('text' as const), name: fc.constantFrom('t', 'x'), index: fc.nat(4), text: fc.constantFrom('a', '😀', 'XY', '') }),
  fc.record({ t: fc.constant('del' as const), key: fc.constantFrom('a', 'b', 'o') }),
  fc.record({ t: fc.constant('array' as const), name: fc.constantFrom('arr', 'root'), value: fc.integer() }),
);

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('truncate' as const), at: fc.double({ min: 0, max: 1, noNaN: true }) }),
  fc.record({ kind: fc.constant('flip' as const), at: fc.double({ min: 0, max: 1, noNaN: true }), xor: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.double({ min: 0, max: 1, noNaN: true }), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('drop' as const), at: fc.double({ min: 0, max: 1, noNaN: true }) }),
);

/** Steps; `regions` > 1 spreads them over regions (convergence runs). */
export function yjsStepArb(regions = 1): fc.Arbitrary<YjsStep> {
  const region = fc.nat(regions - 1);
  return fc.oneof(
    {
      arbitrary: fc.record({
        kind: fc.constant('client' as const), client: fc.nat(2), clientId: fc.constantFrom(...CLIENT_IDS), sync: fc.boolean(),
        edits: fc.array(editArb, { minLength: 1, maxLength: 4 }), mutation: fc.option(mutationArb, { freq: 3 }), region,
      }),
      weight: 8,
    },
    { arbitrary: fc.record({ kind: fc.constant('random' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 96 }), region }), weight: 2 },
    {
      arbitrary: fc.record({
        kind: fc.constant('deletes-only' as const), clients: fc.constantFrom(1, 3, 2000),
        clockBase: fc.constantFrom(0, 5, 2 ** 32), len: fc.constantFrom(1, 1000, 2 ** 40), region,
      }),
      weight: 1,
    },
  );
}

export function yjsCaseArb(regions = 1): fc.Arbitrary<YjsCase> {
  return fc.record({ prelude: fc.boolean(), steps: fc.array(yjsStepArb(regions), { minLength: 1, maxLength: 6 }) });
}

/** The live clients of one case: a Y.Doc per client index, created on first use. */
export class YjsClients {
  private readonly docs = new Map<number, Y.Doc>();

  doc(index: number, clientId: number): Y.Doc {
    let d = this.docs.get(index);
    if (!d) {
      d = new Y.Doc();
      d.clientID = clientId;
      this.docs.set(index, d);
    }
    return d;
  }
}

/** An id no client step uses, held by a client doc while it loads the region's state. */
const SYNC_CLIENT_ID = 31_415_926;

/** Builds the bytes a step posts; a client step first loads the region's state when it syncs. */
export async function stepUpdate(target: FuzzTarget, doc: DocRef, clients: YjsClients, step: YjsStep): Promise<Uint8Array> {
  if (step.kind === 'random') return step.bytes;
  if (step.kind === 'deletes-only') return deletesOnly(step.clients, step.clockBase, step.len);
  const ydoc = clients.doc(step.client, step.clientId);
  if (step.sync) {
    const state = await target.send({ method: 'GET', path: `/v1/docs/${doc.collection}/${doc.id}/yjs`, headers: ADMIN_HEADERS });
    if (state.status === 200) {
      // The state may hold another client's structs under this client's id.
      // Yjs would then draw this client a new id (and say so on stdout); the
      // collision is what the case is after, so the id is kept.
      ydoc.clientID = SYNC_CLIENT_ID;
      Y.applyUpdate(ydoc, new Uint8Array(state.body));
      ydoc.clientID = step.clientId;
    }
  }
  const before = Y.encodeStateVector(ydoc);
  ydoc.transact(() => applyEdits(ydoc, step.edits));
  const update = Y.encodeStateAsUpdate(ydoc, before);
  return step.mutation === null ? update : mutate(update, step.mutation);
}

function applyEdits(ydoc: Y.Doc, edits: Edit[]): void {
  const root = ydoc.getMap('root');
  for (const e of edits) {
    if (e.t === 'set') root.set(e.key, e.value);
    else if (e.t === 'map') root.set(e.key, new Y.Map());
    else if (e.t === 'del') root.delete(e.key);
    else if (e.t === 'array') ydoc.getArray(e.name === 'root' ? 'arr2' : e.name).push([e.value]);
    else {
      const text = ydoc.getText(e.name);
      text.insert(Math.min(e.index, text.length), e.text);
    }
  }
}

/** An update with no structs and, per client, one deleted range (Yjs V1 delete-set encoding). */
export function deletesOnly(clients: number, clockBase: number, len: number): Uint8Array {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, 0);
  encoding.writeVarUint(e, clients);
  for (let i = 0; i < clients; i++) {
    encoding.writeVarUint(e, 1_000_000 + i);
    encoding.writeVarUint(e, 1);
    encoding.writeVarUint(e, clockBase);
    encoding.writeVarUint(e, len);
  }
  return encoding.toUint8Array(e);
}

export function mutate(update: Uint8Array, m: Mutation): Uint8Array {
  const at = Math.min(update.length - 1, Math.floor(m.at * update.length));
  const bytes = Array.from(update);
  if (m.kind === 'truncate') return Uint8Array.from(bytes.slice(0, Math.max(1, at)));
  if (m.kind === 'flip') bytes[at] = (bytes[at] ?? 0) ^ m.xor;
  if (m.kind === 'insert') bytes.splice(at, 0, m.byte);
  if (m.kind === 'drop' && bytes.length > 1) bytes.splice(at, 1);
  return Uint8Array.from(bytes);
}

/**
 * Per client id, the structs accepted so far (clock -> content signature and
 * the client index that wrote it): a later accepted update from another
 * client that reuses a clock with other content was silently dropped. Not
 * when the first copy came without content (deleted in the update that
 * brought it): the region has nothing to compare with, and takes the same
 * clock in the same place as a resend (README, "Yjs client ids").
 */
export class ClockOwners {
  private readonly owners = new Map<number, Map<number, { signature: string; writer: number; collected: boolean }>>();

  /** Returns the collisions of `update` (posted by client index `writer`) with what was accepted before. */
  collisions(update: Uint8Array, writer: number): string[] {
    const found: string[] = [];
    for (const s of structsOf(update)) {
      const prior = this.owners.get(s.client)?.get(s.clock);
      if (prior && !prior.collected && prior.writer !== writer && prior.signature !== s.signature) found.push(`${s.client}:${s.clock}`);
    }
    return found;
  }

  record(update: Uint8Array, writer: number): void {
    for (const s of structsOf(update)) {
      let clocks = this.owners.get(s.client);
      if (!clocks) this.owners.set(s.client, (clocks = new Map()));
      if (!clocks.has(s.clock)) clocks.set(s.clock, { signature: s.signature, writer, collected: s.collected });
    }
  }
}

function structsOf(update: Uint8Array): { client: number; clock: number; signature: string; collected: boolean }[] {
  return Y.decodeUpdate(update).structs
    .filter((s): s is Y.Item => s instanceof Y.Item)
    .map((s) => ({
      client: s.id.client,
      clock: s.id.clock,
      signature: JSON.stringify([s.length, s.parentSub, contentOf(s), s.origin, s.rightOrigin, s.parent instanceof Y.ID ? s.parent : String(s.parent)]),
      collected: s.content instanceof Y.ContentDeleted,
    }));
}

/** Comparable content of a struct; a nested type is named by its kind (reading it detached would warn). */
function contentOf(item: Y.Item): unknown {
  return item.content instanceof Y.ContentType ? `type:${item.content.type.constructor.name}` : item.content.getContent();
}

export interface YjsRunContext {
  targets: FuzzTarget[];
  stats?: FuzzStats;
}

/** Posts every step of a case to its region; returns the violations (documented answers, no change on refusal, nothing pending, no silent drop). */
export async function runYjsCase(ctx: YjsRunContext, c: YjsCase, doc: DocRef): Promise<string[]> {
  const violations: string[] = [];
  const clients = new YjsClients();
  const owners = new ClockOwners();
  if (c.prelude) await post(ctx.targets[0]!, `/v1/docs/${doc.collection}/${doc.id}/ops`, Buffer.from(JSON.stringify(PRELUDE_OPS)), 'application/json');
  for (const [i, step] of c.steps.entries()) {
    const target = ctx.targets[step.region % ctx.targets.length]!;
    ctx.stats?.countCase(`yjs:${step.kind}${step.kind === 'client' && step.mutation ? `:${step.mutation.kind}` : ''}`);
    const update = await stepUpdate(target, doc, clients, step);
    const before = await snapshotDoc(target, doc, ADMIN_HEADERS);
    const res = await post(target, `/v1/docs/${doc.collection}/${doc.id}/yjs`, Buffer.from(update), 'application/octet-stream');
    ctx.stats?.countAnswer(res);
    const where = `step ${i} (${step.kind}) at ${target.name}`;
    const answer = undocumentedAnswer(res);
    if (answer !== null) violations.push(`${where}: ${answer}`);
    if (res.status >= 400) {
      const change = snapshotChange(before, await snapshotDoc(target, doc, ADMIN_HEADERS));
      if (change !== null) violations.push(`${where}: refused ${res.status} (${res.body.toString('utf8').slice(0, 160)}) but the document changed: ${change}`);
      continue;
    }
    const pending = await pendingDocs(target);
    if (pending !== 0) violations.push(`${where}: accepted, and ${pending} document(s) stay pending`);
    if (step.kind === 'client' && step.mutation === null) {
      const collided = owners.collisions(update, step.client);
      if (collided.length > 0) violations.push(`${where}: accepted an update reusing client clocks ${collided.slice(0, 3).join(', ')} with other content: silently dropped`);
      owners.record(update, step.client);
    }
  }
  return violations;
}

function post(target: FuzzTarget, path: string, body: Buffer, contentType: string): Promise<FuzzResponse> {
  return target.send({ method: 'POST', path, headers: { ...ADMIN_HEADERS, 'content-type': contentType }, body });
}

async function pendingDocs(target: FuzzTarget): Promise<number> {
  const sync = await target.send({ method: 'GET', path: '/v1/sync', headers: ADMIN_HEADERS });
  return (JSON.parse(sync.body.toString('utf8')) as { pendingDocs: number }).pendingDocs;
}
