/**
 * A bound on the work Yjs does to place a client's new items.
 *
 * Yjs places an item between its origin (left neighbour when it was made)
 * and its right origin by scanning the items in between that were inserted
 * concurrently at the same place, and what they lead to. Honest clients
 * leave few such items; a client can make many: thousands of items inserted
 * at one place under one client id, then thousands more under another id
 * whose right origin lies past them all. Each of those scans all of the
 * first, so the update costs their product (0.6-0.75 s for 3,000 × 3,000;
 * it grows with the square of the update's size), at this region and, once logged, at every
 * peer. The scan depends on what the document holds when the update arrives,
 * so it is counted as Yjs goes, with Yjs's own rule, while a client's update
 * is applied; past the bound the update is refused before it is logged
 * (`too_complex`, 413) and the document reloaded. Updates from peers
 * cannot be refused (what their region accepted must be applied
 * everywhere), and they are where the cost of concurrent inserts at one
 * place arises: each region admitted its own cheaply. They are counted
 * too, and past a larger bound merged another way (load.ts
 * `appliedWithinBound`).
 */
import * as Y from 'yjs';
import { MeridianError } from '../errors.js';

/** Items a client's update may make Yjs scan to place its own, in all. */
export const MAX_PLACEMENT_STEPS = 200_000;

/**
 * Items Yjs may scan to place the items of updates that are not a client's
 * (a peer's entries and states, stored updates being loaded) before they
 * are merged another way, at the least (load.ts `appliedWithinBound`), and the
 * time that scanning may take at the least: a step costs 0.07-0.1 us in a
 * short run of concurrent items and up to 0.5 us in a long one.
 */
export const MIN_MERGE_PLACEMENT_STEPS = 500_000;
export const MIN_MERGE_PLACEMENT_MS = 40;

/** Thrown from inside Yjs once updates applied under {@link withMergeBound} pass their bound. */
export class PlacementOverrun extends Error {}

interface Budget {
  left: number;
  /** Time the items that scan may still take to place; Infinity for a client's update (its bound is exact). */
  msLeft: number;
  overrun: () => Error;
}

/** The bound on the update being applied; null when none is counted. */
let budget: Budget | null = null;

type Integrate = (this: Y.Item, transaction: Y.Transaction, offset: number) => void;
let installed = false;

/**
 * Runs `apply` (one client update applied to `doc`) counting the placement
 * scans it makes Yjs do; throws `too_complex` as soon as they pass
 * {@link MAX_PLACEMENT_STEPS}, with the document half changed: the caller
 * must drop it.
 */
export function withPlacementBudget<T>(apply: () => T): T {
  return counted({
    left: MAX_PLACEMENT_STEPS,
    msLeft: Infinity,
    overrun: () => new MeridianError(
      'too_complex',
      `placing the update's items makes Yjs scan more than ${MAX_PLACEMENT_STEPS} items of the document that were inserted at the same places; send items built on the document as this region holds it`,
    ),
  }, apply);
}

/**
 * Runs `apply` (updates that are not a client's applied to a doc) counting
 * the placement scans it makes Yjs do; throws {@link PlacementOverrun} as
 * soon as they pass `steps`, or placing the items that scan takes more
 * than `ms`, with the document half changed.
 */
export function withMergeBound<T>(steps: number, ms: number, apply: () => T): T {
  return counted({
    left: steps,
    msLeft: ms,
    overrun: () => new PlacementOverrun(`placing the updates' items makes Yjs scan more than ${steps} items, or for more than ${ms} ms`),
  }, apply);
}

function counted<T>(bound: typeof budget, apply: () => T): T {
  install();
  const outer = budget;
  budget = bound;
  try {
    return apply();
  } finally {
    budget = outer;
  }
}

function install(): void {
  if (installed) return;
  installed = true;
  const proto = Y.Item.prototype as unknown as { integrate: Integrate };
  const integrate = proto.integrate;
  proto.integrate = function (this: Y.Item, transaction: Y.Transaction, offset: number): void {
    // A resent item's rest (offset > 0) is placed after its own earlier part.
    if (budget !== null && offset === 0) {
      const steps = scanLength(this, transaction.doc.store, budget.left);
      budget.left -= steps;
      if (budget.left < 0) throw budget.overrun();
      if (steps > 0 && budget.msLeft !== Infinity) {
        // Only items that scan are timed: the rest of an apply is work of its size.
        const started = performance.now();
        integrate.call(this, transaction, offset);
        // Twice: the count above walked the same items.
        budget.msLeft -= 2 * (performance.now() - started);
        if (budget.msLeft < 0) throw budget.overrun();
        return;
      }
    }
    integrate.call(this, transaction, offset);
  };
}

/**
 * The items Yjs's `Item.integrate` will scan to place `item`, counted with
 * its rule and without changing anything; stops counting past `limit`.
 */
function scanLength(item: Y.Item, store: Y.Doc['store'], limit: number): number {
  const parent = item.parent as Y.AbstractType<unknown> | null;
  if (parent === null || !(parent instanceof Y.AbstractType)) return 0;
  const { left, right } = item;
  if (!((left === null && (right === null || right.left !== null)) || (left !== null && left.right !== right))) return 0;
  let steps = 0;
  let o: Y.Item | null;
  if (left !== null) {
    o = left.right;
  } else if (item.parentSub !== null) {
    o = parent._map.get(item.parentSub) ?? null;
    while (o !== null && o.left !== null && steps <= limit) {
      o = o.left;
      steps++;
    }
  } else {
    o = parent._start;
  }
  const before = new Set<Y.Item>();
  while (o !== null && o !== right && steps <= limit) {
    steps++;
    before.add(o);
    if (Y.compareIDs(item.origin, o.origin)) {
      if (o.id.client >= item.id.client && Y.compareIDs(item.rightOrigin, o.rightOrigin)) break;
    } else if (o.origin === null || !before.has(Y.getItem(store, o.origin) as Y.Item)) {
      break;
    }
    o = o.right;
  }
  return steps;
}
