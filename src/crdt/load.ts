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
 * of the same build) already held, or placing an item between held items of
 * two types, is replaced at once by what its own
 * encoding reloads to: encoding it is still safe then, since nothing has
 * read its types since the splice. Every region does the same with the same
 * states, and content conflicts are then found and resolved between whole
 * states (docs/replace.ts). Updates that stay above what is held, which is
 * all of ordinary replication, cost one pass over their headers.
 */
import * as Y from 'yjs';
import { newDoc } from './clientid.js';
import { digestParts } from './digest.js';
import { MIN_MERGE_PLACEMENT_STEPS, PlacementOverrun, uncounted, withMergeBound } from './placement.js';
import { retryPending, type DecodedUpdate } from './validate.js';

/**
 * Whether applying `updates` in order to `doc` (or to an empty doc) may
 * splice: a struct starting under what the doc, or an earlier update of the
 * list, holds of its client; or, for an update already decoded
 * (`Y.decodeUpdate`), a struct placed between two held items that are not
 * neighbours in one type (its writer saw other content under their ids: a
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
  const heldItem = (id: Y.ID): Y.Item | null => {
    if (id.clock >= Y.getState(doc.store, id.client)) return null;
    const struct = Y.getItem(doc.store, id) as Y.Item | Y.GC;
    return struct instanceof Y.Item ? struct : null;
  };
  for (const struct of decoded.structs) {
    if (!(struct instanceof Y.Item) || struct.origin === null || struct.rightOrigin === null) continue;
    const left = heldItem(struct.origin);
    const right = left && heldItem(struct.rightOrigin);
    if (left && right && (left.parent !== right.parent || left.parentSub !== right.parentSub)) return true;
  }
  return false;
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
  const doc = build(updates, clientId);
  if (updates.length < 2 || !mayCollide(null, updates)) return doc;
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
  const reloaded = build([state], ydoc.clientID, pendingOf(ydoc));
  const live = digestParts(ydoc);
  const again = digestParts(reloaded);
  if (Buffer.compare(live.structure, again.structure) === 0 && Buffer.compare(live.content, again.content) === 0) {
    reloaded.destroy();
    return null;
  }
  return reloaded;
}

/** A doc of `updates` (v1) and then `updatesV2`. */
function build(updates: readonly Uint8Array[], clientId: number, updatesV2: readonly Uint8Array[] = []): Y.Doc {
  const doc = newDoc();
  const apply = (): void => {
    doc.transact(() => {
      for (const update of updates) Y.applyUpdate(doc, update);
      for (const update of updatesV2) Y.applyUpdateV2(doc, update);
    });
    retryPending(doc, null);
  };
  const rebuilt = applyOrRebuild(doc, updates, apply, updatesV2);
  if (rebuilt !== null) {
    doc.destroy();
    rebuilt.clientID = clientId;
    return rebuilt;
  }
  doc.clientID = clientId;
  return doc;
}

/**
 * Scan steps that cost about what building a doc anew does (encoding it,
 * merging the updates in, loading the result: 4.5 us per struct the doc
 * holds, 0.2-0.4 us per byte of update, against 0.07-0.1 us per step).
 */
const REBUILD_STEPS_PER_STRUCT = 45;
const REBUILD_STEPS_PER_BYTE = 3;

/**
 * Runs `apply`, which applies `updates` (validated, and not a client's: a
 * peer's entries or state, stored updates) to `doc`, counting the items
 * Yjs scans to place theirs (see placement.ts). Yjs places an update's
 * items against what the doc holds, so items inserted at one place
 * concurrently with N items the doc holds there each scan all N: two
 * clients inserting thousands of items each at one place, at two regions
 * at once, cost N x N at a region that applies the higher client id's
 * items last (34-50 s at N = 10,000), and each region admitted its own
 * cheaply. Once the scans cost what building the doc anew would (and at
 * least {@link MIN_MERGE_PLACEMENT_STEPS}), the apply stops, and a doc is
 * built from what `doc` then holds and the updates merged into one update:
 * Yjs integrates one update's clients highest id first, which places such
 * runs in a pass. So an apply costs at most about twice what the cheaper of
 * the two ways would. It is the same doc (Yjs places items alike whatever
 * order they arrive in); `doc`, half changed, is for the caller to drop.
 * Returns that doc, under `doc`'s client id, or null when `apply` finished.
 */
export function applyOrRebuild(
  doc: Y.Doc, updates: readonly Uint8Array[], apply: () => void, updatesV2: readonly Uint8Array[] = [],
): Y.Doc | null {
  // What waits for missing dependencies, as held before: a retry takes it out of the store while it runs.
  const heldBefore = pendingOf(doc);
  let structs = 0;
  for (const held of doc.store.clients.values()) structs += held.length;
  let bytes = 0;
  for (const u of updates) bytes += u.byteLength;
  for (const u of updatesV2) bytes += u.byteLength;
  const limit = Math.max(MIN_MERGE_PLACEMENT_STEPS, REBUILD_STEPS_PER_STRUCT * structs + REBUILD_STEPS_PER_BYTE * bytes);
  try {
    withMergeBound(limit, apply);
    return null;
  } catch (err) {
    if (!(err instanceof PlacementOverrun)) throw err;
  }
  const merged = Y.mergeUpdates([
    Y.encodeStateAsUpdate(doc),
    ...[...heldBefore, ...pendingOf(doc), ...updatesV2].map((u) => Y.convertUpdateFormatV2ToV1(u)),
    ...updates,
  ]);
  const again = newDoc();
  uncounted(() => {
    again.transact(() => Y.applyUpdate(again, merged));
    retryPending(again, null);
  });
  again.clientID = doc.clientID;
  return again;
}

/** What Yjs holds back of a doc, waiting for missing dependencies (in its v2 encoding). */
function pendingOf(doc: Y.Doc): Uint8Array[] {
  const { pendingStructs, pendingDs } = doc.store;
  return [pendingStructs?.update, pendingDs ?? undefined].filter((u): u is Uint8Array => u !== undefined);
}
