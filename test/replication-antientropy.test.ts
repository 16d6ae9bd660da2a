/**
 * Anti-entropy rounds between two in-process regions (real stores and write
 * paths) whose sessions exchange encoded frames in memory, so a test can act
 * between two frames of a round.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { bucketOf } from '../src/docs/digest-index.js';
import { createDocuments } from '../src/docs/documents.js';
import type { Documents } from '../src/docs/types.js';
import { docKey, type DocKey, type RegionId } from '../src/ids.js';
import { decodeFrame, type Frame } from '../src/replication/protocol.js';
import { Session } from '../src/replication/session.js';
import { openStore } from '../src/storage/sqlite.js';
import type { Store } from '../src/storage/types.js';

const logger = pino({ level: 'silent' });
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

interface Region {
  name: RegionId;
  docs: Documents;
  store: Store;
}

function region(name: string): Region {
  const dir = mkdtempSync(join(tmpdir(), 'meridian-ae-'));
  const store = openStore({ dataDir: dir, region: name as RegionId, synchronous: 'normal', logger });
  const docs = createDocuments({ store, logger, cacheDocs: 100, yjsUpdateBytes: 1 << 20, compactIntervalMs: 0 });
  cleanups.push(async () => {
    await docs.close();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { name: name as RegionId, docs, store };
}

/** Called before a frame is delivered; returning false drops it. */
type Hook = (frame: Frame, to: RegionId) => Promise<boolean> | boolean;

/** Two sessions joined by in-order, in-memory delivery of encoded frames. */
function join2(a: Region, b: Region, hook: Hook = () => true): { sa: Session; sb: Session } {
  const sessions = new Map<RegionId, Session>();
  const outbox = (to: Region) => {
    let chain = Promise.resolve();
    return (bytes: Uint8Array) => {
      const copy = Uint8Array.from(bytes);
      chain = chain.then(async () => {
        await new Promise((r) => setImmediate(r));
        if (await hook(decodeFrame(copy, 1 << 24), to.name)) sessions.get(to.name)!.receive(copy);
      });
    };
  };
  const session = (me: Region, peer: Region) => {
    const noop = (): void => undefined;
    return new Session({
      peer: peer.name, documents: me.docs, store: me.store, logger,
      transport: { send: outbox(peer), buffered: () => 0, close: noop, pause: noop, resume: noop },
      batchBytes: 64 * 1024, maxBufferedBytes: 1 << 20, maxFrameBytes: 1 << 24,
      onPeerRestarted: noop, onHeard: noop, onPong: noop, onAck: noop, leavesCatchUp: () => false,
      onRejected: (reason) => {
        throw new Error(`frame rejected: ${reason}`);
      },
    });
  };
  const sa = session(a, b);
  const sb = session(b, a);
  sessions.set(a.name, sa);
  sessions.set(b.name, sb);
  cleanups.unshift(async () => {
    sa.close();
    sb.close();
  });
  return { sa, sb };
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    p,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms)),
  ]);
}

/** A document key whose digest bucket differs from every bucket in `taken`. */
function keyOutside(taken: DocKey[], prefix: string): DocKey {
  const used = new Set(taken.map(bucketOf));
  for (let i = 0; ; i++) {
    const key = docKey('ae', `${prefix}-${i}`);
    if (!used.has(bucketOf(key))) return key;
  }
}

describe('anti-entropy rounds', () => {
  it('finish and repair both sides when the initiator writes while its round is in flight', async () => {
    const a = region('ap-south');
    const b = region('eu-west');
    const onlyA = docKey('ae', 'only-a');
    const onlyB = keyOutside([onlyA], 'only-b');
    const late = keyOutside([onlyA, onlyB], 'late');
    await a.docs.put(onlyA, { from: 'a' });
    await b.docs.put(onlyB, { from: 'b' });

    // Just before the peer's answer reaches the initiator, the initiator
    // writes a document in a bucket where both regions agreed when the round began.
    let wrote = false;
    const { sa } = join2(a, b, async (frame, to) => {
      if (frame.type === 'ae-buckets' && to === a.name && !wrote) {
        wrote = true;
        await a.docs.put(late, { written: 'during the round' });
      }
      return true;
    });
    await within(sa.ae.start(), 5000, 'the anti-entropy round');
    expect(wrote).toBe(true);
    // Merges commit in the background; the peer applies after the frames arrive.
    await expect.poll(() => a.docs.read(onlyB).value).toEqual({ from: 'b' });
    await expect.poll(() => b.docs.read(onlyA).value).toEqual({ from: 'a' });
    // The late write was not part of the round; the next one carries it.
    await within(sa.ae.start(), 5000, 'the second round');
    await expect.poll(() => b.docs.read(late).value).toEqual({ written: 'during the round' });
    await expect.poll(() => b.docs.digests.regionDigest()).toBe(a.docs.digests.regionDigest());
  });

  it('abandons a round whose answers never come, so later rounds can run', async () => {
    const a = region('ap-south');
    const b = region('eu-west');
    await a.docs.put(docKey('ae', 'x'), { v: 1 });
    // Nothing reaches the initiator.
    const { sa } = join2(a, b, (_frame, to) => to !== a.name);
    const round = sa.ae.start();
    await new Promise((r) => setTimeout(r, 50));
    expect(sa.ae.running).toBe(true);
    sa.ae.abortIdle(Date.now() + 1000, 10_000);
    expect(sa.ae.running).toBe(true);
    sa.ae.abortIdle(Date.now() + 20_000, 10_000);
    expect(sa.ae.running).toBe(false);
    await within(round, 1000, 'the abandoned round');
  });
});
