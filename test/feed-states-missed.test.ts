/**
 * Documents changed by state while a change feed resumes are kept and sent
 * just before `ready`; a resume that would have to keep more than the bound
 * is cut off with `resume_too_large` instead of holding them without end.
 * A real HTTP response carries the stream; the subscriber is the region's own.
 */
import { createServer, request as httpRequest, type Server } from 'node:http';
import { once } from 'node:events';
import { afterEach, describe, expect, test } from 'vitest';
import { FeedSubscriber, type CutoffReason } from '../src/api/feed-hub.js';
import { SseStream } from '../src/api/feed-stream.js';
import { docKey, type VersionVector, type WriterId } from '../src/ids.js';

const BOUND = 10_000;

interface Run {
  /** What sendStatesMissed returned. */
  sent: boolean;
  cutoffs: CutoffReason[];
  /** The stream's events, in order: [event name, data]. */
  events: [string, Record<string, unknown>][];
}

let server: Server | null = null;

afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined));
  server = null;
});

/** A stream on a real response; `changed` documents of `notes` change by state before the feed goes live. */
async function resumeWith(changed: number): Promise<Run> {
  const position: VersionVector = new Map([['eu-west~0000000000000001' as WriterId, 7]]);
  const result = { sent: false, cutoffs: [] as CutoffReason[] };
  server = createServer((_req, res) => {
    const stream = new SseStream(res, { queueBytes: 64 * 1024 * 1024, heartbeatMs: 60_000 });
    const sub = new FeedSubscriber({ collection: 'notes', id: null }, stream, position, (reason) => result.cutoffs.push(reason));
    const docs = Array.from({ length: changed }, (_, i) => docKey('notes', `n${i}`));
    // In two commits' worth, and one document of another collection the feed does not follow.
    sub.missStates([...docs.slice(0, 10), docKey('other', 'x')]);
    sub.missStates(docs.slice(10));
    result.sent = sub.sendStatesMissed((doc) => ({ name: doc }));
    if (result.sent) {
      sub.goLive('log');
      stream.finish({ event: 'end', data: {} });
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  const body = await new Promise<string>((resolve, reject) => {
    httpRequest({ host: '127.0.0.1', port, path: '/feed' }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve(text));
      res.on('error', reject);
    }).on('error', reject).end();
  });
  const events = body.split('\n\n').flatMap((block): [string, Record<string, unknown>][] => {
    const event = /^event: (.*)$/m.exec(block)?.[1];
    const data = /^data: (.*)$/m.exec(block)?.[1];
    return event && data ? [[event, JSON.parse(data) as Record<string, unknown>]] : [];
  });
  return { ...result, events };
}

describe('documents changed by state during a feed resume', () => {
  test(`up to ${BOUND} are sent before ready, each once, with their current value`, async () => {
    const run = await resumeWith(BOUND);
    expect(run.sent).toBe(true);
    expect(run.cutoffs).toEqual([]);
    const changes = run.events.filter(([event]) => event === 'change');
    expect(changes).toHaveLength(BOUND);
    expect(new Set(changes.map(([, data]) => data['id'])).size).toBe(BOUND);
    expect(changes.every(([, data]) => data['collection'] === 'notes')).toBe(true);
    expect(changes[0]![1]['value']).toEqual({ name: 'notes/n0' });
    expect(run.events.map(([event]) => event).slice(-2)).toEqual(['ready', 'end']);
  });

  test(`beyond ${BOUND} the feed is cut off with resume_too_large and a position to resume from`, async () => {
    const run = await resumeWith(BOUND + 1);
    expect(run.sent).toBe(false);
    expect(run.cutoffs).toEqual(['resume_too_large']);
    expect(run.events.filter(([event]) => event === 'change')).toHaveLength(0);
    const last = run.events[run.events.length - 1]!;
    expect(last[0]).toBe('cutoff');
    expect(last[1]).toMatchObject({ reason: 'resume_too_large' });
    expect(typeof last[1]['version']).toBe('string');
    expect(run.events.some(([event]) => event === 'ready')).toBe(false);
  });
});
