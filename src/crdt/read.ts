/**
 * Renders a document's Yjs state as plain JSON. The rendering is
 * deterministic: two docs holding the same Yjs state render to the same JSON
 * text, whatever order their updates arrived in (object keys sorted, set
 * elements sorted by canonical JSON).
 *
 * Rendering is defensive: clients may write arbitrary Yjs content through
 * binary updates, so values outside the model's layout render as JSON where
 * there is an obvious mapping (`Y.Array`, `Y.Text`) and as null otherwise.
 */
import * as Y from 'yjs';
import { MAX_DEPTH, canonicalJson, isJsonScalar, isPlainObject, isReservedKey, setOwn } from './json.js';
import { counterMap, isModelShare, markerKind, rootMap, setMap, textType, type TypedKind } from './layout.js';
import type { Json, JsonObject, Path } from './types.js';

/**
 * Nesting beyond which foreign content renders as null. Larger than
 * {@link MAX_DEPTH} so that everything the model itself writes renders in full.
 */
const RENDER_DEPTH = MAX_DEPTH * 2;

/**
 * Work one document's read may spend rendering XML content (see
 * {@link xmlWork}), in about the characters it writes: about 0.3 s where a
 * text holds hundreds of formatting marks open at once, well beyond any
 * editor's; a 4.7 MB text of 100,000 formatted runs renders in 0.14 s and
 * takes a third of it.
 * Yjs renders an XML text run by run, each run with every mark open on it,
 * so a text formatted one character at a time with marks that never close
 * renders in the square of its length: 79 KB of update rendered to 22 MB of
 * XML in 2.9 s, at every region, for each read and each change feed.
 * Content past the budget renders as null, as content nested past
 * {@link RENDER_DEPTH} does; `GET .../yjs` serves it whole.
 */
export const XML_RENDER_BUDGET = 10_000_000;

/**
 * What the XML rendering of the document being read may still spend: set
 * anew by {@link beginRender} at each read or write of a document (renders
 * are synchronous), so that it bounds a whole document, not each XML type.
 */
let xmlLeft = XML_RENDER_BUDGET;

/** Starts a document's read: its XML renders may spend {@link XML_RENDER_BUDGET} from here. */
export function beginRender(): void {
  xmlLeft = XML_RENDER_BUDGET;
}

/**
 * Where the JSON view shows root-level shared types the model does not
 * write (an editor's `XmlFragment`, a `Y.Text` bound at the root), by share
 * name. Read-only: a write that carries this field stores it as a plain field.
 */
export const FOREIGN_SHARES_KEY = '$yjs';

/**
 * The document as JSON: null when it holds nothing (never written, or
 * deleted, and no editor content); otherwise the tree without reserved
 * keys, counters as numbers (the sum of all writers' slots), sets as arrays
 * sorted by the canonical JSON of their elements, and texts as strings,
 * plus {@link FOREIGN_SHARES_KEY} when the document holds foreign shared
 * types (see {@link renderForeignShares}); a tree field of that name wins.
 */
export function readDocument(doc: Y.Doc): JsonObject | null {
  beginRender();
  const root = rootMap(doc);
  const foreign = renderForeignShares(doc);
  const rooted = holdsLiveEntry(root);
  if (!rooted && foreign === null) return null;
  const out = rooted ? renderMap(doc, root, [], 0) : {};
  if (foreign !== null && !Object.hasOwn(out, FOREIGN_SHARES_KEY)) setOwn(out, FOREIGN_SHARES_KEY, foreign);
  return out;
}

/** Whether the document holds anything: a root key (reserved ones included) or foreign content. */
export function documentHoldsContent(doc: Y.Doc): boolean {
  if (holdsLiveEntry(rootMap(doc))) return true;
  for (const [name, type] of doc.share) if (!isModelShare(name) && holdsLiveItem(type)) return true;
  return false;
}

/** Root-level shared types outside the model that hold live content. */
function foreignShares(doc: Y.Doc): [string, Y.AbstractType<Y.YEvent<Y.AbstractType<unknown>>>][] {
  return [...doc.share.entries()].filter(([name, type]) => !isModelShare(name) && holdsLiveItem(type));
}

function holdsLiveItem(type: Y.AbstractType<Y.YEvent<Y.AbstractType<unknown>>>): boolean {
  for (let item: Y.Item | null = type._start; item !== null; item = item.right) if (!item.deleted) return true;
  return holdsLiveEntry(type);
}

/**
 * Whether a keyed type has a key that is not deleted: what `Y.Map#size > 0`
 * says, without the array of every entry `size` builds (digests ask it of
 * every changed document).
 */
function holdsLiveEntry(type: { _map: Map<string, Y.Item> }): boolean {
  for (const item of type._map.values()) if (!item.deleted) return true;
  return false;
}

/**
 * Foreign shared types by name, rendered without assuming their kind (a
 * share received from a peer or client has no class until someone names
 * it): a sequence of characters as a string (a `Y.Text`), XML elements and
 * texts as their XML string (an `XmlFragment`), other sequences as arrays,
 * and keyed types as objects. Null when there are none.
 */
function renderForeignShares(doc: Y.Doc): JsonObject | null {
  const shares = foreignShares(doc);
  if (shares.length === 0) return null;
  const out: JsonObject = {};
  for (const [name, type] of shares.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    setOwn(out, name, renderForeign(doc, type));
  }
  return out;
}

function renderForeign(doc: Y.Doc, type: Y.AbstractType<Y.YEvent<Y.AbstractType<unknown>>>): Json {
  if (type._start === null) {
    const out: JsonObject = {};
    for (const key of Array.from(type._map.keys()).sort()) {
      const item = type._map.get(key);
      if (item && !item.deleted) setOwn(out, key, renderValue(doc, item.content.getContent().at(-1), null, 1));
    }
    return out;
  }
  const pieces: Json[] = [];
  for (let item: Y.Item | null = type._start; item !== null; item = item.right) {
    if (item.deleted || !item.countable) continue;
    for (const value of item.content.getContent() as unknown[]) pieces.push(renderPiece(doc, value));
  }
  return pieces.every((p) => typeof p === 'string') ? pieces.join('') : pieces;
}

function renderPiece(doc: Y.Doc, value: unknown): Json {
  if (value instanceof Y.XmlElement || value instanceof Y.XmlText || value instanceof Y.XmlFragment) return renderXml(value);
  return renderValue(doc, value, null, 1);
}

/** Yjs's XML string of `type`, or null when rendering it would take the document's XML past {@link XML_RENDER_BUDGET}. */
function renderXml(type: Y.XmlElement | Y.XmlText | Y.XmlFragment): string | null {
  const work = xmlWork(type as unknown as Y.AbstractType<Y.YEvent<Y.AbstractType<unknown>>>, xmlLeft);
  // Left unrendered, it spends nothing: the document's other XML may still be rendered.
  if (work > xmlLeft) return null;
  xmlLeft -= work;
  return type.toString();
}

/**
 * What rendering `type` as XML costs, as Yjs does it, stopping once past
 * `limit`, in about the characters Yjs writes: for each run of text, every
 * mark open on it (its key twice, and each key of its value with the value
 * as a string: Yjs lists a string value's characters one by one), plus
 * {@link RUN_UNITS} for the run and {@link MARK_UNITS} for each mark, which
 * Yjs copies and sorts per run; for each element its name twice and its
 * attributes (a shared type there rendered in turn).
 */
function xmlWork(type: Y.AbstractType<Y.YEvent<Y.AbstractType<unknown>>>, limit: number): number {
  let work = RUN_UNITS;
  if (type instanceof Y.XmlElement) {
    work += 2 * type.nodeName.length;
    for (const [key, item] of type._map) {
      if (item.deleted) continue;
      const value: unknown = item.content.getContent().at(-1);
      work += key.length + 4 + (value instanceof Y.AbstractType ? xmlWork(value as Y.AbstractType<Y.YEvent<Y.AbstractType<unknown>>>, limit - work) : textWeight(value, limit - work));
      if (work > limit) return work;
    }
  }
  /** Marks open on the run being read, by key, with their weights; their sum. */
  const marks = new Map<string, number>();
  let open = 0;
  let run = false;
  const endRun = (): void => {
    // Yjs sorts the marks of each run by key.
    if (run) work += RUN_UNITS + open + SORT_UNITS * marks.size * Math.log2(marks.size + 1);
    run = false;
  };
  for (let item: Y.Item | null = type._start; item !== null && work <= limit; item = item.right) {
    if (item.deleted) continue;
    const content = item.content;
    if (content instanceof Y.ContentString) {
      run = true;
    } else if (content instanceof Y.ContentFormat) {
      endRun();
      open -= marks.get(content.key) ?? 0;
      if (content.value === null) marks.delete(content.key);
      else {
        const weight = markWeight(content.key, content.value, limit - work);
        marks.set(content.key, weight);
        open += weight;
      }
    } else if (content instanceof Y.ContentType) {
      endRun();
      work += RUN_UNITS + open + xmlWork(content.type as Y.AbstractType<Y.YEvent<Y.AbstractType<unknown>>>, limit - work);
    } else if (content instanceof Y.ContentEmbed) {
      endRun();
      work += RUN_UNITS + open;
    }
  }
  endRun();
  return work;
}

/** Units of {@link xmlWork} for a run of text, an element or an embed, beyond what it writes. */
const RUN_UNITS = 8;
/** ... and for each mark open on a run; and for each step of sorting a run's marks. */
const MARK_UNITS = 24;
const SORT_UNITS = 4;

/** What one mark costs each run it is open on (see {@link xmlWork}); past `limit`, more than `limit`. */
function markWeight(key: string, value: unknown, limit: number): number {
  let weight = MARK_UNITS + 2 * key.length;
  if (typeof value === 'string') return weight + 8 * value.length;
  if (typeof value !== 'object' || value === null) return weight;
  for (const [k, v] of Object.entries(value)) {
    weight += k.length + 4 + textWeight(v, limit - weight);
    if (weight > limit) break;
  }
  return weight;
}

/** About the characters `String(value)` makes of a JSON value (an array joins its elements); past `limit`, more than `limit`. */
function textWeight(value: unknown, limit: number): number {
  if (typeof value === 'string') return value.length;
  if (value instanceof Y.Text) return value.length;
  if (!Array.isArray(value)) return 24;
  let weight = 0;
  for (const element of value as unknown[]) {
    weight += 1 + textWeight(element, limit - weight);
    if (weight > limit) break;
  }
  return weight;
}

/** Whether the document exists: its root map has any key, reserved ones included. */
export function documentExists(doc: Y.Doc): boolean {
  return holdsLiveEntry(rootMap(doc));
}

function renderMap(doc: Y.Doc, map: Y.Map<unknown>, path: Path | null, depth: number): JsonObject {
  const out: JsonObject = {};
  const keys = Array.from(map.keys())
    .filter((k) => !isReservedKey(k))
    .sort();
  for (const key of keys) setOwn(out, key, renderValue(doc, map.get(key), path === null ? null : [...path, key], depth + 1));
  return out;
}

/**
 * Renders one stored value. `path` is where the value stands in the tree
 * (markers name their shared type by it), or null inside arrays, where the
 * model never puts markers.
 */
export function renderValue(doc: Y.Doc, value: unknown, path: Path | null, depth: number): Json {
  if (depth > RENDER_DEPTH) return null;
  if (isJsonScalar(value)) return value;
  if (value instanceof Y.Map) return renderMap(doc, value as Y.Map<unknown>, path, depth);
  if (value instanceof Y.XmlText) return renderXml(value);
  if (value instanceof Y.Text) return value.toString();
  if (value instanceof Y.Array) return (value as Y.Array<unknown>).toArray().map((v) => renderValue(doc, v, null, depth + 1));
  if (Array.isArray(value)) return value.map((v: unknown) => renderValue(doc, v, null, depth + 1));
  const kind = markerKind(value);
  if (kind !== null) return path === null ? null : renderTyped(doc, kind, path);
  if (isPlainObject(value)) return renderPlainObject(doc, value, depth);
  return null;
}

function renderPlainObject(doc: Y.Doc, value: Record<string, unknown>, depth: number): JsonObject {
  const out: JsonObject = {};
  for (const key of Object.keys(value).sort()) {
    if (!isReservedKey(key)) setOwn(out, key, renderValue(doc, value[key], null, depth + 1));
  }
  return out;
}

function renderTyped(doc: Y.Doc, kind: TypedKind, path: Path): Json {
  if (kind === 'counter') return counterValue(doc, path);
  if (kind === 'text') return textType(doc, path).toString();
  return setElements(doc, path);
}

/**
 * The sum of all writers' slots, added in key order so that every replica
 * gets the same result; slots that are not finite numbers are ignored.
 */
export function counterValue(doc: Y.Doc, path: Path): number {
  const slots = counterMap(doc, path);
  let sum = 0;
  for (const writer of Array.from(slots.keys()).sort()) {
    const slot = slots.get(writer);
    if (typeof slot === 'number' && Number.isFinite(slot)) sum += slot;
  }
  return sum;
}

function setElements(doc: Y.Doc, path: Path): Json[] {
  const byKey = new Map<string, Json>();
  for (const element of setMap(doc, path).values()) {
    if (isJsonScalar(element)) byKey.set(canonicalJson(element), element);
  }
  return Array.from(byKey.keys())
    .sort()
    .map((k) => byKey.get(k) as Json);
}
