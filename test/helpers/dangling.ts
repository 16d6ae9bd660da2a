import * as Y from 'yjs';

/**
 * A Yjs update whose only item, a Y.Text insert, follows three characters
 * of client 111 that no region holds: applied anywhere, it waits for them
 * for good (what a faulty peer's entry can hold).
 */
export function danglingUpdate(): Uint8Array {
  const held = new Y.Doc();
  held.clientID = 111;
  held.getText('t').insert(0, 'abc');
  const next = new Y.Doc();
  next.clientID = 222;
  Y.applyUpdate(next, Y.encodeStateAsUpdate(held));
  next.getText('t').insert(3, 'd');
  return Y.encodeStateAsUpdate(next, Y.encodeStateVector(held));
}
