/**
 * The memory engine's records for an operator: quarantined entries and
 * lost conflict states, kept in its volume (see ./memory.ts).
 */
import type { MemoryVolume } from './memory.js';
import { MAX_CONFLICTS_PER_DOC, MAX_QUARANTINED_PER_PEER, MAX_QUARANTINE_REASON, conflictPageLength, type ConflictStore, type NewConflict, type QuarantineStore, type QuarantinedEntry } from './types.js';

/** Keeps a quarantined entry, one per (origin, seq), and the newest of its peer only, as the SQLite table does. */
export function keepQuarantined(v: MemoryVolume, entry: QuarantinedEntry): void {
  if (v.quarantined.some((q) => q.origin === entry.origin && q.seq === entry.seq)) return;
  v.quarantined.push({ ...entry, reason: entry.reason.slice(0, MAX_QUARANTINE_REASON), id: ++v.lastQuarantinedId, at: Date.now() });
  v.quarantinedEver.set(entry.peer, (v.quarantinedEver.get(entry.peer) ?? 0) + 1);
  const ofPeer = v.quarantined.filter((q) => q.peer === entry.peer);
  const drop = new Set(ofPeer.slice(0, Math.max(0, ofPeer.length - MAX_QUARANTINED_PER_PEER)));
  if (drop.size > 0) v.quarantined = v.quarantined.filter((q) => !drop.has(q));
}

/**
 * Keeps a conflict record, numbered in the order kept (ids never reused),
 * the newest few of its document only, and the newest within `maxBytes`
 * of lost states over all (see SQLite's batch.ts).
 */
export function keepConflict(v: MemoryVolume, conflict: NewConflict, maxBytes: number): void {
  v.conflicts.push({ ...conflict, id: lastConflictId(v) + 1 });
  const ofDoc = v.conflicts.filter((c) => c.doc === conflict.doc);
  const drop = new Set(ofDoc.slice(0, Math.max(0, ofDoc.length - MAX_CONFLICTS_PER_DOC)));
  let bytes = v.conflicts.reduce((n, c) => n + (drop.has(c) ? 0 : c.lostState.byteLength), 0);
  for (const c of v.conflicts.slice(0, -1)) {
    if (bytes <= maxBytes) break;
    if (drop.has(c)) continue;
    drop.add(c);
    bytes -= c.lostState.byteLength;
  }
  if (drop.size > 0) v.conflicts = v.conflicts.filter((c) => !drop.has(c));
}

/** The newest record is never dropped: its id counts every record ever kept. */
function lastConflictId(v: MemoryVolume): number {
  return v.conflicts[v.conflicts.length - 1]?.id ?? 0;
}

/** Quarantined entries, as kept by commits. */
export function quarantineOf(v: MemoryVolume): QuarantineStore {
  return {
    counts: () => new Map(v.quarantinedEver),
    list: (afterId, limit) => v.quarantined.filter((q) => q.id > afterId).slice(0, limit),
  };
}

/** Conflict records, as kept by commits. */
export function conflictsOf(v: MemoryVolume): ConflictStore {
  return {
    list: (doc, afterId, limit, maxStateBytes) => {
      const after = v.conflicts.filter((c) => c.doc === doc && c.id > afterId);
      const n = conflictPageLength(after.map((c) => c.lostState.length), limit, maxStateBytes);
      return { records: after.slice(0, n), more: after.length > n };
    },
    count: () => lastConflictId(v),
  };
}
