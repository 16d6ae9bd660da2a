/**
 * The server of the HTTP floor (http-floor.ts), run as its own child process
 * (`fork`) as a region is: one Fastify route that parses a JSON body and
 * answers a small JSON object, with nothing behind it (no storage, no
 * replication). The child sends `{ port }` once it listens.
 */
import Fastify from 'fastify';

const app = Fastify({ logger: false });
let seq = 0;
app.put<{ Params: { collection: string; id: string }; Body: Record<string, unknown> }>('/v1/docs/:collection/:id', async (request) => {
  seq += 1;
  // About the size of a region's answer to a PUT.
  return { collection: request.params.collection, id: request.params.id, origin: 'floor~0000000000000000', seq, fields: Object.keys(request.body).length };
});
await app.listen({ port: 0, host: '127.0.0.1' });
const address = app.server.address();
process.send?.({ port: typeof address === 'object' && address !== null ? address.port : 0 });
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
