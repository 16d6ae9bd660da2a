/**
 * The render thread: builds a large document from its stored updates and
 * renders it as JSON or as one Yjs update, or judges its content conflict
 * with a peer's state, off the event loop that serves requests and links
 * (see cold-render.ts). Pure work on what it is sent: no store, no cache.
 */
import { parentPort } from 'node:worker_threads';
import * as Y from 'yjs';
import { CostlyLoad, documentHoldsContent, heldStateVector, loadDoc, readDocument, validateUpdate } from '../crdt/index.js';
import type { RenderReply, RenderRequest } from './cold-render.js';
import { judge } from './replace.js';

const port = parentPort!;
const encoder = new TextEncoder();

function render(request: RenderRequest): RenderReply {
  const { id, updates } = request;
  let ydoc: Y.Doc;
  try {
    // Built as the event loop builds it (its bound on placement work included); client id 0: read, never written, here.
    ydoc = loadDoc(updates, 0);
  } catch (err) {
    if (err instanceof CostlyLoad) return { id, outcome: 'costly' };
    // An update Yjs refuses: the event loop reads it as before, skipping the update and repairing the document.
    return { id, outcome: 'unbuilt', error: err instanceof Error ? err.message : String(err) };
  }
  try {
    if (request.kind === 'judge') return judged(id, ydoc, request.theirs, request.maxStructs);
    if (request.kind === 'json') {
      const value = readDocument(ydoc);
      return value === null ? { id, outcome: 'absent' } : { id, outcome: 'rendered', body: encoder.encode(JSON.stringify(value)) };
    }
    if (request.kind === 'sv') return { id, outcome: 'rendered', body: Y.encodeStateVector(ydoc) };
    // Encoded from the built document, not merged from the stored updates: merging keeps what deletions dropped.
    if (request.sv === undefined) return { id, outcome: 'rendered', body: Y.encodeStateAsUpdate(ydoc) };
    // Only the document's own clients are read of the caller's vector, as Documents.readYjs does.
    const pending = ydoc.store.pendingStructs ? Y.parseUpdateMetaV2(ydoc.store.pendingStructs.update).to : null;
    const sv = heldStateVector(request.sv, (client) => ydoc.store.clients.has(client) || pending?.has(client) === true);
    return { id, outcome: 'rendered', body: Y.encodeStateAsUpdate(ydoc, sv) };
  } catch (err) {
    return { id, outcome: 'unbuilt', error: err instanceof Error ? err.message : String(err) };
  } finally {
    ydoc.destroy();
  }
}

/**
 * A conflict decided as the event loop decides it (Documents.replaceState,
 * replace.ts resolveConflict), the peer's state checked first as it is
 * there; `mine` is not changed.
 */
function judged(id: number, mine: Y.Doc, theirs: Uint8Array, maxStructs: number): RenderReply {
  const unrelated = { id, outcome: 'judged', verdict: { outcome: 'unrelated' }, winner: null, holdsContent: false, invalid: null } as const;
  try {
    // Built past the bound, it could hold this thread as long as it liked: it conflicts with nothing.
    if (validateUpdate(theirs, Number.MAX_SAFE_INTEGER).structs.length > maxStructs) return unrelated;
  } catch (err) {
    return { ...unrelated, invalid: err instanceof Error ? err.message : String(err) };
  }
  let incoming: Y.Doc;
  try {
    incoming = loadDoc([theirs], 0);
  } catch {
    // A state that does not load conflicts with nothing.
    return unrelated;
  }
  try {
    const verdict = judge(mine, incoming);
    if (verdict.outcome !== 'replaced') return { ...unrelated, verdict };
    return { ...unrelated, verdict, winner: Y.encodeStateAsUpdate(incoming), holdsContent: documentHoldsContent(incoming) };
  } finally {
    incoming.destroy();
  }
}

port.on('message', (request: RenderRequest) => {
  const reply = render(request);
  // Sent, not copied: the thread has no further use for it (updates it was sent are copies).
  const body = reply.outcome === 'rendered' ? reply.body : reply.outcome === 'judged' ? reply.winner : null;
  port.postMessage(reply, body ? [body.buffer as ArrayBuffer] : []);
});
