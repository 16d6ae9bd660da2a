/**
 * Typed operations on a document, applied atomically. Yjs cannot roll back a
 * transaction, so every op is first checked against a shadow of the document
 * that evolves op by op (later ops see earlier ones), and only a request that
 * passes as a whole is written.
 */
import * as Y from 'yjs';
import { MeridianError } from '../errors.js';
import { MAX_SPLIT_MOVES } from './admit.js';
import { canonicalJson, isJsonObject } from './json.js';
import { markLive, clearValue, counterMap, marker, markerKind, rootMap, setMap, textType, toYValue, type TypedKind } from './layout.js';
import { parseOps } from './ops-parse.js';
import { TextShadow } from './text-shadow.js';
import type { Json, Op, Path, WriteContext } from './types.js';

/** What the check knows of a value: enough to decide whether each op fits. */
type Shadow =
  | { kind: 'object'; map: Y.Map<unknown> | null; children: Map<string, Shadow | null> }
  | { kind: 'counter'; slot: number }
  | { kind: 'set' }
  /** `longest`: the most structs any client holding live items of the text has in the document (see chargeSplits). */
  | { kind: 'text'; text: TextShadow; longest: number }
  | { kind: 'value' };

type ObjectShadow = Extract<Shadow, { kind: 'object' }>;

/**
 * Applies `ops` in order as one transaction with `origin`. Missing
 * intermediate objects are created by set, increment, add and insertText;
 * delete, remove and deleteText of something absent do nothing. Throws,
 * before writing anything, `invalid_ops` for a malformed op (see
 * `parseOps`), a text index or range outside the text or with an end
 * inside a surrogate pair (which would split a character), or a counter slot
 * leaving the safe integer range; `type_mismatch` for increment on a
 * non-counter, add/remove on a non-set, insertText/deleteText on a non-text,
 * or a path through a non-object.
 */
export function applyOps(doc: Y.Doc, ops: Op[], ctx: WriteContext, origin: unknown): void {
  const checked = parseOps(ops);
  const root = objectShadow(rootMap(doc));
  const splits: SplitCost = { moves: 0, splits: 0 };
  checked.forEach((op, i) => simulate(doc, root, op, ctx, i, splits));
  doc.transact(() => {
    const map = rootMap(doc);
    for (const op of checked) execute(doc, map, op, ctx);
    markLive(map);
  }, origin);
}

function objectShadow(map: Y.Map<unknown> | null): ObjectShadow {
  return { kind: 'object', map, children: new Map() };
}

function shadowOfStored(doc: Y.Doc, value: unknown, path: Path, ctx: WriteContext): Shadow {
  if (value instanceof Y.Map) return objectShadow(value as Y.Map<unknown>);
  switch (markerKind(value)) {
    case 'counter': {
      const slot = counterMap(doc, path).get(ctx.writer);
      return { kind: 'counter', slot: typeof slot === 'number' && Number.isSafeInteger(slot) ? slot : 0 };
    }
    case 'set':
      return { kind: 'set' };
    case 'text': {
      const text = textType(doc, path);
      return { kind: 'text', text: new TextShadow(text.toString()), longest: longestClientIn(doc, text) };
    }
    default:
      return { kind: 'value' };
  }
}

function shadowOfJson(value: Json): Shadow {
  if (!isJsonObject(value)) return { kind: 'value' };
  const node = objectShadow(null);
  for (const [key, child] of Object.entries(value)) node.children.set(key, shadowOfJson(child));
  return node;
}

function child(doc: Y.Doc, node: ObjectShadow, key: string, path: Path, ctx: WriteContext): Shadow | null {
  if (node.children.has(key)) return node.children.get(key) ?? null;
  const found = node.map !== null && node.map.has(key) ? shadowOfStored(doc, node.map.get(key), path, ctx) : null;
  node.children.set(key, found);
  return found;
}

function mismatch(i: number, message: string): never {
  throw new MeridianError('type_mismatch', `ops[${i}]: ${message}`, { index: i });
}

function outOfRange(i: number, message: string): never {
  throw new MeridianError('invalid_ops', `ops[${i}]: ${message}`, { index: i });
}

/** The object holding the op's target, created when `create`; null when absent. */
function parentOf(doc: Y.Doc, root: ObjectShadow, path: Path, create: boolean, ctx: WriteContext, i: number): ObjectShadow | null {
  let node = root;
  for (let k = 0; k < path.length - 1; k++) {
    const key = path[k] as string;
    let next = child(doc, node, key, path.slice(0, k + 1), ctx);
    if (next === null) {
      if (!create) return null;
      next = objectShadow(null);
      node.children.set(key, next);
    }
    if (next.kind !== 'object') mismatch(i, `${JSON.stringify(path.slice(0, k + 1))} is not an object`);
    node = next;
  }
  return node;
}

const CREATES: Partial<Record<Op['op'], true>> = { set: true, increment: true, add: true, insertText: true };

/** Whether the ops can only take content away (delete, remove, deleteText): none of them creates anything. */
export function opsOnlyDelete(ops: readonly Op[]): boolean {
  return ops.every((op) => CREATES[op.op] !== true);
}
const KIND_OF_OP: Partial<Record<Op['op'], TypedKind>> = {
  increment: 'counter',
  add: 'set',
  remove: 'set',
  insertText: 'text',
  deleteText: 'text',
};

function simulate(doc: Y.Doc, root: ObjectShadow, op: Op, ctx: WriteContext, i: number, splits: SplitCost): void {
  const parent = parentOf(doc, root, op.path, CREATES[op.op] === true, ctx, i);
  const key = op.path[op.path.length - 1] as string;
  const target = parent === null ? null : child(doc, parent, key, op.path, ctx);
  if (op.op === 'set' || op.op === 'delete') {
    parent?.children.set(key, op.op === 'set' ? shadowOfJson(op.value) : null);
    return;
  }
  const kind = KIND_OF_OP[op.op] as TypedKind;
  if (target !== null && target.kind !== kind) mismatch(i, `${JSON.stringify(op.path)} does not hold a ${kind}`);
  switch (op.op) {
    case 'increment': {
      const slot = (target?.kind === 'counter' ? target.slot : 0) + op.by;
      if (!Number.isSafeInteger(slot)) outOfRange(i, 'the counter would leave the safe integer range');
      parent?.children.set(key, { kind: 'counter', slot });
      return;
    }
    case 'add':
      parent?.children.set(key, { kind: 'set' });
      return;
    case 'remove':
      return;
    case 'insertText':
    case 'deleteText': {
      const text = target?.kind === 'text' ? target.text : new TextShadow('');
      editText(op, text, i);
      chargeSplits(doc, op, target?.kind === 'text' ? target.longest : 0, splits);
      if (target === null && op.op === 'insertText') parent?.children.set(key, { kind: 'text', text, longest: 0 });
      return;
    }
  }
}

/** What the text ops of one write may make Yjs move, at most, to split items (see {@link chargeSplits}). */
interface SplitCost {
  moves: number;
  splits: number;
}

/**
 * Refuses (`too_complex`, 413), before anything is written, text ops that
 * could split items at places Yjs pays for with too many struct moves (see
 * admit.ts `checkSplits`, which bounds a client's Yjs updates so): Yjs
 * keeps each client's structs in one array, and a split inserts the second
 * half after the first, moving the structs after it. A text written by a
 * client that then wrote 400,000 other structs made each of 1,000
 * `deleteText` ops of one character move them all twice: 1.3 s at this
 * region and again at every peer, for a 56 KB request that could be sent
 * again and again. An insertion splits at most one item, a deletion two,
 * each item of a client holding live items of the text (or of this region,
 * whose inserts it may split) in an array at most that long, plus the
 * pieces earlier splits added: a bound, counted without touching the
 * document, so a refused write costs no reload.
 */
function chargeSplits(doc: Y.Doc, op: Extract<Op, { op: 'insertText' | 'deleteText' }>, longest: number, cost: SplitCost): void {
  if (op.op === 'insertText' ? op.text.length === 0 : op.length === 0) return;
  const splits = op.op === 'insertText' ? 1 : 2;
  const held = Math.max(longest, doc.store.clients.get(doc.clientID)?.length ?? 0);
  cost.moves += splits * (held + cost.splits + splits);
  cost.splits += splits;
  if (cost.moves > MAX_SPLIT_MOVES) {
    throw new MeridianError(
      'too_complex',
      `the text ops could split the text's items at places where Yjs would move more than ${MAX_SPLIT_MOVES} structs in all (a client whose items it may split has ${held} structs in this document): send fewer text ops per request`,
    );
  }
}

/** The most structs any client holding a live item of `text` has in the document. */
function longestClientIn(doc: Y.Doc, text: Y.Text): number {
  const seen = new Set<number>();
  let longest = 0;
  for (let item: Y.Item | null = text._start; item !== null; item = item.right) {
    if (item.deleted || seen.has(item.id.client)) continue;
    seen.add(item.id.client);
    longest = Math.max(longest, doc.store.clients.get(item.id.client)?.length ?? 0);
  }
  return longest;
}

/** Checks a text op against the text as earlier ops left it, then applies it there. */
function editText(op: Extract<Op, { op: 'insertText' | 'deleteText' }>, text: TextShadow, i: number): void {
  const end = op.op === 'insertText' ? op.index : op.index + op.length;
  if (end > text.length) {
    const what = op.op === 'insertText' ? `index ${op.index}` : `range ${op.index}..${end}`;
    outOfRange(i, `${what} is beyond the text's length ${text.length}`);
  }
  for (const at of new Set([op.index, end])) {
    if (text.splitsPair(at)) {
      outOfRange(i, `index ${at} falls inside a surrogate pair (indexes count UTF-16 code units; a character outside the BMP takes two)`);
    }
  }
  if (op.op === 'insertText') text.insert(op.index, op.text);
  else text.delete(op.index, op.length);
}

/** Walks to the map holding the op's target, creating missing objects when `create`. */
function parentMap(map: Y.Map<unknown>, path: Path, create: boolean): Y.Map<unknown> | null {
  let node = map;
  for (const key of path.slice(0, -1)) {
    const next = node.get(key);
    if (next instanceof Y.Map) {
      node = next as Y.Map<unknown>;
    } else if (create) {
      node = node.set(key, new Y.Map<unknown>());
    } else {
      return null;
    }
  }
  return node;
}

/** Puts a marker at the target unless one of `kind` is already there. */
function ensureMarker(parent: Y.Map<unknown>, key: string, kind: TypedKind): void {
  if (markerKind(parent.get(key)) !== kind) parent.set(key, marker(kind));
}

function execute(doc: Y.Doc, root: Y.Map<unknown>, op: Op, ctx: WriteContext): void {
  const parent = parentMap(root, op.path, CREATES[op.op] === true);
  if (parent === null) return;
  const key = op.path[op.path.length - 1] as string;
  switch (op.op) {
    case 'set':
      clearValue(doc, parent.get(key), op.path);
      parent.set(key, toYValue(op.value));
      return;
    case 'delete':
      if (!parent.has(key)) return;
      clearValue(doc, parent.get(key), op.path);
      parent.delete(key);
      return;
    case 'increment': {
      ensureMarker(parent, key, 'counter');
      const slots = counterMap(doc, op.path);
      const slot = slots.get(ctx.writer);
      slots.set(ctx.writer, (typeof slot === 'number' && Number.isSafeInteger(slot) ? slot : 0) + op.by);
      return;
    }
    case 'add':
      ensureMarker(parent, key, 'set');
      setMap(doc, op.path).set(canonicalJson(op.value), op.value);
      return;
    case 'remove':
      if (markerKind(parent.get(key)) === 'set') setMap(doc, op.path).delete(canonicalJson(op.value));
      return;
    case 'insertText':
      ensureMarker(parent, key, 'text');
      if (op.text.length > 0) textType(doc, op.path).insert(op.index, op.text);
      return;
    case 'deleteText':
      if (markerKind(parent.get(key)) === 'text' && op.length > 0) textType(doc, op.path).delete(op.index, op.length);
  }
}
