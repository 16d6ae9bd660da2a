/**
 * Building a doc from updates, and what to do when those updates hold
 * different content under the same struct ids.
 *
 * Yjs assumes one struct id (client, clock) names one piece of content
 * everywhere. Two clients that write under one client id at two regions at
 * once break that, and each region accepted its own write. Applying the
 * other's then splices: Yjs skips the clocks the doc holds and integrates
 * the rest next to content it was never written beside, taking the parent
 * type from those neighbours. Such a doc is not what its own encoding
 * reloads to, and worse, when a root type it spliced into is first read
 * with a concrete type (`getMap`, `getText`) afterwards, Yjs re-parents only
 * the items it reaches from that type's entries: the others keep a parent
 * that is no longer in the doc, and every later encoding of the doc throws
 * ("Unexpected case"). A region holding it could then commit no batch that
 * touches it, compact it, or send it to a peer.
 *
 * So a doc that took updates reaching below clocks it (or an earlier update
 * of the same build) already held, or placing an item between held items
 * no writer can have seen side by side, is replaced at once by what its own
 * encoding reloads to: encoding it is still safe then, since nothing has
 * read its types since the splice. Every region does the same with the same
 * states, and content conflicts are then found and resolved between whole
 * states (docs/replace.ts). Updates that stay above what is held, which is
 * all of ordinary replication, cost one pass over their headers.
 */
import * as Y from 'yjs';
import { newDoc } from './clientid.js';
import { digestParts } from './digest.js';
import { MeridianError } from '../errors.js';
import { MIN_MERGE_PLACEMENT_MS, MIN_MERGE_PLACEMENT_STEPS, PlacementOverrun, withMergeBound } from './placement.js';
import { retryPending, type DecodedUpdate } from './validate.js';

/**
 * Whether applying `updates` in order to `doc` (or to an empty doc) may
 * splice: a struct starting under what the doc, or an earlier update of the
 * list, holds of its client; or, for an update already decoded
 * (`Y.decodeUpdate`), a struct placed between two held items that cannot
 * have been neighbours in one list (its writer saw other content under their ids: a
 * diff that starts just past the clocks held, as anti-entropy sends).
 */
export function mayCollide(doc: Y.Doc | null, updates: readonly (Uint8Array | DecodedUpdate)[]): boolean {
  const reach = new Map<number, number>();
  const held = (client: number): number => reach.get(client) ?? (doc === null ? 0 : Y.getState(doc.store, client));
  for (const [i, update] of updates.entries()) {
    const last = i === updates.length - 1;
    if (update instanceof Uint8Array) {
      const { from, to } = Y.parseUpdateMeta(update);
      for (const [client, clock] of from) if (clock < held(client)) return true;
      if (!last) for (const [client, clock] of to) reach.set(client, Math.max(held(client), clock));
      continue;
    }
    // The common case, one entry of a peer's log: a pass over its structs, nothing allocated.
    for (const struct of update.structs) if (!(struct instanceof Y.Skip) && struct.id.clock < held(struct.id.client)) return true;
    if (doc !== null && placedAcrossTypes(doc, update)) return true;
    if (last) continue;
    for (const struct of update.structs) {
      if (!(struct instanceof Y.Skip)) reach.set(struct.id.client, Math.max(held(struct.id.client), struct.id.clock + struct.length));
    }
  }
  return false;
}

function placedAcrossTypes(doc: Y.Doc, decoded: DecodedUpdate): boolean {
  for (const struct of decoded.structs) {
    if (!(struct instanceof Y.Item)) continue;
    const held = heldNeighbours(doc, struct);
    if (held !== null && !listNeighbours(held.left, struct.origin!, held.right, struct.rightOrigin!)) return true;
  }
  return false;
}

/**
 * Whether an update deletes part of a live map entry holding more than one
 * clock. An editor's map entry holds one; a run of several sits under a key
 * only where two writers under one client id left it, and deleting part of
 * it splits it in a way the document's own state does not reload to (found
 * by fuzzing: an entry that only deleted left the structure half of the
 * digest other than a reload's), and no struct placed calls for the check
 * (see {@link mayHaveDiverged}). Two lookups per deleted range of each
 * decoded update, before it is applied.
 */
export function splitsMapEntry(doc: Y.Doc, updates: readonly (Uint8Array | DecodedUpdate)[]): boolean {
  return updates.some((update) => !(update instanceof Uint8Array) && deletesPartOfMapRun(doc, update));
}

function deletesPartOfMapRun(doc: Y.Doc, decoded: DecodedUpdate): boolean {
  for (const [client, ranges] of decoded.ds.clients) {
    const structs = doc.store.clients.get(client);
    if (structs === undefined) continue;
    const held = Y.getState(doc.store, client);
    for (const { clock, len } of ranges) {
      if (clock >= held) continue;
      // Only the structs at the range's two ends can be partly covered.
      const end = Math.min(clock + len, held);
      for (const s of [structs[Y.findIndexSS(structs, clock)]!, structs[Y.findIndexSS(structs, end - 1)]!]) {
        const partly = clock > s.id.clock || end < s.id.clock + s.length;
        if (partly && s instanceof Y.Item && !s.deleted && s.parentSub !== null && s.length > 1) return true;
      }
    }
  }
  return false;
}

/** The held items an item's origin and right origin name, when the document holds both. */
export function heldNeighbours(doc: Y.Doc, item: Y.Item): { left: Y.Item; right: Y.Item } | null {
  if (item.origin === null || item.rightOrigin === null) return null;
  const left = heldItem(doc, item.origin);
  const right = left && heldItem(doc, item.rightOrigin);
  return left && right ? { left, right } : null;
}

function heldItem(doc: Y.Doc, id: Y.ID): Y.Item | null {
  if (id.clock >= Y.getState(doc.store, id.client)) return null;
  const struct = Y.getItem(doc.store, id) as Y.Item | Y.GC;
  return struct instanceof Y.Item ? struct : null;
}

/**
 * Whether a writer can have seen `origin` and `rightOrigin` side by side in
 * one list, as held here in `left` and `right`. Not when they sit in two
 * types, or in a map (an entry never has a right origin), or in one held
 * run with other characters of that run between them: a writer that saw a
 * later character of a run saw the earlier ones where they are here.
 */
export function listNeighbours(left: Y.Item, origin: Y.ID, right: Y.Item, rightOrigin: Y.ID): boolean {
  if (left.parent !== right.parent || left.parentSub !== null || right.parentSub !== null) return false;
  return left !== right || rightOrigin.clock === origin.clock + 1;
}

/**
 * Builds a doc (gc on) from stored updates, applied in one transaction, and
 * only then sets `doc.clientID = clientId`. The order matters: Yjs replaces
 * a doc's client id when a non-local transaction advances the clock of that
 * id, which loading the doc's own earlier writes would do. Updates that may
 * collide (see {@link mayCollide}) yield the doc their result reloads to.
 *
 * The updates must have been validated before they were stored; an error
 * from Yjs propagates unchanged.
 */
export function loadDoc(updates: readonly Uint8Array[], clientId: number): Y.Doc {
  return loadDocWithin(updates, clientId, true)!;
}

/**
 * As {@link loadDoc}, but null as soon as placing the updates in order
 * costs what building the doc from their merge would: for a caller that
 * has the document elsewhere in an order that may load more cheaply (a
 * cache's merged copy of what the store holds as entries).
 */
export function loadDocOrNull(updates: readonly Uint8Array[], clientId: number): Y.Doc | null {
  return loadDocWithin(updates, clientId, false);
}

function loadDocWithin(updates: readonly Uint8Array[], clientId: number, capped: boolean): Y.Doc | null {
  const collide = updates.length > 1 && mayCollide(null, updates);
  const doc = build(updates, clientId, collide, [], capped);
  if (doc === null) return null;
  if (!collide) return doc;
  const again = reloadedIfDiverged(doc);
  if (again === null) return doc;
  doc.destroy();
  return again;
}

/**
 * The doc as its own encoding reloads it (structs waiting for missing
 * dependencies kept), when that differs from `ydoc` in structure or
 * content; null when it is the same. Under `ydoc`'s client id. `state`:
 * `ydoc`'s encoding, when the caller has it.
 */
export function reloadedIfDiverged(ydoc: Y.Doc, state = Y.encodeStateAsUpdate(ydoc)): Y.Doc | null {
  const reloaded = build([state], ydoc.clientID, false, pendingOf(ydoc))!;
  const live = digestParts(ydoc);
  const again = digestParts(reloaded);
  if (Buffer.compare(live.structure, again.structure) === 0 && Buffer.compare(live.content, again.content) === 0) {
    reloaded.destroy();
    return null;
  }
  return reloaded;
}

/**
 * As {@link reloadedIfDiverged}, for an update just applied to `ydoc`:
 * throws `invalid_update` when what the doc reloads to does not itself
 * reload to the same (Yjs placed the update's items between held items
 * that, loaded in another order, fall elsewhere: found by fuzzing writes of
 * two writers under one client id, a text flipping between 'byzca' and
 * 'bcayz' at each reload). Taken, the region would serve one content and
 * store another, and each conflict resolution would flip it again; the
 * caller refuses the update and keeps the document as it was.
 */
export function reloadedSettled(ydoc: Y.Doc): Y.Doc | null {
  const reloaded = reloadedIfDiverged(ydoc);
  if (reloaded === null) return null;
  const again = reloadedIfDiverged(reloaded);
  if (again === null) return reloaded;
  reloaded.destroy();
  again.destroy();
  throw new MeridianError('invalid_update', 'the update leaves the document other than its own state reloads to, and that state reloads to other content again (an item placed among content of two writers under one Yjs client id)');
}

/**
 * A doc of `updates` (v1) and then `updatesV2`; `collide`: whether they may
 * (see {@link mayCollide}). Applied in order until the placement scans cost
 * what building the doc from their merge would (see appliedWithinBound),
 * then merged, then in order again: each of those two up to the cap of
 * {@link capOf}, past which the doc is not built ({@link CostlyLoad});
 * null instead of those two when not `capped`.
 */
function build(updates: readonly Uint8Array[], clientId: number, collide: boolean, updatesV2: readonly Uint8Array[] = [], capped = true): Y.Doc | null {
  const all = [...updates, ...updatesV2];
  /** A doc of `v1` then `v2` when `within` lets their apply finish; null when it stopped it. */
  const tried = (v1: readonly Uint8Array[], v2: readonly Uint8Array[], within: (doc: Y.Doc, apply: () => void) => boolean): Y.Doc | null => {
    const doc = newDoc();
    const apply = (): void => {
      doc.transact(() => {
        for (const update of v1) Y.applyUpdate(doc, update);
        for (const update of v2) Y.applyUpdateV2(doc, update);
      });
      retryPending(doc, null);
    };
    if (within(doc, apply)) {
      doc.clientID = clientId;
      return doc;
    }
    doc.destroy();
    return null;
  };
  const toCap = (doc: Y.Doc, apply: () => void): boolean => withinCap(doc, all, apply);
  // One update is already in the order a merge would give: straight to the cap.
  if (all.length === 1 && capped) return tried(updates, updatesV2, toCap) ?? throwCostly();
  const inOrder = tried(updates, updatesV2, (doc, apply) => appliedWithinBound(doc, all, apply, collide));
  if (inOrder !== null || !capped) return inOrder;
  // Merged into one update, which Yjs places in a pass (see appliedWithinBound), unless it was made not to.
  rebuilds++;
  const merged = mergeMany([...updates, ...updatesV2.map((u) => Y.convertUpdateFormatV2ToV1(u))]);
  const built = tried([merged], [], (doc, apply) => withinCap(doc, [merged], apply));
  if (built !== null) return built;
  // Stopped by time, or the merge was made to cost more than the order given.
  return tried(updates, updatesV2, toCap) ?? throwCostly();
}

function throwCostly(): never {
  throw costlyLoad();
}

/**
 * Thrown when a document's updates place their items within the bound
 * neither in the order given nor merged into one (see
 * {@link appliedWithinBound}): updates can be made whose merge Yjs places
 * only item by item against all the others, N x N steps for N items, while
 * applied in the order a region admitted them each cost a pass. Such a
 * document is not built here, so that no load holds the event loop for that
 * long: it stays stored as it is, and the caller refuses what needed it or
 * builds it from another source (the store keeps updates in the order
 * admitted where merging them would load so; see docs/compactor.ts).
 */
export class CostlyLoad extends MeridianError {}

/** A CostlyLoad, counted (see {@link refusedDocLoads}). */
export function costlyLoad(): CostlyLoad {
  refusedLoads++;
  return new CostlyLoad(
    'unavailable',
    'building this document would make Yjs scan more items than the bound on placement work, in the order its updates were stored and merged into one (updates crafted so that every load of their merge is quadratic); it stays stored, and other documents are served',
  );
}

let refusedLoads = 0;

/** Documents not built in this process because no order placed their items within the bound (see {@link CostlyLoad}). */
export function refusedDocLoads(): number {
  return refusedLoads;
}

/**
 * Whether `state`, the encoding of `ydoc` (as a snapshot stores it), loads
 * within the bound a load from the store applies. A doc of fewer structs
 * than the square root of the least bound needs no trial: an item scans at
 * most all the others. Nor does one larger than {@link MAX_TRIAL_BYTES}:
 * the trial costs a load, 2 to 18 times the encoding it follows (a map of
 * 100,000 structs, 1.1 MB: 467 ms), on the event loop; such a document
 * made to load quadratically is refused past the cap instead (CostlyLoad).
 */
export function loadsWithinBound(ydoc: Y.Doc, state: Uint8Array): boolean {
  const structs = structsHeld(ydoc);
  if (structs * structs <= MIN_MERGE_PLACEMENT_STEPS || state.byteLength > MAX_TRIAL_BYTES) return true;
  const doc = newDoc();
  try {
    // In steps only: every region decides alike.
    return within(boundOf(doc, [state]).steps, Infinity, () => Y.applyUpdate(doc, state));
  } finally {
    doc.destroy();
  }
}

/**
 * What building a doc anew costs (encoding it, merging the updates in,
 * loading the result): 4.5 us per struct the doc holds, 0.2-0.4 us per byte
 * of update; in scan steps, at 0.07-0.1 us a step in short runs.
 */
const REBUILD_US_PER_STRUCT = 4.5;
const REBUILD_US_PER_BYTE = 0.3;
const REBUILD_STEPS_PER_STRUCT = 45;
const REBUILD_STEPS_PER_BYTE = 3;

let rebuilds = 0;

/** Docs built from their updates merged into one in this process, their apply one by one stopped (see {@link appliedWithinBound}). */
export function rebuiltDocs(): number {
  return rebuilds;
}

/**
 * Runs `apply`, which applies `updates` in order (validated, and not a
 * client's: a peer's entries or state, stored updates) to `doc`, counting
 * the items Yjs scans to place theirs (see placement.ts); false when it
 * stopped, `doc` half changed: the caller drops it and builds the doc
 * anew from the updates it was built from and these, merged into one
 * update. Yjs places an update's items against what the doc holds, so
 * items inserted at one place concurrently with N items the doc holds
 * there each scan all N: two clients inserting thousands of items each at
 * one place, at two regions at once, cost N x N at a region that applies
 * the higher client id's items last (34-50 s at N = 10,000), and each
 * region admitted its own cheaply. One update's clients Yjs integrates
 * highest id first, which places such runs in a pass, and it is the same
 * doc (Yjs places items alike whatever order they arrive in). So the apply
 * stops once its scans cost what that build would, in steps or in time
 * (and at least MIN_MERGE_PLACEMENT_STEPS and _MS): it costs at most about
 * twice the cheaper of the two ways. Updates that `collide` (other content
 * under ids the doc or an earlier update holds: clients wrote under one id
 * at two regions; see {@link mayCollide}) are applied in turn: merged, Yjs
 * would keep other content than it does applying them in turn. They are
 * counted all the same (one struct under another region's id makes any
 * update collide, the concurrent inserts above included), and past the
 * bound they throw {@link CostlyLoad}.
 */
export function appliedWithinBound(doc: Y.Doc, updates: readonly Uint8Array[], apply: () => void, collide: boolean): boolean {
  if (collide) {
    if (withinCap(doc, updates, apply)) return true;
    throw costlyLoad();
  }
  const { steps, ms } = boundOf(doc, updates);
  return within(steps, ms, apply);
}

/**
 * What building a doc anew from `doc` and `updates` would cost, as a bound
 * on the placement scans of applying them: in steps, and in time.
 */
function boundOf(doc: Y.Doc, updates: readonly Uint8Array[]): { steps: number; ms: number } {
  const structs = structsHeld(doc);
  let bytes = 0;
  for (const u of updates) bytes += u.byteLength;
  return {
    steps: Math.max(MIN_MERGE_PLACEMENT_STEPS, REBUILD_STEPS_PER_STRUCT * structs + REBUILD_STEPS_PER_BYTE * bytes),
    ms: Math.max(MIN_MERGE_PLACEMENT_MS, (REBUILD_US_PER_STRUCT * structs + REBUILD_US_PER_BYTE * bytes) / 1000),
  };
}

/**
 * Placement scans past which a doc is not built at all: {@link CAP_TIMES}
 * what switching to the merge allows, at least {@link MIN_CAP_STEPS}. In
 * steps only, so that every region decides alike whatever its load
 * (a time bound would refuse an ordinary document during a long pause).
 * Ordinary documents stay far below it: a client's update may scan
 * MAX_PLACEMENT_STEPS items, and one applied after another in the order
 * taken costs the sum (see {@link loadsWithinBound}).
 */
function capOf(doc: Y.Doc, updates: readonly Uint8Array[]): number {
  return Math.max(MIN_CAP_STEPS, CAP_TIMES * boundOf(doc, updates).steps);
}

const MIN_CAP_STEPS = 5_000_000;

/** Largest state the compactor trial-loads (see {@link loadsWithinBound}). */
const MAX_TRIAL_BYTES = 64 * 1024;
const CAP_TIMES = 4;

function withinCap(doc: Y.Doc, updates: readonly Uint8Array[], apply: () => void): boolean {
  return within(capOf(doc, updates), Infinity, apply);
}

function within(steps: number, ms: number, apply: () => void): boolean {
  try {
    withMergeBound(steps, ms, apply);
    return true;
  } catch (err) {
    if (!(err instanceof PlacementOverrun)) throw err;
  }
  return false;
}

/** About how long building a doc of `structs` structs anew takes, ms (see {@link REBUILD_US_PER_STRUCT}). */
export function buildMsOf(structs: number): number {
  return (REBUILD_US_PER_STRUCT * structs) / 1000;
}

/**
 * What a doc held before an apply, for {@link mayHaveDiverged}: each
 * client's clock, and what Yjs held back for missing dependencies (its
 * objects: Yjs makes new ones whenever it changes them).
 */
export interface Placed {
  clocks: Map<number, number>;
  waiting: Uint8Array | null;
  waitingDs: Uint8Array | null;
}

export function placedOf(doc: Y.Doc): Placed {
  const clocks = new Map<number, number>();
  for (const client of doc.store.clients.keys()) clocks.set(client, Y.getState(doc.store, client));
  return { clocks, waiting: doc.store.pendingStructs?.update ?? null, waitingDs: doc.store.pendingDs };
}

/**
 * Whether an apply may have left `doc` other than its own state reloads
 * to, since {@link placedOf} gave `before`; `collided`: the update reached
 * below clocks the doc held (see {@link mayCollide}). Checking means
 * building and digesting the document twice (0.6-0.8 s for 95,000 nested
 * maps), so it is skipped where it cannot find anything:
 * - a colliding update that placed no struct and left what waits as it was
 *   spliced nothing (deletions apply by id, as a reload applies them). One
 *   held back whole changes what waits: the state Yjs encodes places it,
 *   and may then reload to other content than the document shows;
 * - an update that collided with nothing may still let structs that waited
 *   be placed, and they may collide: checked when it placed structs and
 *   less waits than before, or deletions that wait changed; or when it
 *   placed structs or changed what waits while that holds structs under
 *   clocks the doc holds of their client (found by fuzzing: the encoded
 *   state merges what waits in). Structs added to what waits that
 *   collide with nothing (a faulty peer's entries, one after another), and
 *   writes that release nothing, cost no check. Honest writers' updates
 *   arriving out of order ask for such checks too (a region behind on one
 *   of three writers of a document: at nearly every entry), which is why
 *   the caller spreads out those of large documents (docs/reload-checks.ts);
 *   narrower rules tried missed divergences two writers under one id made
 *   without their clocks overlapping here.
 */
export function mayHaveDiverged(doc: Y.Doc, before: Placed, collided: boolean): DivergeRisk | null {
  const waiting = doc.store.pendingStructs?.update ?? null;
  let moved = doc.store.clients.size !== before.clocks.size;
  for (const [client, clock] of before.clocks) {
    if (moved) break;
    moved = Y.getState(doc.store, client) !== clock;
  }
  if (collided) return moved || waiting !== before.waiting || doc.store.pendingDs !== before.waitingDs ? 'collided' : null;
  if (moved && before.waiting !== null && (waiting === null || waiting.byteLength < before.waiting.byteLength)) return 'waited';
  // Yjs makes what waits of deletions anew at each apply: compared by its bytes.
  if (moved && !sameBytes(doc.store.pendingDs, before.waitingDs)) return 'waited';
  return waiting !== null && (moved || waiting !== before.waiting) && waitsUnderHeldClocks(doc, waiting) ? 'waited' : null;
}

function sameBytes(a: Uint8Array | null, b: Uint8Array | null): boolean {
  return a === b || (a !== null && b !== null && Buffer.compare(a, b) === 0);
}

/** Where each client's structs in what Yjs holds back start, per its V2 update (Yjs makes a new one whenever it changes). */
const waitingFrom = new WeakMap<Uint8Array, Map<number, number>>();

/**
 * Whether structs Yjs holds back (`waiting`, its V2 update) start under
 * clocks `doc` holds of their client: two clients wrote under one id, and
 * the state Yjs encodes, which merges them in, may load to other content.
 */
function waitsUnderHeldClocks(doc: Y.Doc, waiting: Uint8Array): boolean {
  let from = waitingFrom.get(waiting);
  if (from === undefined) waitingFrom.set(waiting, (from = Y.parseUpdateMetaV2(waiting).from));
  for (const [client, clock] of from) if (clock < Y.getState(doc.store, client)) return true;
  return false;
}

/**
 * Why {@link mayHaveDiverged} asks for a check: the update reached below
 * held clocks, or what waited for missing dependencies was placed or
 * changed (honest writers' updates arriving out of order do that too: the
 * caller bounds what those checks cost).
 */
export type DivergeRisk = 'collided' | 'waited';

/** Structs `doc` holds, pieces of split items each counted: each one Yjs places as a unit when it is loaded. */
export function structsHeld(doc: Y.Doc): number {
  let structs = 0;
  for (const held of doc.store.clients.values()) structs += held.length;
  return structs;
}

/** Updates merged a group at a time. */
const MERGE_GROUP = 32;

/**
 * `Y.mergeUpdates` of updates that do not collide, merged a group at a time:
 * merged all at once, thousands of small ones cost far more than their size
 * (0.5 s for 5,000, 10.6 s for 20,000; applied one by one, 22-37 ms).
 */
export function mergeMany(updates: readonly Uint8Array[]): Uint8Array {
  let level = updates;
  while (level.length > MERGE_GROUP) {
    const next: Uint8Array[] = [];
    for (let i = 0; i < level.length; i += MERGE_GROUP) next.push(Y.mergeUpdates(level.slice(i, i + MERGE_GROUP)));
    level = next;
  }
  return level.length === 1 ? level[0]! : Y.mergeUpdates([...level]);
}

/** What Yjs holds back of a doc, waiting for missing dependencies (in its v2 encoding). */
function pendingOf(doc: Y.Doc): Uint8Array[] {
  const { pendingStructs, pendingDs } = doc.store;
  return [pendingStructs?.update, pendingDs ?? undefined].filter((u): u is Uint8Array => u !== undefined);
}
