import * as encoding from 'lib0/encoding';

/** An awareness update (y-protocols encoding) that gives each client id a state at clock 1. */
export function presenceUpdate(ids: number[]): Uint8Array {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, ids.length);
  for (const id of ids) {
    encoding.writeVarUint(e, id);
    encoding.writeVarUint(e, 1);
    encoding.writeVarString(e, JSON.stringify({ user: `u${id}` }));
  }
  return encoding.toUint8Array(e);
}
