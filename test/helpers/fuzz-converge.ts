/**
 * The cross-region property: regions fed accepted inputs (in any order, at
 * the same moment at several regions) end with equal digests, nothing
 * pending, and every touched document reading the same everywhere. Also the
 * Yjs inputs that only several regions can produce: two clients posting
 * different content under one clientID to two regions at once, and a client
 * writing under another region's writer clientID. JSON writes (whole
 * documents, merge patches, typed ops, deletes) race each other and Yjs
 * writes on the same keys, with types that disagree.
 */
import fc from 'fast-check';
import * as encoding from 'lib0/encoding';
import { WebSocket } from 'ws';
import * as Y from 'yjs';
import { stableClientId } from '../../src/crdt/clientid.js';
import { docKey, type WriterId } from '../../src/ids.js';
import { undocumentedAnswer, type DocRef, type FuzzStats } from './fuzz-oracle.js';
import { REQUEST_TIMEOUT_MS, type FuzzRequest, type FuzzResponse, type FuzzTarget } from './fuzz-target.js';
import { YjsClients, stepUpdate, yjsStepArb, type Edit, type YjsStep } from './fuzz-yjs.js';

/** Sequence numbers at or beyond this are not plausible (`MAX_SEQ`). */
const SEQ_BOUND = 2 ** 48;

export type ConvergeStep =
  | { kind: 'yjs'; step: YjsStep }
  /**
   * The same clientID and clock, different content, posted at once: `writes[i]`
   * to region `first + i` (so with three regions, two or three of them), over
   * a live connection where `live[i]` (and the region is a process).
   */
  | { kind: 'collide'; clientId: number; first: number; writes: Edit[][]; live?: boolean[] }
  /** A client writes under the clientID of region `owner`'s writer, at region `at`. */
  | { kind: 'as-writer'; owner: number; at: number; edits: Edit[] }
  /** Cuts every link of region `region` until a `heal` step or the end of the steps. */
  | { kind: 'partition'; region: number }
  | { kind: 'heal' }
  /** JSON writes posted at once: `writes[i]` to region `first + i`. */
  | { kind: 'json'; first: number; writes: JsonWrite[] };

/** A JSON write as a client sends it. */
export type JsonWrite =
  | { route: 'put' | 'patch'; body: Record<string, unknown> }
  | { route: 'ops'; ops: Record<string, unknown>[] }
  | { route: 'delete' };

const editArb: fc.Arbitrary<Edit> = fc.oneof(
  fc.record({ t: fc.constant('set' as const), key: fc.constantFrom('a', 'b'), value: fc.oneof(fc.integer(), fc.constant('x')) }),
  fc.record({ t: fc.constant('text' as const), name: fc.constant('t'), index: fc.nat(3), text: fc.constantFrom('a', 'XY') }),
);

/** Keys the Yjs edits use too (`root.a`, `root.b`, and `t`), with values of every type the model has. */
const jsonKeyArb = fc.constantFrom('a', 'b', 't');
const jsonValueArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.integer({ min: -3, max: 3 }), fc.constantFrom<unknown>('x', '', true, null),
  fc.record({ x: fc.integer({ min: 0, max: 3 }) }), fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 2 }),
);
const jsonPathArb = fc.oneof(jsonKeyArb.map((k) => [k]), fc.tuple(jsonKeyArb, fc.constant('x')).map((p) => [...p]));
const jsonOpArb: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  fc.record({ op: fc.constant('set'), path: jsonPathArb, value: jsonValueArb }),
  fc.record({ op: fc.constant('delete'), path: jsonPathArb }),
  fc.record({ op: fc.constant('increment'), path: jsonPathArb, by: fc.integer({ min: -3, max: 3 }) }),
  fc.record({ op: fc.constantFrom('add', 'remove'), path: jsonPathArb, value: fc.constantFrom<unknown>('x', 1, null) }),
  fc.record({ op: fc.constant('insertText'), path: jsonPathArb, index: fc.nat(3), text: fc.constantFrom('a', 'XY') }),
  fc.record({ op: fc.constant('deleteText'), path: jsonPathArb, index: fc.nat(2), length: fc.nat(2) }),
);
const jsonWriteArb: fc.Arbitrary<JsonWrite> = fc.oneof(
  { arbitrary: fc.record({ route: fc.constantFrom('put' as const, 'patch' as const), body: fc.dictionary(jsonKeyArb, jsonValueArb, { maxKeys: 3 }) }), weight: 3 },
  { arbitrary: fc.record({ route: fc.constant('ops' as const), ops: fc.array(jsonOpArb, { minLength: 1, maxLength: 3 }) }), weight: 4 },
  { arbitrary: fc.constant<JsonWrite>({ route: 'delete' }), weight: 1 },
);

/** With `faults`, steps also cut a region off and heal it (needs {@link ConvergeContext.faults}). */
export function convergeStepArb(regions: number, faults = false): fc.Arbitrary<ConvergeStep> {
  const cuts: fc.WeightedArbitrary<ConvergeStep>[] = faults
    ? [
      { arbitrary: fc.nat(regions - 1).map((region): ConvergeStep => ({ kind: 'partition', region })), weight: 1 },
      { arbitrary: fc.constant<ConvergeStep>({ kind: 'heal' }), weight: 1 },
    ]
    : [];
  return fc.oneof(
    ...cuts,
    { arbitrary: yjsStepArb(regions).map((step): ConvergeStep => ({ kind: 'yjs', step })), weight: 6 },
    {
      arbitrary: fc.record({
        kind: fc.constant('collide' as const), clientId: fc.integer({ min: 1, max: 2 ** 31 }), first: fc.nat(regions - 1),
        writes: fc.array(fc.array(editArb, { minLength: 1, maxLength: 2 }), { minLength: 2, maxLength: Math.max(2, regions) }),
        live: fc.array(fc.boolean(), { minLength: regions, maxLength: regions }),
      }),
      weight: 2,
    },
    {
      arbitrary: fc.record({
        kind: fc.constant('json' as const), first: fc.nat(regions - 1),
        writes: fc.array(jsonWriteArb, { minLength: 1, maxLength: regions }),
      }),
      weight: 4,
    },
    {
      arbitrary: fc.record({ kind: fc.constant('as-writer' as const), owner: fc.nat(regions - 1), at: fc.nat(regions - 1), edits: fc.array(editArb, { minLength: 1, maxLength: 2 }) }),
      weight: 1,
    },
  );
}

export interface ConvergeContext {
  targets: FuzzTarget[];
  stats?: FuzzStats;
  /** Link faults by region name, for `partition` and `heal` steps. */
  faults?: { isolate(region: string): void; heal(): void };
}

/**
 * Runs the steps on `doc`, healing every link at the end; returns
 * undocumented answers (the convergence check comes after).
 */
export async function runConvergeSteps(ctx: ConvergeContext, doc: DocRef, steps: ConvergeStep[]): Promise<string[]> {
  const violations: string[] = [];
  const clients = new YjsClients();
  const path = `/v1/docs/${doc.collection}/${doc.id}/yjs`;
  const post = async (target: FuzzTarget, update: Uint8Array): Promise<void> => {
    const res = await target.send({ method: 'POST', path, headers: { 'content-type': 'application/octet-stream' }, body: Buffer.from(update) });
    record(ctx, res, violations, target.name);
  };
  try {
    for (const s of steps) {
      ctx.stats?.countCase(`converge:${s.kind}`);
      if (s.kind === 'yjs') {
        const target = ctx.targets[s.step.region % ctx.targets.length]!;
        await post(target, await stepUpdate(target, doc, clients, s.step));
      } else if (s.kind === 'collide') {
        const n = ctx.targets.length;
        await Promise.all(s.writes.map(async (edits, i) => {
          const target = ctx.targets[(s.first + i) % n]!;
          const update = clientUpdate(s.clientId, edits);
          if (s.live?.[i] !== true || target.url === undefined) return post(target, update);
          ctx.stats?.countCase('converge:collide-live-write');
          const outcome = await liveWrite(target.url, doc, update);
          ctx.stats?.countOutcome(`live ${outcome.what}`);
          if (outcome.problem) violations.push(`${target.name}: live write ${outcome.what}`);
        }));
      } else if (s.kind === 'json') {
        const n = ctx.targets.length;
        await Promise.all(s.writes.map(async (w, i) => {
          const target = ctx.targets[(s.first + i) % n]!;
          record(ctx, await target.send(jsonRequest(doc, w)), violations, target.name);
        }));
      } else if (s.kind === 'partition' || s.kind === 'heal') {
        if (!ctx.faults) throw new Error(`a ${s.kind} step needs link faults`);
        if (s.kind === 'heal') ctx.faults.heal();
        else ctx.faults.isolate(ctx.targets[s.region % ctx.targets.length]!.name);
      } else {
        const owner = ctx.targets[s.owner % ctx.targets.length]!;
        const writer = (await syncOf(owner)).writer as WriterId;
        await post(ctx.targets[s.at % ctx.targets.length]!, clientUpdate(stableClientId(writer, docKey(doc.collection, doc.id)), s.edits));
      }
    }
  } finally {
    ctx.faults?.heal();
  }
  return violations;
}

function record(ctx: ConvergeContext, res: FuzzResponse, violations: string[], where: string): void {
  ctx.stats?.countAnswer(res);
  const problem = undocumentedAnswer(res);
  if (problem !== null) violations.push(`${where}: ${problem}`);
}

/** Close codes of a live connection that no input may cause: none at all, or an internal error (1011, or 4500 `internal`). */
const liveFault = (code: number, reason: string): boolean => code === 1006 || code === 1011 || reason === 'internal';

/**
 * Sends `update` as a live client of `doc` at the region at `baseUrl`, then
 * a sync step 1; the answer to that comes once the region has handled the
 * update (it handles a connection's messages in order). A documented close
 * (say 4409 for a client id in use) ends the wait too.
 */
async function liveWrite(baseUrl: string, doc: DocRef, update: Uint8Array): Promise<{ what: string; problem: boolean }> {
  const ws = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/v1/live/${doc.collection}/${doc.id}`);
  try {
    return await new Promise((resolve) => {
      const timer = setTimeout(() => resolve({ what: `no answer within ${REQUEST_TIMEOUT_MS} ms`, problem: true }), REQUEST_TIMEOUT_MS);
      const done = (what: string, problem = false): void => { clearTimeout(timer); resolve({ what, problem }); };
      ws.on('unexpected-response', (_req, res) => done(`upgrade answered ${res.statusCode ?? 0}`, true));
      ws.on('error', (err) => done(`connection failed: ${err.message}`, true));
      ws.on('close', (code, reason) => done(`closed ${code} ${reason.toString()}`, liveFault(code, reason.toString())));
      ws.on('open', () => {
        ws.send(syncMessage(2, update));
        ws.send(syncMessage(0, Y.encodeStateVector(new Y.Doc())));
      });
      ws.on('message', (data: Buffer) => {
        // A sync message (0) of step 2 (1) answers the step 1 sent after the update.
        if (data[0] === 0 && data[1] === 1) done('handled');
      });
    });
  } finally {
    ws.terminate();
  }
}

/** A y-websocket sync message: step 1 (0) carries a state vector, an update (2) an update. */
function syncMessage(step: 0 | 2, payload: Uint8Array): Uint8Array {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, 0);
  encoding.writeVarUint(e, step);
  encoding.writeVarUint8Array(e, payload);
  return encoding.toUint8Array(e);
}

function jsonRequest(doc: DocRef, w: JsonWrite): FuzzRequest {
  const path = `/v1/docs/${doc.collection}/${doc.id}`;
  if (w.route === 'delete') return { method: 'DELETE', path, headers: {} };
  const json = (body: unknown, type = 'application/json'): Pick<FuzzRequest, 'headers' | 'body'> =>
    ({ headers: { 'content-type': type }, body: Buffer.from(JSON.stringify(body)) });
  if (w.route === 'ops') return { method: 'POST', path: `${path}/ops`, ...json({ ops: w.ops }) };
  if (w.route === 'patch') return { method: 'PATCH', path, ...json(w.body, 'application/merge-patch+json') };
  return { method: 'PUT', path, ...json(w.body) };
}

function clientUpdate(clientId: number, edits: Edit[]): Uint8Array {
  const ydoc = new Y.Doc();
  ydoc.clientID = clientId;
  for (const e of edits) {
    if (e.t === 'set') ydoc.getMap('root').set(e.key, e.value);
    if (e.t === 'text') ydoc.getText(e.name).insert(0, e.text);
  }
  return Y.encodeStateAsUpdate(ydoc);
}

interface SyncBody {
  writer: string;
  digest: string;
  pendingDocs: number;
  peers: { region: string; state: string; outbound: { pendingUpdates: number }; inbound: { pendingUpdates: number } }[];
}

export async function syncOf(target: FuzzTarget): Promise<SyncBody> {
  const res = await target.send({ method: 'GET', path: '/v1/sync', headers: {} });
  if (res.status !== 200) throw new Error(`${target.name}: /v1/sync answered ${res.status}`);
  return JSON.parse(res.body.toString('utf8')) as SyncBody;
}

/**
 * Waits until every region reports the same digest with nothing pending and
 * every link up, then compares every touched document as read at each
 * region. Returns what differs (empty when converged).
 */
export async function convergence(targets: FuzzTarget[], docs: DocRef[], timeoutMs = 20_000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  let last: SyncBody[] = [];
  for (;;) {
    last = await Promise.all(targets.map(syncOf));
    const quiet = last.every((s) => s.pendingDocs === 0 && s.peers.every((p) => p.state === 'up' && p.outbound.pendingUpdates === 0));
    if (quiet && new Set(last.map((s) => s.digest)).size === 1) break;
    if (Date.now() > deadline) return [`no convergence within ${timeoutMs} ms: ${describeSync(targets, last)}`];
    await new Promise((r) => setTimeout(r, 200));
  }
  const violations: string[] = [];
  for (const doc of docs) {
    const reads = await Promise.all(targets.map((t) => t.send({ method: 'GET', path: `/v1/docs/${doc.collection}/${doc.id}`, headers: {} })));
    const seen = reads.map((r) => `${r.status} ${r.body.toString('utf8')}`);
    if (new Set(seen).size > 1) {
      violations.push(`${doc.collection}/${doc.id} differs with equal digests: ${targets.map((t, i) => `${t.name}: ${seen[i]?.slice(0, 160)}`).join(' | ')}`);
    }
  }
  return violations;
}

function describeSync(targets: FuzzTarget[], sync: SyncBody[]): string {
  return sync.map((s, i) => {
    const peers = s.peers.map((p) => {
      const huge = p.outbound.pendingUpdates >= SEQ_BOUND || p.inbound.pendingUpdates >= SEQ_BOUND ? ' (beyond 2^48)' : '';
      return `${p.region} ${p.state} out ${p.outbound.pendingUpdates} in ${p.inbound.pendingUpdates}${huge}`;
    });
    return `${targets[i]?.name}: digest ${s.digest.slice(0, 12)} pendingDocs ${s.pendingDocs} [${peers.join('; ')}]`;
  }).join(' | ');
}
