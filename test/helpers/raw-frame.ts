/** Frames written by hand, to carry what the encoder refuses to write. */
import * as encoding from 'lib0/encoding';
import { FRAME_MAGIC, PROTOCOL_VERSION } from '../../src/replication/protocol.js';

/** A frame of type `code` whose body `body` writes. */
export function rawFrame(code: number, body: (e: encoding.Encoder) => void): Uint8Array {
  const e = encoding.createEncoder();
  encoding.writeUint8(e, FRAME_MAGIC);
  encoding.writeUint8(e, PROTOCOL_VERSION);
  encoding.writeUint8(e, code);
  body(e);
  return encoding.toUint8Array(e);
}
