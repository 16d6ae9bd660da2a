/**
 * An in-memory engine behind the same storage contract (./types.ts) as
 * SQLite: for tests, and as proof that the contract assumes no SQL, file or
 * thread. Writes apply in place and return at once. Its data lives in a
 * {@link MemoryVolume} that outlives the store, so a test can close a store
 * and open another on the same volume as it would reopen a database file.
 * Reads scan the whole log: fine for tests, not for a region's workload.
 */
import type { DocKey, RegionId, VersionVector, WriterId } from '../ids.js';
import { regionOfWriter } from '../ids.js';
import { bucketOf } from '../buckets.js';
import { MAX_SEQ } from '../vv.js';
import { conflictsOf, keepConflict, keepQuarantined, quarantineOf } from './memory-records.js';
import { newWriterId } from './writer-id.js';
import { PENDING_READ_LIMIT, PendingTotal, type PendingEntries } from './pending.js';
import type {
  CommitBatch, ConflictRecord, ConflictStore, DocDigest, DocHead, DocSummary, LogEntry, QuarantineStore, QuarantinedEntry,
  Snapshot, StorageStats, Store, StoredDoc,
} from './types.js';
import { MAX_CONFLICT_BYTES, type LogPosition } from './types.js';

const DIGEST_BYTES = 32;

interface DocRow {
  digest: Uint8Array;
  deleted: boolean;
  stale: boolean;
  snapshotLsn: number;
  /** Log entries newer than the snapshot. */
  logCount: number;
}

interface Progress {
  seq: number;
  /** Seqs up to here were skipped or collected: the log cannot serve them. */
  missingUpto: number;
}

/** Everything a memory store holds. */
export interface MemoryVolume {
  writer: WriterId | null;
  /** By lsn, in lsn order (Map keeps insertion order and lsns only grow). */
  log: Map<number, LogEntry>;
  lastLsn: number;
  docs: Map<DocKey, DocRow>;
  snapshots: Map<DocKey, Snapshot>;
  progress: Map<WriterId, Progress>;
  acks: Map<RegionId, VersionVector>;
  quarantined: (QuarantinedEntry & { id: number; at: number })[];
  /** Quarantined entries ever kept, per peer, and the last one's id. */
  quarantinedEver: Map<RegionId, number>;
  lastQuarantinedId: number;
  conflicts: ConflictRecord[];
}

/** An empty volume, as a new data directory is. */
export function memoryVolume(): MemoryVolume {
  return {
    writer: null, log: new Map(), lastLsn: 0, docs: new Map(), snapshots: new Map(), progress: new Map(), acks: new Map(),
    quarantined: [], quarantinedEver: new Map(), lastQuarantinedId: 0, conflicts: [],
  };
}

const key = (origin: string, seq: number): string => `${origin}\n${seq}`;
const byDoc = (a: { doc: string }, b: { doc: string }): number => (a.doc < b.doc ? -1 : a.doc > b.doc ? 1 : 0);

/** The memory implementation of {@link Store}. */
export class MemoryStore implements Store {
  readonly quarantine: QuarantineStore;
  readonly conflicts: ConflictStore;
  /** (origin, seq) to lsn, rebuilt from the volume on open. */
  private readonly held = new Map<string, number>();
  private readonly corruptListeners = new Set<(doc: DocKey, before: Uint8Array, byCommit: boolean) => void>();

  constructor(
    private readonly v: MemoryVolume,
    region: RegionId,
    /** As SQLite's option of that name. */
    private readonly maxConflictBytes = MAX_CONFLICT_BYTES,
  ) {
    v.writer ??= newWriterId(region);
    if (regionOfWriter(v.writer) !== region) throw new Error(`this volume belongs to region ${regionOfWriter(v.writer)}, not ${region}`);
    for (const [lsn, e] of v.log) this.held.set(key(e.origin, e.seq), lsn);
    this.quarantine = quarantineOf(v);
    this.conflicts = conflictsOf(v);
  }

  get writer(): WriterId {
    return this.v.writer!;
  }

  rotateWriter(): WriterId {
    this.v.writer = newWriterId(regionOfWriter(this.writer));
    return this.v.writer;
  }

  /** Checks everything first, so that a batch that fails writes nothing. */
  commit(batch: CommitBatch): number[] {
    this.check(batch);
    const lsns: number[] = [];
    const seqs = new Map<WriterId, number[]>();
    for (const e of batch.entries) {
      if (this.held.has(key(e.origin, e.seq))) {
        lsns.push(-1);
        continue;
      }
      const lsn = ++this.v.lastLsn;
      this.v.log.set(lsn, { ...e, lsn, update: Uint8Array.from(e.update) });
      this.held.set(key(e.origin, e.seq), lsn);
      lsns.push(lsn);
      seqs.set(e.origin, [...(seqs.get(e.origin) ?? []), e.seq]);
      this.docRow(e.doc).logCount += 1;
    }
    for (const d of batch.digests ?? []) this.setDigest(d);
    for (const c of batch.docs) {
      const row = Object.assign(this.docRow(c.doc), c.digest && c.deleted !== undefined ? { digest: c.digest, stale: false } : { stale: true });
      if (c.deleted !== undefined) row.deleted = c.deleted;
    }
    for (const [origin, list] of seqs) this.advance(origin, list);
    if (batch.raise) this.raise(batch.raise);
    for (const s of batch.snapshots ?? []) this.writeSnapshot(s);
    for (const q of batch.quarantined ?? []) keepQuarantined(this.v, q);
    for (const c of batch.conflicts ?? []) keepConflict(this.v, c, this.maxConflictBytes);
    // As the SQLite engine: marked for repair in the commit.
    for (const doc of new Set((batch.quarantined ?? []).map((q) => q.doc))) this.mark(doc, true);
    return lsns;
  }

  private check(batch: CommitBatch): void {
    for (const d of [...(batch.digests ?? []), ...batch.docs]) {
      if (d.digest && d.digest.byteLength !== DIGEST_BYTES) throw new Error(`digest of ${d.doc} has ${d.digest.byteLength} bytes, expected ${DIGEST_BYTES}`);
    }
    for (const e of batch.entries) checkSeq(e.origin, e.seq);
    for (const [origin, seq] of batch.raise ?? []) checkSeq(origin, seq);
    const known = new Set([...batch.entries, ...batch.docs].map((x) => x.doc));
    for (const s of batch.snapshots ?? []) {
      if (!this.v.docs.has(s.doc) && !known.has(s.doc)) throw new Error(`cannot store a snapshot of unknown document ${s.doc}`);
    }
  }

  private docRow(doc: DocKey): DocRow {
    let row = this.v.docs.get(doc);
    if (!row) this.v.docs.set(doc, (row = { digest: new Uint8Array(DIGEST_BYTES), deleted: false, stale: false, snapshotLsn: 0, logCount: 0 }));
    return row;
  }

  private setDigest(d: DocDigest): void {
    const row = this.v.docs.get(d.doc);
    if (row) Object.assign(row, { digest: Uint8Array.from(d.digest), stale: false }, d.deleted === undefined ? {} : { deleted: d.deleted });
  }

  private writeSnapshot(s: Snapshot): void {
    const row = this.docRow(s.doc);
    if (s.uptoLsn < row.snapshotLsn) return;
    this.v.snapshots.set(s.doc, { ...s });
    row.snapshotLsn = s.uptoLsn;
    row.logCount = this.entriesOf(s.doc).filter((e) => e.lsn > s.uptoLsn).length;
  }

  private advance(origin: WriterId, seqs: number[]): void {
    const p = this.progressOf(origin);
    for (const seq of [...seqs].sort((a, b) => a - b)) if (seq === p.seq + 1) p.seq = seq;
    p.seq = this.walk(origin, p.seq);
  }

  private walk(origin: WriterId, from: number): number {
    let seq = from;
    while (seq + 1 < MAX_SEQ && this.held.has(key(origin, seq + 1))) seq += 1;
    return seq;
  }

  private progressOf(origin: WriterId): Progress {
    let p = this.v.progress.get(origin);
    if (!p) this.v.progress.set(origin, (p = { seq: 0, missingUpto: 0 }));
    return p;
  }

  private entriesOf(doc: DocKey): LogEntry[] {
    return [...this.v.log.values()].filter((e) => e.doc === doc);
  }

  readTogether<T>(read: () => T): T {
    return read();
  }

  loadDoc(doc: DocKey): StoredDoc | null {
    const row = this.v.docs.get(doc);
    if (!row) return null;
    const snap = this.v.snapshots.get(doc);
    const snapshotLsn = snap?.uptoLsn ?? 0;
    const entries = this.entriesOf(doc).filter((e) => e.lsn > snapshotLsn);
    return { snapshot: snap?.state ?? null, snapshotLsn, entries, corrupt: 0 };
  }

  saveSnapshots(snapshots: Snapshot[]): void {
    if (snapshots.length > 0) this.commit({ entries: [], docs: [], snapshots });
  }

  docsNeedingCompaction(minEntries: number, limit: number, bytesPerEntry = Infinity): DocKey[] {
    const enough = (doc: DocKey, entries: number): boolean => {
      const snapshot = this.v.snapshots.get(doc);
      if (snapshot === undefined || entries * bytesPerEntry >= snapshot.state.byteLength) return true;
      const logBytes = this.entriesOf(doc).filter((e) => e.lsn > snapshot.uptoLsn).reduce((n, e) => n + e.update.byteLength, 0);
      return logBytes * 4 >= snapshot.state.byteLength;
    };
    return [...this.v.docs].filter(([doc, r]) => r.logCount > 0 && r.logCount >= minEntries && enough(doc, r.logCount))
      .sort(([a, x], [b, y]) => y.logCount - x.logCount || byDoc({ doc: a }, { doc: b }))
      .slice(0, limit).map(([doc]) => doc);
  }

  readLog(afterLsn: number, limit: number, maxBytes = Number.POSITIVE_INFINITY): LogEntry[] {
    const out: LogEntry[] = [];
    let bytes = 0;
    for (const [lsn, e] of this.v.log) {
      if (out.length >= limit || (out.length > 0 && bytes >= maxBytes)) break;
      if (lsn <= afterLsn) continue;
      out.push(e);
      bytes += e.update.byteLength;
    }
    return out;
  }

  readLogPositions(afterLsn: number, limit: number): LogPosition[] {
    return this.readLog(afterLsn, limit).map(({ lsn, origin, seq, doc }) => ({ lsn, origin, seq, doc }));
  }

  logFloor(): Map<WriterId, number> {
    const floors = new Map<WriterId, number>();
    for (const [origin, p] of this.v.progress) {
      const seqs = [...this.v.log.values()].filter((e) => e.origin === origin).map((e) => e.seq);
      if (seqs.length === 0 && p.missingUpto === 0) continue;
      floors.set(origin, seqs.length === 0 ? p.missingUpto + 1 : Math.max(Math.min(...seqs), p.missingUpto + 1));
    }
    return floors;
  }

  latestEntry(doc: DocKey, origin: WriterId): { origin: WriterId; seq: number } | null {
    const head = this.docHeads(doc).find((h) => h.origin === origin);
    return head ? { origin, seq: head.seq } : null;
  }

  docHeads(doc: DocKey): DocHead[] {
    const heads = new Map<WriterId, DocHead>();
    for (const e of this.entriesOf(doc)) {
      const h = heads.get(e.origin);
      if (!h || e.seq > h.seq) heads.set(e.origin, { origin: e.origin, seq: e.seq, ts: e.ts });
    }
    return [...heads.values()].sort((a, b) => byDoc({ doc: a.origin }, { doc: b.origin }));
  }

  docEntriesBeyond(doc: DocKey, origin: WriterId, afterSeq: number, limit: number): { count: number; ts: number } | null {
    const beyond = this.entriesOf(doc).filter((e) => e.origin === origin && e.seq > afterSeq).sort((a, b) => a.seq - b.seq);
    return beyond.length === 0 ? null : { count: Math.min(beyond.length, Math.max(1, limit)), ts: beyond[0]!.ts };
  }

  hasEntry(origin: WriterId, seq: number): boolean {
    return this.held.has(key(origin, seq));
  }

  heldThrough(vv: VersionVector): number {
    let last = 0;
    for (const [lsn, e] of this.v.log) {
      if (e.seq > (vv.get(e.origin) ?? 0)) return last;
      last = lsn;
    }
    return last;
  }

  oldestBeyond(vv: VersionVector): PendingEntries | null {
    const pending = new PendingTotal();
    for (const [origin, p] of this.v.progress) {
      const after = vv.get(origin) ?? 0;
      const read = [...this.v.log.values()]
        .filter((e) => e.origin === origin && e.seq > after)
        .sort((a, b) => a.seq - b.seq)
        .slice(0, PENDING_READ_LIMIT);
      if (read.length === 0) continue;
      const bytes = read.reduce((n, e) => n + e.update.byteLength, 0);
      pending.add({ ts: Math.min(...read.map((e) => e.ts)), n: read.length, bytes }, p.seq - after);
    }
    return pending.result();
  }

  versionVector(): VersionVector {
    return new Map([...this.v.progress].filter(([, p]) => p.seq > 0).map(([origin, p]) => [origin, p.seq] as const));
  }

  /** Raises applied seqs (never lowers); seqs skipped this way are not served from the log. */
  private raise(vv: VersionVector): void {
    for (const [origin, target] of vv) {
      const p = this.progressOf(origin);
      if (target <= p.seq) continue;
      let held = 0;
      for (let seq = p.seq + 1; seq <= target && held < target - p.seq; seq++) if (this.held.has(key(origin, seq))) held += 1;
      if (held < target - p.seq) p.missingUpto = Math.max(p.missingUpto, target);
      p.seq = this.walk(origin, target);
    }
  }

  peerAcks(peer: RegionId): VersionVector {
    return new Map(this.v.acks.get(peer) ?? []);
  }

  setPeerAcks(peer: RegionId, vv: VersionVector): void {
    this.v.acks.set(peer, new Map(vv));
  }

  /** Goes through the whole log in one call: there is no disk to hold. */
  collectGarbage(peers: RegionId[], olderThanTs: number): number {
    const floor = (origin: WriterId): number => Math.min(...peers.map((peer) => this.v.acks.get(peer)?.get(origin) ?? 0));
    let deleted = 0;
    for (const [lsn, e] of this.v.log) {
      if (lsn > (this.v.docs.get(e.doc)?.snapshotLsn ?? 0)) continue;
      if (e.ts >= olderThanTs && peers.length > 0 && e.seq > floor(e.origin)) continue;
      this.v.log.delete(lsn);
      this.held.delete(key(e.origin, e.seq));
      const p = this.progressOf(e.origin);
      p.missingUpto = Math.max(p.missingUpto, e.seq);
      deleted += 1;
    }
    return deleted;
  }

  listDocs(collection: string, after: string | null, limit: number): string[] {
    const prefix = `${collection}/`;
    const from = prefix + (after ?? '');
    return [...this.v.docs].filter(([doc, r]) => !r.deleted && doc > from && doc.startsWith(prefix))
      .map(([doc]) => doc).sort().slice(0, limit).map((doc) => doc.slice(prefix.length));
  }

  docSummaries(afterDoc: DocKey | null, limit: number): DocSummary[] {
    return this.summaries(afterDoc, limit, () => true);
  }

  bucketSummaries(bucket: number): DocSummary[] {
    return this.summaries(null, Infinity, () => true).filter((s) => bucketOf(s.doc) === bucket);
  }

  staleSummaries(afterDoc: DocKey | null, limit: number): DocSummary[] {
    return this.summaries(afterDoc, limit, (r) => r.stale);
  }

  private summaries(afterDoc: DocKey | null, limit: number, keep: (row: DocRow) => boolean): DocSummary[] {
    return [...this.v.docs].filter(([doc, r]) => doc > (afterDoc ?? '') && keep(r))
      .map(([doc, r]) => ({ doc, digest: r.digest, deleted: r.deleted })).sort(byDoc).slice(0, limit);
  }

  summary(doc: DocKey): DocSummary | null {
    const row = this.v.docs.get(doc);
    return row ? { doc, digest: row.digest, deleted: row.deleted } : null;
  }

  setDigests(digests: DocDigest[]): void {
    this.check({ entries: [], docs: [], digests });
    for (const d of digests) this.setDigest(d);
  }

  markCorrupt(doc: DocKey): void {
    this.mark(doc, false);
  }

  private mark(doc: DocKey, byCommit: boolean): void {
    const row = this.v.docs.get(doc);
    if (!row) return;
    const before = row.digest;
    row.digest = new Uint8Array(DIGEST_BYTES);
    if (before.some((b) => b !== 0)) for (const listener of this.corruptListeners) listener(doc, before, byCommit);
  }

  onCorrupt(listener: (doc: DocKey, before: Uint8Array, byCommit: boolean) => void): () => void {
    this.corruptListeners.add(listener);
    return () => this.corruptListeners.delete(listener);
  }

  stats(): StorageStats {
    let logBytes = 0;
    for (const e of this.v.log.values()) logBytes += e.update.byteLength;
    const documents = [...this.v.docs.values()].filter((r) => !r.deleted).length;
    return { documents, logEntries: this.v.log.size, logBytes, dbBytes: 0, corruptEntries: 0 };
  }

  close(): void {
    this.corruptListeners.clear();
  }
}

/** As SQLite's progress bookkeeping: a seq at or beyond MAX_SEQ is refused, never recorded. */
function checkSeq(origin: string, seq: number): void {
  if (!Number.isSafeInteger(seq) || seq < 0 || seq >= MAX_SEQ) throw new RangeError(`seq ${seq} of ${origin} is not below MAX_SEQ (2^48); refused`);
}
