/**
 * Maps and sets that remember the newest entries only: what a peer or a
 * client can make a region note (documents, rounds, sources of log lines)
 * has no bound of its own, so each such memory drops its oldest entries.
 */

/** Sets `key` to `value` as the newest entry of `map`, then drops the oldest entries beyond `max`. */
export function setNewest<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  dropOldest(map, max);
}

/** Adds `key` as the newest entry of `set`, then drops the oldest entries beyond `max`. */
export function addNewest<K>(set: Set<K>, key: K, max: number): void {
  set.delete(key);
  set.add(key);
  dropOldest(set, max);
}

function dropOldest<K>(entries: Map<K, unknown> | Set<K>, max: number): void {
  for (const oldest of entries.keys()) {
    if (entries.size <= max) break;
    entries.delete(oldest);
  }
}
