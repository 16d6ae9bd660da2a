/**
 * The render thread: builds a large document from its stored updates and
 * renders it as JSON, off the event loop that serves requests and links
 * (see cold-render.ts). Pure work on what it is sent: no store, no cache.
 */
import { parentPort } from 'node:worker_threads';
import { loadDocOrNull, readDocument } from '../crdt/index.js';
import type { RenderReply, RenderRequest } from './cold-render.js';

const port = parentPort!;
const encoder = new TextEncoder();

function render(request: RenderRequest): RenderReply {
  const { id, updates } = request;
  try {
    // Client id 0: the document is read, never written, here.
    const ydoc = loadDocOrNull(updates, 0);
    if (ydoc === null) return { id, outcome: 'unbuilt' };
    try {
      const value = readDocument(ydoc);
      return value === null ? { id, outcome: 'absent' } : { id, outcome: 'json', body: encoder.encode(JSON.stringify(value)) };
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
  port.postMessage(reply, reply.outcome === 'json' ? [reply.body.buffer as ArrayBuffer] : []);
});
