/**
 * The memory engine's records for an operator: quarantined entries and
 * lost conflict states, kept in its volume (see ./memory.ts).
 */
import type { RegionId } from '../ids.js';
import type { MemoryVolume } from './memory.js';
import type { ConflictStore, NewConflict, QuarantineStore } from './types.js';

/** Quarantined entries, one per (origin, seq), as the SQLite table keeps them. */
export function quarantineOf(v: MemoryVolume): QuarantineStore {
  return {
    add: (entry) => {
      if (v.quarantined.some((q) => q.origin === entry.origin && q.seq === entry.seq)) return false;
      v.quarantined.push({ ...entry, id: v.quarantined.length + 1, at: Date.now() });
      return true;
    },
    counts: () => {
      const counts = new Map<RegionId, number>();
      for (const q of v.quarantined) counts.set(q.peer, (counts.get(q.peer) ?? 0) + 1);
      return counts;
    },
    list: (afterId, limit) => v.quarantined.filter((q) => q.id > afterId).slice(0, limit),
  };
}

/** Conflict records, numbered in the order they were kept. */
export function conflictsOf(v: MemoryVolume): ConflictStore {
  return {
    add: (conflict: NewConflict) => void v.conflicts.push({ ...conflict, id: v.conflicts.length + 1 }),
    list: (doc, afterId, limit) => v.conflicts.filter((c) => c.doc === doc && c.id > afterId).slice(0, limit),
    count: () => v.conflicts.length,
  };
}
