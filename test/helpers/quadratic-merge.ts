/**
 * Four Yjs updates, each cheap to apply in the order given, whose merge Yjs
 * loads in N x N steps: a run of N embeds by a low client id, N characters
 * prepended at the same place by a higher one, then one character of a
 * still higher id placed after the run. Loading the merge, Yjs starts with
 * the highest id, follows its dependency into the whole run, and only then
 * places the prepends, each scanning the run.
 */
import * as Y from 'yjs';

export interface QuadraticMerge {
  /** In the order a region would admit them: base, prepends, run, the last item. */
  updates: Uint8Array[];
  /** The text they make, embeds included (its delta, as JSON). */
  content: string;
}

export function quadraticMerge(n: number): QuadraticMerge {
  const editor = (clientId: number, after: readonly Uint8Array[]): Y.Doc => {
    const doc = new Y.Doc();
    doc.clientID = clientId;
    for (const u of after) Y.applyUpdate(doc, u);
    return doc;
  };
  const made = (doc: Y.Doc, edit: (text: Y.Text) => void): Uint8Array => {
    const before = Y.encodeStateVector(doc);
    edit(doc.getText('t'));
    return Y.encodeStateAsUpdate(doc, before);
  };
  const base = made(editor(5, []), (t) => t.insert(0, 'or'));
  const prepends = made(editor(1_000, [base]), (t) => {
    for (let i = 0; i < n; i++) t.insert(1, 'h');
  });
  const run = made(editor(10, [base]), (t) => {
    for (let i = 0; i < n; i++) t.insertEmbed(1 + i, { i });
  });
  const last = made(editor(2_000, [base, run]), (t) => t.insert(1 + n, 'x'));
  const updates = [base, prepends, run, last];
  const all = editor(7, updates);
  return { updates, content: contentOf(all) };
}

/** A doc's text `t`, embeds included, as JSON. */
export function contentOf(doc: Y.Doc): string {
  return JSON.stringify(doc.getText('t').toDelta());
}
