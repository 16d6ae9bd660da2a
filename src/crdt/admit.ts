/**
 * What a client's binary Yjs update may do to a document, checked against
 * the document before anything is applied.
 *
 * Threat model: any holder of a write token can post any bytes that decode
 * as a Yjs update (validate.ts has already checked the format). Yjs trusts
 * that a struct id (client, clock) names one piece of content everywhere;
 * an update that breaks this, or that leans on changes nobody holds, is
 * accepted by Yjs without complaint and leaves replicas apart for good:
 * - a struct under a region's client id (2^32 and up) or under an id whose
 *   clocks this document already holds with other content: replicas that
 *   saw different versions never converge (Yjs drops the second silently);
 * - a struct, reference or deletion beyond what this document and the update
 *   itself hold: Yjs parks it as pending, and since the dependency may never
 *   exist, the document would wait for it forever.
 * Both are refused before the document is touched.
 */
import * as Y from 'yjs';
import { MeridianError } from '../errors.js';
import { isRegionClient } from './clientid.js';
import { MAX_DEPTH, valueKey } from './json.js';
import type { DecodedUpdate } from './validate.js';
import { heldNeighbours, listNeighbours } from './load.js';
import { MAX_PLACEMENT_STEPS } from './placement.js';

type Struct = DecodedUpdate['structs'][number];

/**
 * Throws `client_id_conflict` (409) for a struct under a region's client id
 * or one that rewrites content this document holds under the same id, and
 * `invalid_update` (400) for an update that depends on changes this region
 * does not hold or nests types deeper than {@link MAX_TYPE_DEPTH}.
 * `decoded` is `Y.decodeUpdate` of the update. `writesHere(client)`: whether
 * `client` is the id under which a writer this region knows of writes this
 * document; such structs beyond what it holds are a client resending what it
 * got from that writer's region (an editor moved here after it failed), not
 * yet replicated here: refused as changes not held yet, so the client sends
 * them again later, when they compare as held or conflict.
 */
export function admitClientUpdate(doc: Y.Doc, decoded: DecodedUpdate, writesHere: (client: number) => boolean = () => false): { checkReload: boolean } {
  const reach = new Map<number, number>();
  const held = (client: number): number => reach.get(client) ?? Y.getState(doc.store, client);
  for (const struct of decoded.structs) {
    const { client, clock } = struct.id;
    const known = Y.getState(doc.store, client);
    // Resending a region's structs is fine (they are compared below); writing new ones is not.
    if (isRegionClient(client) && clock + struct.length > known) {
      if (writesHere(client)) missing(`struct ${client}:${clock} of a region's writer has not replicated here yet`);
      conflict(`client id ${client} belongs to a region writer; clients use ids below 2^32`);
    }
    if (struct instanceof Y.Skip) missing(`the update skips clocks of client ${client}`);
    if (clock > held(client)) missing(`struct ${client}:${clock} follows clocks this region does not hold`);
    if (clock < known) checkSameAsHeld(doc, struct, Math.min(clock + struct.length, known));
    reach.set(client, Math.max(held(client), clock + struct.length));
  }
  for (const struct of decoded.structs) {
    if (!(struct instanceof Y.Item)) continue;
    const parent = struct.parent instanceof Y.ID ? struct.parent : null;
    for (const ref of [struct.origin, struct.rightOrigin, parent]) {
      if (ref !== null && ref.clock >= held(ref.client)) {
        missing(`struct ${struct.id.client}:${struct.id.clock} refers to ${ref.client}:${ref.clock}, which this region does not hold`);
      }
    }
  }
  for (const [client, ranges] of decoded.ds.clients) {
    for (const { clock, len } of ranges) {
      if (clock + len > held(client)) missing(`the update deletes ${client}:${clock}+${len}, which this region does not hold`);
    }
  }
  // Last: every reference is now known to be held or in the update.
  checkTypeDepth(doc, decoded);
  checkSplits(doc, decoded);
  return { checkReload: placesAmissNeighbours(doc, decoded) };
}

/**
 * Struct slots Yjs may move, in all, to split the document's items where a
 * client's update deletes or inserts (see {@link checkSplits}): 25-90 ms
 * (0.25 ns a slot in arrays of 20,000 structs, 0.9 in arrays of 100,000).
 */
export const MAX_SPLIT_MOVES = 100_000_000;

/**
 * Refuses (`too_complex`, 413) an update whose deletions and insertions
 * would split held items at so many places that Yjs spends seconds on it.
 * Yjs keeps each client's structs in one array and inserts the second half
 * of a split item into it, moving every struct after it: a client that
 * wrote a long text and then 100,000 other structs, deleting every other
 * character of the text in one 400 KB update, had the region (and each
 * peer, applying it) move 10^10 slots, for 15 s. The splits are replayed in
 * the order Yjs makes them (the update's items' origins and right origins,
 * then its deletions), each counted at the structs after it: the held ones,
 * and the pieces earlier splits put there. Yjs splits no GC struct, and no
 * deleted item for a deletion.
 */
function checkSplits(doc: Y.Doc, decoded: DecodedUpdate): void {
  /** Per client of held structs: each split point, in order, with the index of the struct it falls in. */
  const points = new Map<number, { clock: number; index: number }[]>();
  const splitAt = (client: number, clock: number, deleting: boolean): void => {
    const structs = doc.store.clients.get(client);
    if (structs === undefined || clock >= Y.getState(doc.store, client)) return;
    const index = Y.findIndexSS(structs, clock);
    const struct = structs[index]!;
    if (struct.id.clock === clock || struct instanceof Y.GC || (deleting && struct.deleted)) return;
    let list = points.get(client);
    if (list === undefined) points.set(client, (list = []));
    list.push({ clock, index });
  };
  for (const struct of decoded.structs) {
    if (!(struct instanceof Y.Item)) continue;
    // An origin is split after it, a right origin before it.
    if (struct.origin !== null) splitAt(struct.origin.client, struct.origin.clock + 1, false);
    if (struct.rightOrigin !== null) splitAt(struct.rightOrigin.client, struct.rightOrigin.clock, false);
  }
  for (const [client, ranges] of decoded.ds.clients) {
    for (const { clock, len } of ranges) {
      splitAt(client, clock, true);
      splitAt(client, clock + len, true);
    }
  }
  let moves = 0;
  for (const [client, list] of points) {
    const held = doc.store.clients.get(client)!.length;
    // Splits already made, counted by clock (a Fenwick tree over the points' ranks), to count those after each.
    const clocks = [...new Set(list.map((p) => p.clock))].sort((a, b) => a - b);
    const rank = new Map(clocks.map((c, i) => [c, i + 1]));
    const made = new Array<number>(clocks.length + 1).fill(0);
    const done = new Set<number>();
    for (const { clock, index } of list) {
      // A point split before is whole already.
      if (done.has(clock)) continue;
      const r = rank.get(clock)!;
      let upTo = 0;
      for (let i = r; i > 0; i -= i & -i) upTo += made[i]!;
      moves += held - index - 1 + (done.size - upTo);
      for (let i = r; i <= clocks.length; i += i & -i) made[i] = made[i]! + 1;
      done.add(clock);
      if (moves > MAX_SPLIT_MOVES) {
        throw new MeridianError('too_complex', `the update splits the document's items at so many places that more than ${MAX_SPLIT_MOVES} of them would move; split it into smaller updates`);
      }
    }
  }
}

/**
 * Shared types a client may nest inside one another (maps in maps, XML
 * elements in elements). Each level costs every reader a step of recursion
 * (rendering, digests, Yjs's own toString and toJSON) and the garbage
 * collector a pointer to chase: 70,000 nested maps overflow the stack of a
 * digest, which would leave the document out of anti-entropy for good.
 */
export const MAX_TYPE_DEPTH = MAX_DEPTH * 2;

/**
 * Throws `invalid_update` if a new type of the update would sit deeper than
 * {@link MAX_TYPE_DEPTH}. A new item's place is named by its parent (a root,
 * or the item holding a type) or, when the encoding leaves the parent out,
 * by its origin's; either may be held by the document or new in the update.
 */
function checkTypeDepth(doc: Y.Doc, decoded: DecodedUpdate): void {
  const types = decoded.structs.filter((s): s is Y.Item => s instanceof Y.Item && s.content instanceof Y.ContentType);
  if (types.length === 0) return;
  const fresh = new Map<number, Y.Item[]>();
  for (const s of decoded.structs) {
    if (!(s instanceof Y.Item)) continue;
    const list = fresh.get(s.id.client);
    if (list) list.push(s);
    else fresh.set(s.id.client, [s]);
  }
  for (const list of fresh.values()) list.sort((a, b) => a.id.clock - b.id.clock);
  const freshAt = (id: Y.ID): Y.Item | null => structAt(fresh.get(id.client) ?? [], id.clock);
  const heldDepths = new Map<unknown, number>();
  /** Levels above a type the document holds (a root: 0), counted up to one past the bound. */
  const heldDepth = (type: unknown): number => {
    if (!(type instanceof Y.AbstractType)) return 0;
    const known = heldDepths.get(type);
    if (known !== undefined) return known;
    let depth = 0;
    for (let t: Y.AbstractType<unknown> = type; t._item !== null && depth <= MAX_TYPE_DEPTH; depth++) t = t._item.parent as Y.AbstractType<unknown>;
    heldDepths.set(type, depth);
    return depth;
  };
  /** Depth of the type each new item sits in. */
  const sitsAt = new Map<Y.Item, number>();
  const depthOf = (start: Y.Item): number => {
    // Iterative: chains of origins run as long as a text typed letter by letter.
    const chain: { item: Y.Item; step: number }[] = [];
    let base = 0;
    for (let item: Y.Item | null = start; item !== null;) {
      const known = sitsAt.get(item);
      if (known !== undefined) {
        base = known;
        break;
      }
      const parent = item.parent as unknown;
      const ref = parent instanceof Y.ID ? parent : typeof parent === 'string' ? null : (item.origin ?? item.rightOrigin);
      if (ref === null) {
        chain.push({ item, step: 0 });
        break;
      }
      const step = parent instanceof Y.ID ? 1 : 0;
      chain.push({ item, step });
      const next = freshAt(ref);
      if (next !== null) {
        item = next;
        continue;
      }
      // Whether it names the item holding the parent type or a neighbour, the
      // held item sits where the new one's chain starts. A reference into
      // collected structs has no type left (Yjs collects what it places there).
      const held = heldItem(doc, ref);
      base = held ? heldDepth(held.parent) : 0;
      break;
    }
    for (let i = chain.length - 1; i >= 0; i--) {
      const { item, step } = chain[i]!;
      base += step;
      sitsAt.set(item, base);
    }
    return sitsAt.get(start)!;
  };
  for (const item of types) {
    if (depthOf(item) + 1 > MAX_TYPE_DEPTH) {
      throw new MeridianError('invalid_update', `struct ${item.id.client}:${item.id.clock} nests shared types deeper than ${MAX_TYPE_DEPTH} levels`);
    }
  }
}

/** The item the document holds at `id`; null where it holds none (collected, or structs of this update that are not items). */
function heldItem(doc: Y.Doc, id: Y.ID): Y.Item | null {
  if (id.clock >= Y.getState(doc.store, id.client)) return null;
  const struct = Y.getItem(doc.store, id) as Y.Item | Y.GC;
  return struct instanceof Y.Item ? struct : null;
}

/** Items walked at most from an item's origin toward its right origin (see {@link placesAmissNeighbours}). */
const MAX_NEIGHBOUR_WALK = 4096;
/**
 * Items walked at most for all of one update's items: as many as Yjs may
 * scan placing them (it scans the same items, from each origin to its right
 * origin). An editor's item walks past the few inserted concurrently at its
 * place; past this, the update is checked after it is applied all the same.
 */
const MAX_NEIGHBOUR_WALK_TOTAL = MAX_PLACEMENT_STEPS;

/**
 * Whether a client's update places a new item between two items it names
 * as neighbours that no editor wrote side by side: two characters of one
 * run (held, or in the update) with others of it between them or in the
 * other order, held items in two types or in a map, or a right neighbour not
 * to the right of the left one (walking right from it). Yjs places such an
 * item all the same, and the document may then differ from what its own
 * state reloads to: two requests of one client (a text `bca`, then `yz`
 * named as written between its `a` and its `c`), or one holding both, left
 * the region serving `byzca` while its store, and every region that took
 * the write, held `bcayz`. Editors do write some of these (undoing in XML
 * through a deleted parent names one item as both neighbours), so the
 * update is not refused for this: the caller checks the document against
 * its reload once the update is applied (see Documents.applyYjs), and
 * refuses it only where they differ.
 */
function placesAmissNeighbours(doc: Y.Doc, decoded: DecodedUpdate): boolean {
  const walk = { left: MAX_NEIGHBOUR_WALK_TOTAL };
  let inUpdate: Map<number, Struct[]> | null = null;
  const updateStruct = (id: Y.ID): Struct | null => {
    if (inUpdate === null) {
      inUpdate = new Map();
      for (const s of decoded.structs) {
        const list = inUpdate.get(s.id.client);
        if (list) list.push(s);
        else inUpdate.set(s.id.client, [s]);
      }
    }
    // A client's structs come in clock order (validate.ts).
    return structAt(inUpdate.get(id.client) ?? [], id.clock);
  };
  const runOf = (id: Y.ID): object | null => heldStruct(doc, id) ?? updateStruct(id);
  for (const struct of decoded.structs) {
    // Resent structs Yjs skips; a struct that straddles the clock held is new past it, next to its own held part.
    if (!(struct instanceof Y.Item) || struct.id.clock < Y.getState(doc.store, struct.id.client)) continue;
    if (struct.origin === null || struct.rightOrigin === null) continue;
    const { origin, rightOrigin } = struct;
    const run = runOf(origin);
    if (run !== null && run === runOf(rightOrigin) && rightOrigin.clock !== origin.clock + 1) return true;
    const held = heldNeighbours(doc, struct);
    if (held === null || held.left === held.right) continue;
    if (!listNeighbours(held.left, origin, held.right, rightOrigin)) return true;
    let o = held.left.right;
    let steps = 0;
    for (; o !== null && o !== held.right && steps < MAX_NEIGHBOUR_WALK; steps++) o = o.right;
    walk.left -= steps;
    // Not found, or not within the walk: checked.
    if (o !== held.right || walk.left < 0) return true;
  }
  return false;
}

/**
 * After a client's update is applied: whether one of its new items names as
 * neighbours two places that now lie in one struct of the document. Placed
 * between them, the item would sit between them; Yjs merges adjacent
 * structs once a transaction ends, so two runs written by one request (or
 * an honest one, then one more) can make one, and an item that names two
 * places of it the other way round was spliced where the document's state
 * does not reload to (`placesAmissNeighbours` sees the runs before they
 * merge). The caller then checks the document against its reload.
 */
export function namesOneStruct(doc: Y.Doc, decoded: DecodedUpdate, clocksBefore: ReadonlyMap<number, number>): boolean {
  for (const struct of decoded.structs) {
    if (!(struct instanceof Y.Item) || struct.origin === null || struct.rightOrigin === null) continue;
    if (struct.id.clock < (clocksBefore.get(struct.id.client) ?? 0)) continue;
    if (Y.getItem(doc.store, struct.origin) === Y.getItem(doc.store, struct.rightOrigin)) return true;
  }
  return false;
}

/** The struct of `list` (one client's, in clock order) that holds `clock`, found by bisection. */
function structAt<T extends { id: Y.ID; length: number }>(list: readonly T[], clock: number): T | null {
  let lo = 0;
  let hi = list.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const s = list[mid]!;
    if (clock < s.id.clock) hi = mid - 1;
    else if (clock >= s.id.clock + s.length) lo = mid + 1;
    else return s;
  }
  return null;
}

function heldStruct(doc: Y.Doc, id: Y.ID): object | null {
  return id.clock < Y.getState(doc.store, id.client) ? Y.getItem(doc.store, id) : null;
}

function conflict(message: string): never {
  throw new MeridianError('client_id_conflict', message);
}

function missing(message: string): never {
  throw new MeridianError(
    'invalid_update',
    `${message}; send updates built on this region's state (if they came from another region, retry once it has replicated)`,
  );
}

/**
 * Each clock of `struct` below `end` must match what the document holds under
 * that id: same kind of content, same values, same neighbours at insertion
 * and same parent. Of a deleted item only the place is left (its content was
 * garbage-collected), so only the place is compared; of a collected type
 * nothing is left, and a resend of it changes nothing.
 */
function checkSameAsHeld(doc: Y.Doc, struct: Struct, end: number): void {
  if (!(struct instanceof Y.Item)) return;
  const { client } = struct.id;
  const structs = doc.store.clients.get(client);
  if (structs === undefined) return;
  let clock = struct.id.clock;
  let index = Y.findIndexSS(structs, clock);
  while (clock < end) {
    const held = structs[index++];
    if (held === undefined) return;
    const upto = Math.min(end, held.id.clock + held.length);
    if (held instanceof Y.Item && !sameUnits(struct, held, clock, upto)) {
      conflict(`client ${client} already wrote different content at clock ${clock}; use a fresh Yjs client id`);
    }
    clock = upto;
  }
}

/** Whether `a` and `b` hold the same units over clocks [from, to); `b` is held (its content may be collected). */
function sameUnits(a: Y.Item, b: Y.Item, from: number, to: number): boolean {
  if (!sameId(originAt(a, from), originAt(b, from)) || !sameId(a.rightOrigin, b.rightOrigin)) return false;
  // The encoding names the parent (and key) only of an item without origins; otherwise they follow from those, compared above.
  const namesParent = a.origin === null && a.rightOrigin === null;
  if (namesParent && ((a.parentSub ?? null) !== (b.parentSub ?? null) || !sameParent(a, b))) return false;
  // Deleted on either side, the content is gone: compared by place and length. A client resending its whole state
  // sends what it deleted as such (with the deletion), where this region may still hold it.
  if (b.content instanceof Y.ContentDeleted || a.content instanceof Y.ContentDeleted) return true;
  if (a.content.constructor !== b.content.constructor) return false;
  const slice = (item: Y.Item) => unitsIn(item.content, from - item.id.clock, to - item.id.clock);
  return valueKey(slice(a)) === valueKey(slice(b));
}

/** The left neighbour a unit was inserted after: the item's origin for its first unit, the previous unit otherwise. */
function originAt(item: Y.Item, clock: number): Y.ID | null {
  return clock === item.id.clock ? item.origin : Y.createID(item.id.client, clock - 1);
}

function sameId(a: Y.ID | null, b: Y.ID | null): boolean {
  return a === null || b === null ? a === b : a.client === b.client && a.clock === b.clock;
}

/** A decoded struct names its parent (a root name or an item id); an integrated one holds the type. */
function sameParent(decoded: Y.Item, held: Y.Item): boolean {
  const named = decoded.parent as unknown;
  const type = held.parent as unknown;
  if (!(type instanceof Y.AbstractType)) return true;
  if (typeof named === 'string') return type._item === null && Y.findRootTypeKey(type) === named;
  if (named instanceof Y.ID) return type._item !== null && sameId(named, type._item.id);
  // No parent in the encoding: it follows from the origins, compared above.
  return true;
}

/**
 * The comparable units of a content over offsets [from, to), one per clock.
 * Only those: a resent item is compared piece by piece with what is held, and
 * a long text held in many pieces (every other character deleted) would
 * otherwise be turned into units whole once per piece.
 */
function unitsIn(content: Y.Item['content'], from: number, to: number): unknown[] {
  if (content instanceof Y.ContentString) return Array.from({ length: to - from }, (_, i) => content.str.charCodeAt(from + i));
  if (content instanceof Y.ContentDeleted) return new Array<null>(to - from).fill(null);
  return unitsOf(content).slice(from, to);
}

/** The comparable units of a content, one per clock (strings and deleted runs: see {@link unitsIn}). */
function unitsOf(content: Y.Item['content']): unknown[] {
  if (content instanceof Y.ContentType) {
    const type: unknown = content.type;
    return [content.type.constructor.name, type instanceof Y.XmlElement ? type.nodeName : null];
  }
  if (content instanceof Y.ContentBinary) return [Array.from(content.content)];
  if (content instanceof Y.ContentFormat) return [content.key, content.value];
  return content.getContent();
}
