/**
 * The document model: JSON documents stored as Yjs documents, written by
 * PUT, merge-patch, typed ops and delete. Pure: no I/O, no clocks.
 *
 * Transactions: every write function runs exactly one `doc.transact(fn,
 * origin)` with the caller's origin, so a caller listening to the doc's
 * `update` event captures exactly one update per successful write. Input is
 * validated before the transaction starts (Yjs has no rollback): a refused
 * write changes nothing and emits nothing. Do not call these functions
 * inside another transaction on the same doc (Yjs would fold them into it).
 *
 * Layout: see `layout.ts`. Merge rules between regions:
 * - Two regions setting the same field concurrently: Yjs keeps the value
 *   written by the doc with the higher client id (see `clientid.ts`); every
 *   replica converges on it.
 * - Nested objects are nested maps: concurrent writes to different fields of
 *   an existing object both survive. Two regions creating the same missing
 *   object concurrently each create a map; one map wins and the fields
 *   written only into the other are lost. Arrays and scalars are atomic.
 * - Counters keep one slot per writer (its running total); the value is the
 *   sum of the slots, so concurrent increments all count. Sets are add-wins:
 *   a remove only removes the additions it has seen. Texts merge as Yjs text.
 *   These live in root-level types named by path, so concurrent creation of
 *   the same counter/set/text loses nothing.
 * - Overwriting or deleting a counter, set or text empties its shared type,
 *   so a later one at the same path starts empty. Increments, adds or
 *   inserts concurrent with that overwrite survive in the shared type but
 *   stay invisible until a counter/set/text is created at the path again.
 * - Existence: a document exists when its root map has any key. A write
 *   sets the reserved key `"\u0000live"` where it is absent (see
 *   `markLive`). A delete removes the root keys it sees (and empties the
 *   shared types), so a delete concurrent with an update leaves the
 *   document existing with the top-level fields the update wrote; fields the
 *   delete saw are gone, and so are the update's increments, adds, text
 *   edits and writes inside objects the delete removed. An update that wrote
 *   no top-level field leaves nothing: the document stays deleted.
 * - Keys starting with U+0000 are reserved; user JSON using one is refused,
 *   and so is the key `__proto__` and any string or key with a lone
 *   surrogate (replicas would decode them differently from the writer).
 * - Rendering is deterministic: object keys sorted, set elements sorted by
 *   canonical JSON (see `read.ts`).
 */
import * as Y from 'yjs';
import { assertJsonObject, isJsonObject, isReservedKey, jsonEqual, stripNulls } from './json.js';
import { markLive, clearAllNamed, clearValue, rootMap, toYValue } from './layout.js';
import { beginRender, documentExists, renderValue } from './read.js';
import type { Json, JsonObject, Path, WriteContext } from './types.js';

export { readDocument, documentExists } from './read.js';
export { applyOps, opsOnlyDelete } from './ops.js';
export { parseOps } from './ops-parse.js';
export { canonicalJson } from './json.js';

type Mode = 'put' | 'patch';

/**
 * Makes the document exactly `value`. Diffs against the current tree: keys
 * absent from `value` are deleted, fields whose current rendering already
 * equals the new value are not rewritten (so a PUT of a document as read
 * keeps its counters, sets and texts), and nested objects recurse into the
 * existing nested maps, so a concurrent PUT changing other fields survives.
 * Throws `invalid_body` for a non-object, non-JSON or reserved-key value.
 */
export function putDocument(doc: Y.Doc, value: JsonObject, _ctx: WriteContext, origin: unknown): void {
  assertJsonObject(value, 'invalid_body', 'document');
  beginRender();
  doc.transact(() => {
    const root = rootMap(doc);
    replaceEntries(doc, root, value, []);
    markLive(root);
  }, origin);
}

/**
 * Applies an RFC 7396 merge patch: null deletes a field, an object merges
 * into the object at that key (replacing a non-object), anything else
 * replaces the field. Creates the document when it does not exist. Throws
 * `invalid_body` like {@link putDocument}.
 */
export function mergePatch(doc: Y.Doc, patch: JsonObject, _ctx: WriteContext, origin: unknown): void {
  assertJsonObject(patch, 'invalid_body', 'patch');
  beginRender();
  doc.transact(() => {
    const root = rootMap(doc);
    patchEntries(doc, root, patch, []);
    markLive(root);
  }, origin);
}

/**
 * Deletes the document: every root key this doc holds, and the contents of
 * every counter, set and text. Returns false, changing nothing and emitting
 * no update, when the document does not exist.
 */
export function deleteDocument(doc: Y.Doc, origin: unknown): boolean {
  if (!documentExists(doc)) return false;
  doc.transact(() => {
    const root = rootMap(doc);
    for (const key of Array.from(root.keys())) {
      if (!isReservedKey(key)) clearValue(doc, root.get(key), [key]);
      root.delete(key);
    }
    clearAllNamed(doc);
  }, origin);
  return true;
}

function replaceEntries(doc: Y.Doc, map: Y.Map<unknown>, value: JsonObject, path: Path): void {
  for (const key of Array.from(map.keys())) {
    if (isReservedKey(key) || Object.hasOwn(value, key)) continue;
    clearValue(doc, map.get(key), [...path, key]);
    map.delete(key);
  }
  for (const [key, next] of Object.entries(value)) writeField(doc, map, key, next, path, 'put');
}

function patchEntries(doc: Y.Doc, map: Y.Map<unknown>, patch: JsonObject, path: Path): void {
  for (const [key, next] of Object.entries(patch)) {
    if (next !== null) {
      writeField(doc, map, key, next, path, 'patch');
    } else if (map.has(key)) {
      clearValue(doc, map.get(key), [...path, key]);
      map.delete(key);
    }
  }
}

function writeField(doc: Y.Doc, map: Y.Map<unknown>, key: string, next: Json, path: Path, mode: Mode): void {
  const fieldPath = [...path, key];
  const current = map.has(key) ? map.get(key) : undefined;
  if (isJsonObject(next)) {
    if (current instanceof Y.Map) {
      const nested = current as Y.Map<unknown>;
      if (mode === 'put') replaceEntries(doc, nested, next, fieldPath);
      else patchEntries(doc, nested, next, fieldPath);
      return;
    }
    clearValue(doc, current, fieldPath);
    map.set(key, toYValue(mode === 'put' ? next : stripNulls(next)));
    return;
  }
  if (map.has(key) && jsonEqual(renderValue(doc, current, fieldPath, 0), next)) return;
  clearValue(doc, current, fieldPath);
  map.set(key, toYValue(next));
}
