/**
 * A fingerprint of a doc's Yjs state, for comparing replicas cheaply.
 *
 * It has two parts. The structure covers the state vector and the delete
 * set: a state vector alone does not identify a state, since deleting an
 * item writes a delete-set entry but no new struct. The content covers what
 * a reader sees: every root type's entries and items, in document order.
 * Were every struct's content fixed by its id, the structure would suffice;
 * but two clients can write different content under one Yjs client id, and
 * then replicas with equal structures hold different documents. The content
 * part makes that visible, and the pair tells it apart from an ordinary
 * difference (equal structure, unequal content: a collision, see
 * docs/conflicts.ts).
 */
import { Sha256, sha256 } from '../sha256.js';
import * as encoding from 'lib0/encoding';
import * as Y from 'yjs';
import { valueKey } from './json.js';

/** The two halves of a document digest (32 bytes each). */
export interface DigestParts {
  structure: Uint8Array;
  content: Uint8Array;
}

/**
 * sha256 (32 bytes) of both parts. Equal exactly when the two docs hold the
 * same Yjs state and the same content, whatever order their updates arrived
 * in. Structs still pending (waiting for missing dependencies) are not covered.
 */
export function docDigest(doc: Y.Doc): Uint8Array {
  return combineDigest(digestParts(doc));
}

export function combineDigest(parts: DigestParts): Uint8Array {
  return sha256(parts.structure, parts.content);
}

export function digestParts(doc: Y.Doc): DigestParts {
  return { structure: structureDigest(doc), content: contentDigest(doc) };
}

/** sha256 of the state vector and delete set, both sorted by client, ranges merged. */
function structureDigest(doc: Y.Doc): Uint8Array {
  const encoder = encoding.createEncoder();
  const clients = Array.from(doc.store.clients.keys()).sort((a, b) => a - b);
  encoding.writeVarUint(encoder, clients.length);
  for (const client of clients) {
    encoding.writeVarUint(encoder, client);
    encoding.writeVarUint(encoder, Y.getState(doc.store, client));
  }
  const { ranges, spans } = deleteRanges(doc, clients);
  encoding.writeVarUint(encoder, spans.length / 3);
  for (let k = 0; k < spans.length; k += 3) {
    const from = spans[k + 1]!;
    const to = spans[k + 2]!;
    encoding.writeVarUint(encoder, spans[k]!);
    encoding.writeVarUint(encoder, (to - from) / 2);
    for (let i = from; i < to; i++) encoding.writeVarUint(encoder, ranges[i]!);
  }
  return sha256(encoding.toUint8Array(encoder));
}

/**
 * The delete set, read off the struct store (each client's structs are in
 * clock order) into flat arrays: `ranges` holds `clock, length` pairs of
 * deleted runs, adjacent runs merged; `spans` holds `client, from, to` (a
 * slice of `ranges`) for each client in `clients` with any. What Yjs's own
 * delete set gives, without an object per run: digests run for every
 * changed document.
 */
function deleteRanges(doc: Y.Doc, clients: readonly number[]): { ranges: number[]; spans: number[] } {
  const ranges: number[] = [];
  const spans: number[] = [];
  for (const client of clients) {
    const from = ranges.length;
    const structs = doc.store.clients.get(client)!;
    for (let i = 0; i < structs.length; i++) {
      const struct = structs[i]!;
      if (!struct.deleted) continue;
      const clock = struct.id.clock;
      let len = struct.length;
      while (i + 1 < structs.length && structs[i + 1]!.deleted) len += structs[++i]!.length;
      const last = ranges.length - 2;
      if (last >= from && ranges[last]! + ranges[last + 1]! >= clock) {
        ranges[last + 1] = Math.max(ranges[last + 1]!, clock + len - ranges[last]!);
      } else if (len > 0) {
        ranges.push(clock, len);
      }
    }
    if (ranges.length > from) spans.push(client, from, ranges.length);
  }
  return { ranges, spans };
}

/**
 * sha256 of what a reader sees: root types by name, map entries by key, and
 * sequence items in order, deleted ones left out. Adjacent strings are hashed
 * as one run and other contents value by value, so the result does not
 * depend on how Yjs happened to split or merge items on each replica.
 */
function contentDigest(doc: Y.Doc): Uint8Array {
  const hash = new Sha256();
  for (const name of [...doc.share.keys()].sort()) {
    // A root exists on a replica as soon as code there asks for it, and as
    // whatever class it was first asked for: only its content counts.
    const root = doc.share.get(name)!;
    if (!hasVisible(root)) continue;
    hash.update(`root:${name}\0`);
    hashEntries(hash, root);
  }
  return hash.digest();
}

type Hash = Sha256;
/** Any Yjs type, as Yjs itself names it. */
type AnyType = Parameters<typeof Y.findRootTypeKey>[0];

function hasVisible(type: AnyType): boolean {
  for (const item of type._map.values()) if (!item.deleted) return true;
  for (let item = type._start; item !== null; item = item.right) if (!item.deleted) return true;
  return false;
}

function hashType(hash: Hash, type: AnyType): void {
  hash.update(`type:${type.constructor.name}:${type instanceof Y.XmlElement ? type.nodeName : ''}`);
  hashEntries(hash, type);
}

function hashEntries(hash: Hash, type: AnyType): void {
  hash.update('{');
  for (const key of [...type._map.keys()].sort()) {
    const item = type._map.get(key)!;
    if (item.deleted) continue;
    hash.update(`key:${key}\0`);
    hashContent(hash, item.content);
  }
  hash.update('[');
  let run = '';
  for (let item = type._start; item !== null; item = item.right) {
    if (item.deleted) continue;
    if (item.content instanceof Y.ContentString) {
      run += item.content.str;
      continue;
    }
    if (run) hash.update(`str:${run.length}:${run}`);
    run = '';
    hashContent(hash, item.content);
  }
  if (run) hash.update(`str:${run.length}:${run}`);
  hash.update(']}');
}

function hashContent(hash: Hash, content: Y.Item['content']): void {
  if (content instanceof Y.ContentType) return hashType(hash, content.type);
  if (content instanceof Y.ContentString) {
    hash.update(`str:${content.str.length}:${content.str}`);
    return;
  }
  if (content instanceof Y.ContentBinary) {
    hash.update(`bin:${content.content.byteLength}:`).update(content.content);
    return;
  }
  if (content instanceof Y.ContentFormat) {
    hash.update(`fmt:${valueKey([content.key, content.value])}\0`);
    return;
  }
  if (content instanceof Y.ContentEmbed) {
    hash.update(`embed:${valueKey(content.embed)}\0`);
    return;
  }
  for (const value of content.getContent()) {
    hash.update(`val:${valueKey(value)}\0`);
  }
}
