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
 * (`too_complex`, 413) and the document reloaded. Updates from peers are
 * never counted: what their region accepted must be applied everywhere.
 */
import * as Y from 'yjs';
import { MeridianError } from '../errors.js';

/** Items a client's update may make Yjs scan to place its own, in all. */
export const MAX_PLACEMENT_STEPS = 200_000;

/** The steps left to the update being applied under a budget; null when none is. */
let left: number | null = null;

type Integrate = (this: Y.Item, transaction: Y.Transaction, offset: number) => void;
let installed = false;

/**
 * Runs `apply` (one client update applied to `doc`) counting the placement
 * scans it makes Yjs do; throws `too_complex` as soon as they pass
 * {@link MAX_PLACEMENT_STEPS}, with the document half changed: the caller
 * must drop it.
 */
export function withPlacementBudget<T>(apply: () => T): T {
  install();
  left = MAX_PLACEMENT_STEPS;
  try {
    return apply();
  } finally {
    left = null;
  }
}

function install(): void {
  if (installed) return;
  installed = true;
  const proto = Y.Item.prototype as unknown as { integrate: Integrate };
  const integrate = proto.integrate;
  proto.integrate = function (this: Y.Item, transaction: Y.Transaction, offset: number): void {
    // A resent item's rest (offset > 0) is placed after its own earlier part.
    if (left !== null && offset === 0) {
      left -= scanLength(this, transaction.doc.store, left);
      if (left < 0) {
        throw new MeridianError(
          'too_complex',
          `placing the update's items makes Yjs scan more than ${MAX_PLACEMENT_STEPS} items of the document that were inserted at the same places; send items built on the document as this region holds it`,
        );
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
