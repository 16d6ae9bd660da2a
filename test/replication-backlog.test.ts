/**
 * A peer that stops reading: what a region sends at once rather than when
 * the link drains (acknowledgements, pongs) would wait unsent on it without
 * end. The link is closed once more than its bound waits (a full send
 * buffer, one largest frame and 1 MiB), saying why, and nothing is sent
 * after. A real store and write path; the transport reports what waits in it,
 * as a socket whose peer stopped reading would. (A peer that floods pings to
 * get there is closed for the flood first: `hardening-peer.test.ts`.)
 * And the other way round: a peer whose frames arrive faster than this region
 * works them off is no longer read once they pass a count or a byte bound.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, expect, it } from 'vitest';
import { CloseCode } from '../src/contract.js';
import { createDocuments } from '../src/docs/documents.js';
import type { RegionId } from '../src/ids.js';
import { decodeFrame, encodeFrame, type Frame } from '../src/replication/protocol.js';
import { MAX_INBOUND_BYTES, Session } from '../src/replication/session.js';
import { openStore } from '../src/storage/sqlite.js';

const logger = pino({ level: 'silent' });
const dir = mkdtempSync(join(tmpdir(), 'meridian-backlog-'));
const store = openStore({ dataDir: dir, region: 'eu-west' as RegionId, synchronous: 'normal', logger });
const documents = createDocuments({ store, logger, cacheDocs: 10, yjsUpdateBytes: 1 << 20, compactIntervalMs: 0 });

afterAll(async () => {
  await documents.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const MAX_BUFFERED = 16 * 1024;
const MAX_FRAME = 64 * 1024;
const BOUND = MAX_BUFFERED + MAX_FRAME + (1 << 20);

it('closes the link once more than its bound waits unsent to the peer, says why, and sends nothing after', () => {
  const sent: Frame[] = [];
  const closes: { code: number; reason: string }[] = [];
  const unsent: { reason: string; kind: string }[] = [];
  let waiting = 0;
  const noop = (): void => undefined;
  const session = new Session({
    peer: 'ap-south' as RegionId, documents, store, logger,
    transport: {
      send: (bytes) => void sent.push(decodeFrame(bytes, MAX_FRAME)), buffered: () => waiting,
      close: (code, reason) => void closes.push({ code, reason }), pause: noop, resume: noop,
    },
    batchBytes: 4096, maxBufferedBytes: MAX_BUFFERED, maxFrameBytes: MAX_FRAME,
    onPeerRestarted: noop, onHeard: noop, onPong: noop, onAck: noop, leavesCatchUp: () => false,
    onRejected: (reason) => {
      throw new Error(`frame rejected: ${reason}`);
    },
    onUnsent: (reason, kind) => void unsent.push({ reason, kind }),
  });
  const ping = (id: number) => session.receive(encodeFrame({ type: 'ping', id, sentAt: 1, vv: new Map(), links: [], lagMs: 0 }));
  try {
    // Just under the bound, a pong still goes.
    waiting = BOUND - 64;
    ping(1);
    expect(sent.filter((f) => f.type === 'pong')).toHaveLength(1);
    expect(closes).toEqual([]);
    // The peer read nothing since: the next would pass the bound.
    waiting = BOUND - 8;
    ping(2);
    expect(closes).toEqual([{ code: CloseCode.Backlog, reason: `peer reads nothing: ${BOUND - 8} bytes wait to be sent to it` }]);
    expect(unsent).toEqual([{ reason: `peer reads nothing: ${BOUND - 8} bytes wait to be sent to it`, kind: 'backlog' }]);
    expect(session.isClosed()).toBe(true);
    ping(3);
    expect(sent.filter((f) => f.type === 'pong')).toHaveLength(1);
  } finally {
    session.close();
  }
});

it('stops reading the socket once the frames waiting their turn pass its byte bound, however few they are', () => {
  const calls: string[] = [];
  const noop = (): void => undefined;
  const session = new Session({
    peer: 'ap-south' as RegionId, documents, store, logger,
    transport: {
      send: noop, buffered: () => 0, close: noop, pause: () => void calls.push('pause'), resume: () => void calls.push('resume'),
    },
    batchBytes: 4096, maxBufferedBytes: MAX_BUFFERED, maxFrameBytes: MAX_FRAME,
    onPeerRestarted: noop, onHeard: noop, onPong: noop, onAck: noop, leavesCatchUp: () => false, onRejected: noop,
  });
  try {
    // Three frames, each a third of the bound and more (a doc-state's type byte; never decoded here).
    const frame = new Uint8Array(Math.ceil(MAX_INBOUND_BYTES / 3) + 1);
    frame[2] = 0x07;
    session.receive(frame);
    session.receive(frame);
    expect(calls).toEqual([]);
    session.receive(frame);
    expect(calls).toEqual(['pause']);
  } finally {
    session.close();
  }
});
