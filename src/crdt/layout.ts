/**
 * Where a document's data lives inside its `Y.Doc`. See `model.ts` for the
 * rules this layout gives concurrent writers.
 *
 * - The JSON tree is the root map {@link ROOT_NAME}; nested objects are
 *   nested `Y.Map`s, arrays and scalars plain (atomic) values.
 * - Counters, sets and texts keep their data in root-level shared types named
 *   after their path ({@link namedTypeName}); Yjs merges root types by name, so
 *   two regions creating the same counter concurrently lose nothing. The tree
 *   holds a marker `{"\u0000t": kind}` where such a value stands.
 */
import * as Y from 'yjs';
import { RESERVED_PREFIX, isPlainObject } from './json.js';
import type { Json, Path } from './types.js';

/** The root-level map holding the JSON tree. */
export const ROOT_NAME = 'root';
/** Present in every document written since its last delete, so that a document of no fields exists. */
export const LIVE_KEY = `${RESERVED_PREFIX}live`;
/** The only key of a marker object. */
export const MARKER_KEY = `${RESERVED_PREFIX}t`;

/** The values whose data lives outside the tree, in a shared type of their own. */
export type TypedKind = 'counter' | 'set' | 'text';
const KINDS: readonly TypedKind[] = ['counter', 'set', 'text'];

/**
 * Sets the live marker where it is absent: a write to a document that does
 * not exist, or whose marker a delete removed. Not on every write: Yjs keeps
 * each value overwritten as a tombstone, and merges those of one client only
 * when nothing else of that client's came between them (one write's values
 * take consecutive clocks), so a marker set by every write would keep a
 * counter's or a field's overwrites from merging and grow the document by a
 * struct or two a write, for good.
 */
export function markLive(root: Y.Map<unknown>): void {
  if (!root.has(LIVE_KEY)) root.set(LIVE_KEY, true);
}

/** The map holding the JSON tree. */
export function rootMap(doc: Y.Doc): Y.Map<unknown> {
  return doc.getMap<unknown>(ROOT_NAME);
}

/** The marker stored in the tree where a counter, set or text stands. */
export function marker(kind: TypedKind): Record<string, string> {
  return { [MARKER_KEY]: kind };
}

/** The kind of a marker value, or null when `value` is anything else. */
export function markerKind(value: unknown): TypedKind | null {
  if (!isPlainObject(value)) return null;
  const keys = Object.keys(value);
  if (keys.length !== 1 || keys[0] !== MARKER_KEY) return null;
  const kind = value[MARKER_KEY];
  return KINDS.find((k) => k === kind) ?? null;
}

/** `counter:["a","b"]`: the name of the root-level type holding the data at a path. */
export function namedTypeName(kind: TypedKind, path: Path): string {
  return `${kind}:${JSON.stringify(path)}`;
}

function kindOfName(name: string): TypedKind | null {
  return KINDS.find((k) => name.startsWith(`${k}:`)) ?? null;
}

/**
 * Whether a root-level shared type is one the JSON model writes (the tree or
 * a counter, set or text behind a marker). Any other (an editor's
 * `XmlFragment`, a `Y.Text` bound at the root) is foreign to the JSON view.
 */
export function isModelShare(name: string): boolean {
  return name === ROOT_NAME || kindOfName(name) !== null;
}

/** One slot per writer: key = writer id, value = that writer's running total. */
export function counterMap(doc: Y.Doc, path: Path): Y.Map<unknown> {
  return doc.getMap<unknown>(namedTypeName('counter', path));
}

/** Key = canonical JSON of the element, value = the element. */
export function setMap(doc: Y.Doc, path: Path): Y.Map<unknown> {
  return doc.getMap<unknown>(namedTypeName('set', path));
}

/** The text at a path. */
export function textType(doc: Y.Doc, path: Path): Y.Text {
  return doc.getText(namedTypeName('text', path));
}

function clearMap(map: Y.Map<unknown>): void {
  for (const key of Array.from(map.keys())) map.delete(key);
}

/** Empties the shared type behind a marker so that a later value at the path starts afresh. */
export function clearNamed(doc: Y.Doc, kind: TypedKind, path: Path): void {
  if (kind === 'text') {
    const text = textType(doc, path);
    if (text.length > 0) text.delete(0, text.length);
  } else {
    clearMap(kind === 'counter' ? counterMap(doc, path) : setMap(doc, path));
  }
}

/**
 * Called before `value` (found at `path`) is overwritten or deleted: empties
 * the shared types of every marker in it, nested maps included. Must run
 * inside a transaction.
 */
export function clearValue(doc: Y.Doc, value: unknown, path: Path): void {
  const kind = markerKind(value);
  if (kind !== null) {
    clearNamed(doc, kind, path);
  } else if (value instanceof Y.Map) {
    for (const [key, child] of (value as Y.Map<unknown>).entries()) {
      if (!key.startsWith(RESERVED_PREFIX)) clearValue(doc, child, [...path, key]);
    }
  }
}

/**
 * Empties every counter, set and text this doc knows of, whether or not a
 * marker still points to it (a write concurrent with a field's deletion can
 * leave data behind an absent marker).
 */
export function clearAllNamed(doc: Y.Doc): void {
  for (const name of Array.from(doc.share.keys())) {
    const kind = kindOfName(name);
    if (kind === 'text') {
      const text = doc.getText(name);
      if (text.length > 0) text.delete(0, text.length);
    } else if (kind !== null) {
      clearMap(doc.getMap<unknown>(name));
    }
  }
}

/**
 * The value to store for a JSON value: objects become (prelim) `Y.Map`s so
 * that their fields merge; arrays and scalars are stored as they are.
 * Arrays are copied: Yjs keeps a reference to what it is given.
 */
export function toYValue(value: Json): unknown {
  if (Array.isArray(value)) return structuredClone(value);
  if (value !== null && typeof value === 'object') {
    const map = new Y.Map<unknown>();
    for (const [key, child] of Object.entries(value)) map.set(key, toYValue(child));
    return map;
  }
  return value;
}
