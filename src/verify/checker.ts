/**
 * The history checker: compares what clients were told with what the regions
 * hold at the end. Pure: it reads a history and the final documents, and
 * returns verdicts. An acknowledged write that is missing is *lost*; anything
 * present that no client attempted, or that the API refused, is *unexpected*.
 * Operations with an unknown outcome may or may not have taken effect.
 */
import type { JsonObject } from '../crdt/types.js';
import { FIELDS, TOKEN_CLOSE, TOKEN_OPEN, type OpKind, type OpRecord, type OpValue, type Outcome } from './history.js';

/** One departure of the final state from the history. */
export interface Violation {
  type: 'lost' | 'unexpected';
  workload: OpKind;
  region: string;
  doc: string;
  /** How many writes or units this violation covers (e.g. missing increments). */
  count: number;
  detail: string;
}

export interface WorkloadVerdict {
  workload: OpKind;
  ok: boolean;
  ops: Record<Outcome, number>;
  lost: number;
  unexpected: number;
}

export interface CheckResult {
  ok: boolean;
  /** The largest count of lost writes over the regions checked. */
  lost: number;
  unexpected: number;
  workloads: WorkloadVerdict[];
  violations: Violation[];
}

/** Final documents: region -> document key (`collection/id`) -> JSON, or null when absent. */
export type FinalState = ReadonlyMap<string, ReadonlyMap<string, JsonObject | null>>;

type Check = (ops: OpRecord[], doc: string, value: JsonObject | null, region: string) => Violation[];

const CHECKS: Record<OpKind, Check> = { counter: checkCounter, set: checkSet, patch: checkPatch, text: checkText };
const KINDS = Object.keys(CHECKS) as OpKind[];

/** Checks every region's final documents against the history. */
export function checkHistory(history: readonly OpRecord[], finals: FinalState): CheckResult {
  const byDoc = new Map<string, OpRecord[]>();
  for (const op of history) {
    const list = byDoc.get(op.op.doc) ?? [];
    list.push(op);
    byDoc.set(op.op.doc, list);
  }
  const violations: Violation[] = [];
  for (const [region, docs] of finals) {
    const keys = new Set([...byDoc.keys(), ...docs.keys()]);
    for (const doc of [...keys].sort()) {
      const ops = byDoc.get(doc) ?? [];
      const kind = ops[0]?.op.kind;
      const value = docs.get(doc) ?? null;
      if (kind) violations.push(...CHECKS[kind](ops, doc, value, region));
      else if (value !== null) violations.push(v('unexpected', 'patch', region, doc, 1, 'a document no client wrote'));
    }
  }
  const workloads = KINDS.map((kind) => verdict(kind, history, violations));
  const lost = workloads.reduce((n, w) => n + w.lost, 0);
  const unexpected = workloads.reduce((n, w) => n + w.unexpected, 0);
  return { ok: lost === 0 && unexpected === 0, lost, unexpected, workloads, violations };
}

function verdict(kind: OpKind, history: readonly OpRecord[], violations: Violation[]): WorkloadVerdict {
  const ops = { ok: 0, fail: 0, unknown: 0 };
  for (const op of history) if (op.op.kind === kind) ops[op.outcome ?? 'unknown']++;
  const perRegion = (type: Violation['type']): number => {
    const sums = new Map<string, number>();
    for (const x of violations) if (x.workload === kind && x.type === type) sums.set(x.region, (sums.get(x.region) ?? 0) + x.count);
    return Math.max(0, ...sums.values());
  };
  const lost = perRegion('lost');
  const unexpected = perRegion('unexpected');
  return { workload: kind, ok: lost === 0 && unexpected === 0, ops, lost, unexpected };
}

function v(type: Violation['type'], workload: OpKind, region: string, doc: string, count: number, detail: string): Violation {
  return { type, workload, region, doc, count, detail };
}

function outcomeOf(op: OpRecord): Outcome {
  return op.outcome ?? 'unknown';
}

/** The op's value as kind `K`; callers pass only ops of that kind (the history groups ops by document). */
function valueOf<K extends OpKind>(op: OpRecord, _kind: K): Extract<OpValue, { kind: K }> {
  return op.op as Extract<OpValue, { kind: K }>;
}

/** acked <= final <= acked + unknown. */
function checkCounter(ops: OpRecord[], doc: string, value: JsonObject | null, region: string): Violation[] {
  let acked = 0;
  let unknown = 0;
  for (const op of ops) {
    const by = valueOf(op, 'counter').by;
    if (outcomeOf(op) === 'ok') acked += by;
    else if (outcomeOf(op) === 'unknown') unknown += by;
  }
  const raw = value?.[FIELDS.counter] ?? 0;
  if (typeof raw !== 'number') return [v('unexpected', 'counter', region, doc, 1, `counter holds ${JSON.stringify(raw)}`)];
  if (raw < acked) return [v('lost', 'counter', region, doc, acked - raw, `final ${raw} < ${acked} acknowledged increments`)];
  if (raw > acked + unknown) {
    return [v('unexpected', 'counter', region, doc, raw - acked - unknown, `final ${raw} > ${acked} acknowledged + ${unknown} unknown`)];
  }
  return [];
}

/** Every acknowledged add present; nothing present that was never attempted or was refused. */
function checkSet(ops: OpRecord[], doc: string, value: JsonObject | null, region: string): Violation[] {
  const out: Violation[] = [];
  const attempted = new Map(ops.map((op) => [valueOf(op, 'set').element, outcomeOf(op)]));
  const raw = value?.[FIELDS.set] ?? [];
  if (!Array.isArray(raw)) return [v('unexpected', 'set', region, doc, 1, `set holds ${JSON.stringify(raw)}`)];
  const present = new Set<unknown>(raw);
  if (present.size !== raw.length) out.push(v('unexpected', 'set', region, doc, raw.length - present.size, 'duplicate elements'));
  for (const [element, outcome] of attempted) {
    if (outcome === 'ok' && !present.has(element)) out.push(v('lost', 'set', region, doc, 1, `acknowledged add ${element} missing`));
  }
  for (const element of present) {
    const outcome = typeof element === 'string' ? attempted.get(element) : undefined;
    if (outcome === undefined) out.push(v('unexpected', 'set', region, doc, 1, `${JSON.stringify(element)} was never added`));
    else if (outcome === 'fail') out.push(v('unexpected', 'set', region, doc, 1, `${element} present although its add was refused`));
  }
  return out;
}

/**
 * Each field is patched by one client with increasing values. The final
 * value must be one that was attempted and not refused, and at least the
 * last acknowledged one unless it is an unknown write (which may land late).
 */
function checkPatch(ops: OpRecord[], doc: string, value: JsonObject | null, region: string): Violation[] {
  const out: Violation[] = [];
  const fields = new Map<string, Map<number, Outcome>>();
  for (const op of ops) {
    const { field, value: n } = valueOf(op, 'patch');
    const m = fields.get(field) ?? new Map<number, Outcome>();
    m.set(n, outcomeOf(op));
    fields.set(field, m);
  }
  for (const key of Object.keys(value ?? {})) {
    if (!fields.has(key)) out.push(v('unexpected', 'patch', region, doc, 1, `field ${key} was never written`));
  }
  for (const [field, attempts] of fields) {
    const acked = [...attempts].filter(([, o]) => o === 'ok').map(([n]) => n);
    const lastAcked = acked.length > 0 ? Math.max(...acked) : null;
    const final = value?.[field];
    if (final === undefined) {
      if (lastAcked !== null) out.push(v('lost', 'patch', region, doc, 1, `${field} missing; ${lastAcked} was acknowledged`));
      continue;
    }
    const outcome = typeof final === 'number' ? attempts.get(final) : undefined;
    if (outcome === undefined || outcome === 'fail') {
      const why = outcome === 'fail' ? 'a refused write' : 'never written';
      out.push(v('unexpected', 'patch', region, doc, 1, `${field} = ${JSON.stringify(final)}, ${why}`));
    } else if (lastAcked !== null && (final as number) < lastAcked && outcome !== 'unknown') {
      out.push(v('lost', 'patch', region, doc, 1, `${field} = ${String(final)} although ${lastAcked} was acknowledged later`));
    }
  }
  return out;
}

/** Every acknowledged token present exactly once; no token never inserted or refused; nothing outside tokens. */
function checkText(ops: OpRecord[], doc: string, value: JsonObject | null, region: string): Violation[] {
  const out: Violation[] = [];
  const attempted = new Map(ops.map((op) => [valueOf(op, 'text').token, outcomeOf(op)]));
  const raw = value?.[FIELDS.text] ?? '';
  if (typeof raw !== 'string') return [v('unexpected', 'text', region, doc, 1, `text holds ${JSON.stringify(raw)}`)];
  const { tokens, stray } = parseTokens(raw);
  if (stray > 0) out.push(v('unexpected', 'text', region, doc, stray, `${stray} characters outside any token`));
  const seen = new Map<string, number>();
  for (const t of tokens) seen.set(t, (seen.get(t) ?? 0) + 1);
  for (const [token, outcome] of attempted) {
    if (outcome === 'ok' && !seen.has(token)) out.push(v('lost', 'text', region, doc, 1, `acknowledged token ${token} missing`));
  }
  for (const [token, n] of seen) {
    const outcome = attempted.get(token);
    if (outcome === undefined) out.push(v('unexpected', 'text', region, doc, n, `token ${token} was never inserted`));
    else if (outcome === 'fail') out.push(v('unexpected', 'text', region, doc, n, `token ${token} present although refused`));
    else if (n > 1) out.push(v('unexpected', 'text', region, doc, n - 1, `token ${token} present ${n} times`));
  }
  return out;
}

/**
 * Splits a text into tokens. An insert can land inside another token, so
 * tokens nest: `{a{b}1}` holds `a1` and `b`. Each brace pair is one token
 * and its content is the characters at its own nesting level.
 */
export function parseTokens(text: string): { tokens: string[]; stray: number } {
  const stack: string[] = [];
  const tokens: string[] = [];
  let stray = 0;
  for (const ch of text) {
    if (ch === TOKEN_OPEN) {
      stack.push('');
    } else if (ch === TOKEN_CLOSE) {
      const t = stack.pop();
      if (t === undefined) stray++;
      else tokens.push(t);
    } else if (stack.length === 0) {
      stray++;
    } else {
      stack[stack.length - 1] += ch;
    }
  }
  for (const open of stack) stray += open.length + 1;
  return { tokens, stray };
}
