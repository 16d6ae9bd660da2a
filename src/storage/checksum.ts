/**
 * CRC-32 checksums of what the store keeps, computed when a row is written and
 * verified when it is read back. SQLite checks the structure of its b-trees
 * but not the bytes of a blob, so a flipped bit in an update or a snapshot
 * would otherwise be handed to Yjs and replicated to every peer.
 */
import { crc32 } from 'node:zlib';
import type { NewLogEntry, Snapshot } from './types.js';

/**
 * Checksum of one log entry over origin, seq, doc, ts and the update bytes.
 * Fields are newline-separated: names cannot contain a newline, so two
 * different entries never hash the same header.
 */
export function entryChecksum(entry: NewLogEntry): number {
  const header = crc32(`${entry.origin}\n${entry.seq}\n${entry.doc}\n${entry.ts}\n`);
  return crc32(entry.update, header);
}

/**
 * Checksum of a snapshot over doc, uptoLsn, state and the row's `pending`
 * column. Snapshots are stored with it null; rows written before held a
 * separate part there, which loading ignores (the state holds it too) but
 * their checksums cover. Its presence is part of the header so that null
 * and an empty buffer differ.
 */
export function snapshotChecksum(snapshot: Snapshot, pending: Uint8Array | null = null): number {
  const hasPending = pending === null ? 'n' : 'p';
  const header = crc32(`${snapshot.doc}\n${snapshot.uptoLsn}\n${snapshot.state.byteLength}\n${hasPending}\n`);
  const withState = crc32(snapshot.state, header);
  return pending === null ? withState : crc32(pending, withState);
}
