/**
 * Checks of untrusted binary Yjs updates (format V1) before they reach a
 * live document.
 *
 * What untrusted bytes can do to Yjs 13.6 with lib0 0.2.120 (found by
 * fuzzing random bytes; see also yjs issues 479, 498 and 687):
 * - `Y.decodeUpdate` reads lazily and every read either consumes input or
 *   throws at its end (lib0's hardened decoder), so decoding costs time
 *   linear in the update's size. The run-length hangs of issue 687 are in
 *   the V2 format, which is never decoded here.
 * - `Y.applyUpdate` does `new Array(numberOfStructs)` with a count read from
 *   the bytes before any struct is read: random bytes take it hundreds of
 *   milliseconds and gigabytes. So no update is applied before it has been
 *   decoded in full, which proves its counts are backed by bytes.
 * - Well-formed updates can still break a doc: a zero-length delete range
 *   makes applyUpdate throw half way through, and subdocuments would create
 *   `Y.Doc`s from client-chosen options. Both are refused.
 */
import * as decoding from 'lib0/decoding';
import * as encoding from 'lib0/encoding';
import * as Y from 'yjs';
import { MeridianError } from '../errors.js';
import { MAX_DEPTH } from './json.js';
import { PlacementOverrun } from './placement.js';
import { Sha256 } from '../sha256.js';

/** Nesting accepted inside embedded JSON values (arrays, objects) of an update. */
const MAX_VALUE_DEPTH = MAX_DEPTH * 2;

/** What applying an update left behind. */
export interface ApplyResult {
  /** The doc holds structs or deletions whose dependencies are still missing. */
  pending: boolean;
}

function refuse(message: string, cause?: unknown): never {
  throw new MeridianError('invalid_update', message, undefined, cause === undefined ? undefined : { cause });
}

/**
 * Throws `MeridianError('invalid_update')` unless `update` is a non-empty V1
 * update of at most `maxBytes` bytes that decodes in full into sane structs
 * and deletions. Touches no live document. Returns the decoded update.
 */
export function validateUpdate(update: Uint8Array, maxBytes: number): DecodedUpdate {
  if (!(update instanceof Uint8Array)) refuse('the update must be binary');
  if (update.byteLength === 0) refuse('the update is empty');
  if (update.byteLength > maxBytes) refuse(`the update is ${update.byteLength} bytes; at most ${maxBytes} are accepted`);
  return checkDecoded(update);
}

/**
 * Applies an update to a live doc with `origin`, after checking it as
 * {@link validateUpdate} does (without the size limit): a refused update
 * leaves the doc untouched. Yjs may still throw while integrating an update
 * that decodes cleanly; that is rethrown as `invalid_update`, and then the
 * doc may be half-applied: the caller must discard (evict) it and reload it
 * from storage.
 */
export function applyUpdateSafely(doc: Y.Doc, update: Uint8Array, origin: unknown): ApplyResult {
  if (!(update instanceof Uint8Array) || update.byteLength === 0) refuse('the update is empty');
  checkDecoded(update);
  return applyValidated(doc, update, origin);
}

/**
 * As {@link applyUpdateSafely}, for an update {@link validateUpdate} has
 * already accepted: decoding it a second time would only repeat the work.
 */
export function applyValidated(doc: Y.Doc, update: Uint8Array, origin: unknown): ApplyResult {
  try {
    Y.applyUpdate(doc, update, origin);
    retryPending(doc, origin);
  } catch (err) {
    // Stopped half way by a bound on the work (see placement.ts): said as such.
    if (err instanceof PlacementOverrun || (err instanceof MeridianError && err.code === 'too_complex')) throw err;
    refuse('the update could not be applied', err);
  }
  return { pending: doc.store.pendingStructs !== null || doc.store.pendingDs !== null };
}

/**
 * Yjs holds back structs whose dependencies have not arrived, noting per
 * client the clock it waits for, and tries them again once a client's clock
 * passes it. Where a struct waits for another client's struct through a gap
 * in that client's own clocks, it notes the gap's clock for both, one too
 * high for the first: every update can have arrived, yet structs wait for
 * good, and the document shows less than its peers until a repair by state
 * (eight updates of two clients did it, found by the convergence property
 * test). Once every noted clock is reached, the held-back update is given
 * to Yjs again; a retry that integrated nothing is not repeated until the
 * clocks of the clients waited for move.
 */
export function retryPending(doc: Y.Doc, origin: unknown): void {
  for (;;) {
    const pending = doc.store.pendingStructs;
    if (pending === null) return;
    let waitedFor = 0;
    for (const [client, clock] of pending.missing) {
      const state = Y.getState(doc.store, client);
      if (state < clock) return;
      waitedFor += state;
    }
    if (fruitless.get(doc) === waitedFor) return;
    const before = stateSum(doc);
    doc.store.pendingStructs = null;
    // Yjs keeps held-back structs in its v2 encoding.
    Y.applyUpdateV2(doc, pending.update, origin);
    if (stateSum(doc) !== before) continue;
    fruitless.set(doc, waitedFor);
    return;
  }
}

/**
 * What `doc` holds back for missing dependencies, as a short string that
 * changes whenever that does, whatever order it arrived in (Yjs holds it
 * in other bytes, split otherwise, and notes other clocks as waited for,
 * by the order): a hash of the clocks of the structs held back and of the
 * deletions of structs not held, each client's as ranges joined where they
 * meet. Null when nothing waits. Kept per document until what Yjs holds
 * back changes.
 */
export function pendingMark(doc: Y.Doc): string | null {
  const { pendingStructs, pendingDs } = doc.store;
  if (pendingStructs === null && pendingDs === null) return null;
  // Yjs changes its pending structs in place, but gives them new bytes each time.
  const structs = pendingStructs?.update ?? null;
  const known = marks.get(doc);
  if (known !== undefined && known.structs === structs && known.ds === pendingDs) return known.mark;
  const hash = new Sha256();
  if (structs !== null) {
    const held = new Map<number, { clock: number; len: number }[]>();
    for (const struct of Y.decodeUpdateV2(structs).structs) {
      if (struct instanceof Y.Skip) continue;
      const ranges = held.get(struct.id.client) ?? [];
      ranges.push({ clock: struct.id.clock, len: struct.length });
      held.set(struct.id.client, ranges);
    }
    hashRanges(hash, 's', held);
  }
  if (pendingDs !== null) hashRanges(hash, 'd', Y.decodeUpdateV2(pendingDs).ds.clients);
  const mark = Buffer.from(hash.digest()).toString('base64');
  marks.set(doc, { structs, ds: pendingDs, mark });
  return mark;
}

/** Each client's clock ranges, in order of client, sorted and joined where they meet or overlap. */
function hashRanges(hash: Sha256, kind: string, byClient: Map<number, readonly { clock: number; len: number }[]>): void {
  for (const [client, items] of [...byClient].sort((a, b) => a[0] - b[0])) {
    hash.update(`${kind}${client}`);
    const sorted = [...items].sort((a, b) => a.clock - b.clock);
    let start = -1;
    let end = -1;
    for (const { clock, len } of sorted) {
      if (clock <= end) {
        end = Math.max(end, clock + len);
        continue;
      }
      if (start >= 0) hash.update(`:${start}-${end}`);
      start = clock;
      end = clock + len;
    }
    if (start >= 0) hash.update(`:${start}-${end}`);
  }
}

const marks = new WeakMap<Y.Doc, { structs: Uint8Array | null; ds: Uint8Array | null; mark: string }>();

/** Per document, the clocks (summed) of the clients waited for at its last retry that integrated nothing. */
const fruitless = new WeakMap<Y.Doc, number>();

function stateSum(doc: Y.Doc): number {
  let sum = 0;
  for (const client of doc.store.clients.keys()) sum += Y.getState(doc.store, client);
  return sum;
}

/**
 * Applies updates that were validated (or stored, which only validated ones
 * are) to a live doc in one transaction, and keeps its client id: Yjs gives a
 * doc a new one when a transaction from elsewhere advances its own id's
 * clock, which replaying the doc's own writes does. Throws as
 * {@link applyValidated} does, and then the doc may be half-applied.
 */
export function replayValidated(doc: Y.Doc, updates: readonly Uint8Array[], origin: unknown): void {
  const clientId = doc.clientID;
  try {
    Y.transact(doc, () => {
      for (const update of updates) Y.applyUpdate(doc, update, origin);
    }, origin);
    retryPending(doc, origin);
  } catch (err) {
    if (err instanceof PlacementOverrun) throw err;
    refuse('the update could not be applied', err);
  } finally {
    doc.clientID = clientId;
  }
}

/** An update's structs and delete set, as `Y.decodeUpdate` returns them. */
export type DecodedUpdate = ReturnType<typeof Y.decodeUpdate>;

function checkDecoded(update: Uint8Array): DecodedUpdate {
  const sections = precheck(update);
  let decoded: DecodedUpdate;
  try {
    decoded = Y.decodeUpdate(update);
  } catch (err) {
    refuse('the update is not a valid Yjs update', err);
  }
  // Yjs writes each client once, with at least one struct, highest client
  // first. Applying, it keeps only the last section of a client that has
  // several (an empty one included), while its decoder lists them all: what
  // was checked would not be what is applied, and the rest would wait for
  // the dropped part for good. Merging (Y.mergeUpdates: stored parts, states
  // sent to peers), it drops a client that follows a lower one.
  let sectionsSeen = 0;
  let previous = Number.POSITIVE_INFINITY;
  for (const { id } of decoded.structs) {
    if (id.client === previous) continue;
    if (id.client > previous) refuse(`the update writes client ${id.client} after client ${previous}; Yjs writes clients in descending order, each once`);
    previous = id.client;
    sectionsSeen++;
  }
  if (sectionsSeen !== sections) refuse(`the update holds ${sections} client sections for ${sectionsSeen} clients; Yjs writes each client's structs in one section`);
  for (const struct of decoded.structs) {
    const { client, clock } = struct.id;
    if (!(struct.length >= 1) || !Number.isSafeInteger(clock + struct.length)) {
      refuse(`struct ${client}:${clock} has an invalid length`);
    }
    if (struct instanceof Y.Item) {
      checkReferences(struct);
      checkContent(struct.content, client, clock);
    }
  }
  for (const [client, ranges] of decoded.ds.clients) {
    let end = 0;
    for (const { clock, len } of ranges) {
      if (!(len >= 1) || !Number.isSafeInteger(clock + len)) refuse(`deletion ${client}:${clock} has an invalid length`);
      // Yjs writes a client's deletions in ascending order, each after the
      // last; it applies them in the order given, and out of order each one
      // splits and moves the client's structs again (120,000 ranges, 472 KB:
      // 38 s against 0.4 s in order).
      if (clock < end) refuse(`deletions of client ${client} are not in ascending order at ${clock} (as Yjs writes them)`);
      end = clock + len;
    }
  }
  return decoded;
}

/**
 * Cheap header check: the number of clients cannot exceed the number of
 * bytes (each client takes at least three). Rejects most random input
 * before any struct is decoded.
 */
function precheck(update: Uint8Array): number {
  const decoder = decoding.createDecoder(update);
  let clients: number;
  try {
    clients = decoding.readVarUint(decoder);
  } catch (err) {
    refuse('the update is not a valid Yjs update', err);
  }
  if (clients * 3 > update.byteLength) refuse(`the update claims ${clients} clients in ${update.byteLength} bytes`);
  return clients;
}

/**
 * Yjs resolves references to the item's own client without checking them
 * (a client can only build on its own earlier items), so a reference to a
 * later clock of the same client makes applyUpdate throw half way through.
 */
function checkReferences(item: Y.Item): void {
  const { client, clock } = item.id;
  const parent = item.parent instanceof Y.ID ? item.parent : null;
  for (const ref of [item.origin, item.rightOrigin, parent]) {
    if (ref !== null && ref.client === client && ref.clock >= clock) {
      refuse(`struct ${client}:${clock} refers to its own client's later clock ${ref.clock}`);
    }
  }
}

function checkContent(content: Y.Item['content'], client: number, clock: number): void {
  if (content instanceof Y.ContentDoc) refuse(`struct ${client}:${clock} is a subdocument; subdocuments are not supported`);
  let values: unknown[] = [];
  if (content instanceof Y.ContentAny || content instanceof Y.ContentJSON) values = content.getContent();
  else if (content instanceof Y.ContentEmbed) values = [content.embed];
  else if (content instanceof Y.ContentFormat) values = [content.value];
  for (const value of values) {
    const why = valueFault(value, MAX_VALUE_DEPTH);
    if (why !== null) refuse(`struct ${client}:${clock} ${why}`);
  }
}

/**
 * Why a value may not be stored, or null. Yjs decodes an object key
 * `__proto__` by assigning it, which sets the object's prototype instead:
 * the value then renders one way as decoded from the log and another once
 * encoded and decoded again (a snapshot, a peer's state), while digests,
 * which do not look at prototypes, agree. A key `__proto__` that JSON
 * parsing made an own property is refused too, as JSON writes refuse it.
 */
function valueFault(value: unknown, budget: number): string | null {
  if (typeof value !== 'object' || value === null || value instanceof Uint8Array) return null;
  if (budget === 0) return `nests values deeper than ${MAX_VALUE_DEPTH} levels`;
  const array = Array.isArray(value);
  if (Object.getPrototypeOf(value) !== (array ? Array.prototype : Object.prototype) || Object.hasOwn(value, '__proto__')) {
    return 'holds an object key "__proto__", which is not accepted';
  }
  const children: unknown[] = array ? value : Object.values(value);
  for (const child of children) {
    const why = valueFault(child, budget - 1);
    if (why !== null) return why;
  }
  return null;
}

/**
 * The entries of an untrusted state vector for the clients `holds`, as a
 * state vector; throws (lib0's decoder) where its bytes end before its
 * count does. Yjs decodes a state vector into a map of every client it
 * names before it diffs against it: a peer's 13 MB vector of 3 million
 * clients held the region 2 to 5 s (decoded to be checked, then again to
 * diff). Read here without a map, each entry costs some 40 ns, and only
 * the clients of the document being diffed are kept.
 */
export function heldStateVector(sv: Uint8Array, holds: (client: number) => boolean): Uint8Array {
  const decoder = decoding.createDecoder(sv);
  const count = decoding.readVarUint(decoder);
  const kept: number[] = [];
  for (let i = 0; i < count; i++) {
    const client = decoding.readVarUint(decoder);
    const clock = decoding.readVarUint(decoder);
    if (holds(client)) kept.push(client, clock);
  }
  const encoder = encoding.createEncoder();
  encoding.writeVarUint(encoder, kept.length / 2);
  for (const n of kept) encoding.writeVarUint(encoder, n);
  return encoding.toUint8Array(encoder);
}
