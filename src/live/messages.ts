/**
 * The y-websocket wire format, as pure functions: what a live client sends
 * is decoded into a {@link ClientMessage}, and what the region sends is
 * encoded here. Message and sync step numbers are y-protocols' own.
 *
 * One message of Meridian's own, {@link MESSAGE_VERSION} (100), tells a
 * client that asked for it (`?versions=1`) the version token of each commit
 * that touched its document; y-websocket logs and ignores message types it
 * has no handler for, so it is only sent on request.
 */
import * as decoding from 'lib0/decoding';
import * as encoding from 'lib0/encoding';
import * as sync from 'y-protocols/sync';

/** y-websocket's message types. */
export const MESSAGE_SYNC = 0;
export const MESSAGE_AWARENESS = 1;
export const MESSAGE_AUTH = 2;
export const MESSAGE_QUERY_AWARENESS = 3;
/** Meridian's own: a UTF-8 version token (see src/docs/token.ts) after a durable commit. */
export const MESSAGE_VERSION = 100;

/** A decoded message from a live client. */
export type ClientMessage =
  | { type: 'sync-step-1'; stateVector: Uint8Array }
  /** Sync step 2 and plain updates are handled alike: both are Yjs updates. */
  | { type: 'update'; update: Uint8Array }
  | { type: 'awareness'; update: Uint8Array }
  | { type: 'query-awareness' }
  /** Anything else (auth messages, unknown types): ignored, as y-websocket servers do. */
  | { type: 'ignored' };

/**
 * Decodes one client message.
 * @throws Error when the bytes are not a well-formed message (the caller closes the connection).
 */
export function decodeClientMessage(bytes: Uint8Array): ClientMessage {
  const d = decoding.createDecoder(bytes);
  const type = decoding.readVarUint(d);
  if (type === MESSAGE_SYNC) {
    const step = decoding.readVarUint(d);
    const payload = decoding.readVarUint8Array(d);
    if (step === sync.messageYjsSyncStep1) return { type: 'sync-step-1', stateVector: payload };
    if (step === sync.messageYjsSyncStep2 || step === sync.messageYjsUpdate) return { type: 'update', update: payload };
    throw new Error(`unknown sync step ${step}`);
  }
  if (type === MESSAGE_AWARENESS) return { type: 'awareness', update: decoding.readVarUint8Array(d) };
  if (type === MESSAGE_QUERY_AWARENESS) return { type: 'query-awareness' };
  return { type: 'ignored' };
}

function syncMessage(step: number, payload: Uint8Array): Uint8Array {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, MESSAGE_SYNC);
  if (step === sync.messageYjsUpdate) {
    sync.writeUpdate(e, payload);
  } else {
    encoding.writeVarUint(e, step);
    encoding.writeVarUint8Array(e, payload);
  }
  return encoding.toUint8Array(e);
}

/** Sync step 1: the region's state vector of the document, asking the client for what it lacks. */
export function syncStep1(stateVector: Uint8Array): Uint8Array {
  return syncMessage(sync.messageYjsSyncStep1, stateVector);
}

/**
 * Each update's sync step 2, made once: reads of a large document are shared
 * (one render for the clients that join together), and so is the message,
 * instead of a copy of megabytes for every connection.
 */
const step2Of = new WeakMap<Uint8Array, Uint8Array>();

/** Sync step 2: what the client lacks, as one update (y-websocket marks itself synced on it). */
export function syncStep2(update: Uint8Array): Uint8Array {
  let message = step2Of.get(update);
  if (message === undefined) step2Of.set(update, (message = syncMessage(sync.messageYjsSyncStep2, update)));
  return message;
}

/** A committed update of the document. */
export function updateMessage(update: Uint8Array): Uint8Array {
  return syncMessage(sync.messageYjsUpdate, update);
}

/** An awareness update (y-protocols' encoding) as a message. */
export function awarenessMessage(update: Uint8Array): Uint8Array {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, MESSAGE_AWARENESS);
  encoding.writeVarUint8Array(e, update);
  return encoding.toUint8Array(e);
}

/**
 * An awareness update naming no client: applying it changes nothing, but it
 * is a message, which is what y-websocket's 30 s liveness check counts.
 */
export const KEEP_ALIVE_MESSAGE: Uint8Array = awarenessMessage(new Uint8Array([0]));

/** The meridian-version message: the version token of a commit that touched the document. */
export function versionMessage(token: string): Uint8Array {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, MESSAGE_VERSION);
  encoding.writeVarString(e, token);
  return encoding.toUint8Array(e);
}

/** Whether an update changes nothing (no structs, no deletions): Yjs encodes that as two zero bytes. */
export function isEmptyUpdate(update: Uint8Array): boolean {
  return update.length === 2 && update[0] === 0 && update[1] === 0;
}
