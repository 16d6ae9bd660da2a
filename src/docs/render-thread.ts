/**
 * The render thread: renders a large document from its stored updates, as
 * JSON or as one Yjs update, off the event loop that serves requests and
 * links (see cold-render.ts). Pure work on what it is sent: no store, no cache.
 */
import { parentPort } from 'node:worker_threads';
import * as Y from 'yjs';
import { heldStateVector, loadDocOrNull, mayCollide, mergeMany, readDocument } from '../crdt/index.js';
import type { RenderReply, RenderRequest } from './cold-render.js';

const port = parentPort!;
const encoder = new TextEncoder();

function render(request: RenderRequest): RenderReply {
  const { id, updates } = request;
  try {
    if (request.kind === 'yjs') {
      // Merging parts that collide would splice them another way than loading does (crdt/load.ts): the event loop builds those.
      if (mayCollide(null, updates)) return { id, outcome: 'unbuilt' };
      const merged = updates.length === 1 ? updates[0]! : mergeMany(updates);
      if (request.sv === undefined) return { id, outcome: 'rendered', body: merged };
      // Only the document's own clients are read of the caller's vector, as Documents.readYjs does.
      const clients = Y.parseUpdateMeta(merged).to;
      return { id, outcome: 'rendered', body: Y.diffUpdate(merged, heldStateVector(request.sv, (client) => clients.has(client))) };
    }
    // Client id 0: the document is read, never written, here.
    const ydoc = loadDocOrNull(updates, 0);
    if (ydoc === null) return { id, outcome: 'costly' };
    try {
      const value = readDocument(ydoc);
      return value === null ? { id, outcome: 'absent' } : { id, outcome: 'rendered', body: encoder.encode(JSON.stringify(value)) };
    } finally {
      ydoc.destroy();
    }
  } catch (err) {
    // An update Yjs refuses, a render past its budget: the event loop reads it as before, and reports or repairs that.
    return { id, outcome: 'unbuilt', error: err instanceof Error ? err.message : String(err) };
  }
}

port.on('message', (request: RenderRequest) => {
  const reply = render(request);
  // Sent, not copied: the thread has no further use for it (updates it was sent are copies).
  port.postMessage(reply, reply.outcome === 'rendered' ? [reply.body.buffer as ArrayBuffer] : []);
});
