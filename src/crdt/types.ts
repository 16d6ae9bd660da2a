import type { WriterId } from '../ids.js';

export type JsonScalar = null | boolean | number | string;
export type Json = JsonScalar | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** A path of object keys from the document root. */
export type Path = string[];

/** Typed CRDT operations of `POST /v1/docs/{collection}/{id}/ops`. */
export type Op =
  | { op: 'set'; path: Path; value: Json }
  | { op: 'delete'; path: Path }
  | { op: 'increment'; path: Path; by: number }
  | { op: 'add'; path: Path; value: JsonScalar }
  | { op: 'remove'; path: Path; value: JsonScalar }
  | { op: 'insertText'; path: Path; index: number; text: string }
  | { op: 'deleteText'; path: Path; index: number; length: number };

/** Who is writing: counters keep one slot per writer. */
export interface WriteContext {
  writer: WriterId;
}
