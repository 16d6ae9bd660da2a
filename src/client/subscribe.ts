/**
 * `subscribe`: a change feed (`GET /v1/events/...`) read through fetch
 * streaming, that follows the client's regions. Every event id is a
 * position; after a lost region, a cut-off or a broken connection the feed
 * resumes from the last one at the best region left, which sends what
 * changed since, so the handler sees each change once.
 */
import type { JsonObject } from '../crdt/types.js';
import { FEED_EVENT, LAST_EVENT_ID_HEADER } from '../contract.js';
import { MeridianClientError, RequestError } from './errors.js';
import type { RegionEndpoint, RegionTable } from './regions.js';
import { SseParser, type SseMessage } from './sse.js';
import type { FetchLike } from './transport.js';

/** One change as the handler receives it. */
export interface ChangeEvent {
  collection: string;
  id: string;
  /** The feed's position after this change (a version token); pass as `after` to resume from here. */
  version: string;
  /** The document now; null when it was deleted. */
  value: JsonObject | null;
}

export interface SubscribeOptions {
  /** A position (an event's `version`) to resume from; default: changes from now on. */
  after?: string;
  /**
   * Called when the feed cannot tell what changed since its position (the
   * region answered by state): the changes that follow hold every document
   * in scope; drop documents they do not name.
   */
  onReset?: () => void;
  /** Errors: a refused subscription (bad token, forbidden) ends it; a failed region only is reported. */
  onError?: (error: Error) => void;
  /** Silence after which a stream counts as lost (the server pings every 15 s). Default 45000. */
  idleTimeoutMs?: number;
}

/** Stops the subscription. */
export type Unsubscribe = () => void;

/** What a subscription needs of the client. */
export interface SubscriptionDeps {
  regions: RegionTable;
  fetch: FetchLike;
  token?: string;
  /** Aborted when the client closes. */
  closed: AbortSignal;
  /** Time for a region to answer the subscription (it may wait for the position to arrive). */
  connectTimeoutMs: number;
}

/** How one stream ended. */
type Outcome =
  /** The server ended the stream (a cut-off, or the region closing) after `delivered` bytes. */
  | { kind: 'ended'; delivered: boolean }
  | { kind: 'failed'; reason: string; markDown: boolean }
  | { kind: 'refused'; error: RequestError };

/** Longest pause between rounds of regions that all failed. */
const MAX_BACKOFF_MS = 5000;
/**
 * A stream that delivered and ended sooner than this is resumed after
 * {@link QUICK_END_PAUSE_MS}, not at once: a region that sends an event and
 * ends, over and over, would otherwise be asked again in a tight loop.
 */
const QUICK_END_MS = 1000;
const QUICK_END_PAUSE_MS = 100;

/** Opens a change feed of a document (`id`) or a whole collection (`id` undefined). */
export function openSubscription(
  deps: SubscriptionDeps,
  collection: string,
  id: string | undefined,
  handler: (change: ChangeEvent) => void,
  options: SubscribeOptions = {},
): Unsubscribe {
  const stop = new AbortController();
  const signal = AbortSignal.any([stop.signal, deps.closed]);
  const path = `/v1/events/${encodeURIComponent(collection)}${id === undefined ? '' : `/${encodeURIComponent(id)}`}`;
  const state = { position: options.after ?? null };
  const report = (error: Error): void => options.onError?.(error);

  const onMessage = (m: SseMessage): void => {
    if (m.id !== undefined) state.position = m.id;
    if (m.event === FEED_EVENT.change) {
      try {
        handler(JSON.parse(m.data) as ChangeEvent);
      } catch (err) {
        report(err instanceof Error ? err : new Error(String(err)));
      }
    } else if (m.event === FEED_EVENT.reset) {
      options.onReset?.();
    } else if (m.event === FEED_EVENT.cutoff && (JSON.parse(m.data) as { reason?: string }).reason === 'resume_too_large') {
      // The position cannot be resumed from here: start afresh, and say so.
      state.position = null;
      options.onReset?.();
    }
  };

  const streamFrom = async (region: RegionEndpoint): Promise<Outcome> => {
    const headers: Record<string, string> = { accept: 'text/event-stream' };
    if (deps.token !== undefined) headers['authorization'] = `Bearer ${deps.token}`;
    if (state.position !== null) headers[LAST_EVENT_ID_HEADER] = state.position;
    const attempt = new AbortController();
    const abort = (): void => attempt.abort();
    signal.addEventListener('abort', abort);
    const connectTimer = setTimeout(abort, deps.connectTimeoutMs);
    try {
      const res = await deps.fetch(region.url + path, { method: 'GET', headers, signal: attempt.signal });
      clearTimeout(connectTimer);
      if (res.status !== 200) return await refusal(region, res);
      if (res.body === null) return { kind: 'failed', reason: 'no body', markDown: false };
      deps.regions.served(region.name);
      return await read(res.body, attempt, options.idleTimeoutMs ?? 45_000, onMessage);
    } catch (err) {
      return { kind: 'failed', reason: err instanceof Error ? err.message : String(err), markDown: true };
    } finally {
      clearTimeout(connectTimer);
      signal.removeEventListener('abort', abort);
    }
  };

  const run = async (): Promise<void> => {
    await deps.regions.ready;
    let failures = 0;
    while (!signal.aborted) {
      const region = deps.regions.order()[0];
      if (region === undefined) return;
      const began = performance.now();
      const outcome = await streamFrom(region);
      if (signal.aborted) return;
      if (outcome.kind === 'refused' && outcome.error.code === 'invalid_token' && state.position !== null) {
        // A position no region takes (a region sent it, or one on another token format): start afresh, and say so.
        report(new MeridianClientError(`${region.name}: the feed's position was refused (${outcome.error.message}); starting afresh`));
        state.position = null;
        options.onReset?.();
        continue;
      }
      if (outcome.kind === 'refused') return report(outcome.error);
      // A stream that ended after delivering resumes (at once, unless it ended at once); one that ended empty counts as a failure.
      if (outcome.kind === 'ended' && outcome.delivered) {
        failures = 0;
        if (performance.now() - began < QUICK_END_MS) await pause(QUICK_END_PAUSE_MS, signal);
        continue;
      }
      const reason = outcome.kind === 'ended' ? 'ended without events' : outcome.reason;
      failures += 1;
      if (outcome.kind === 'failed' && outcome.markDown) deps.regions.markDown(region.name, reason);
      report(new MeridianClientError(`${region.name}: change feed lost (${reason}); resuming`));
      if (failures >= deps.regions.order().length) await pause(Math.min(MAX_BACKOFF_MS, 100 * 2 ** failures), signal);
    }
  };
  void run().catch((err: unknown) => report(err instanceof Error ? err : new Error(String(err))));
  return () => stop.abort();
}

/** A 4xx other than 429 ends the subscription (another region would say the same); others move on. */
async function refusal(region: RegionEndpoint, res: Response): Promise<Outcome> {
  const text = await res.text();
  if (res.status >= 500 || res.status === 429) return { kind: 'failed', reason: `answered ${res.status}`, markDown: false };
  let body: { error?: string; message?: string } = {};
  try {
    body = JSON.parse(text) as typeof body;
  } catch (err) {
    body = { message: `${text.slice(0, 200)} (${String(err)})` };
  }
  const error = new RequestError(region.name, res.status, body.error ?? `http_${res.status}`, body.message ?? '');
  return { kind: 'refused', error };
}

/** Reads events until the stream ends, fails, or stays silent for `idleMs`. */
async function read(
  body: ReadableStream<Uint8Array>,
  attempt: AbortController,
  idleMs: number,
  onMessage: (m: SseMessage) => void,
): Promise<Outcome> {
  const parser = new SseParser();
  const decoder = new TextDecoder();
  const reader = body.getReader();
  let idle = setTimeout(() => attempt.abort(), idleMs);
  let delivered = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      clearTimeout(idle);
      if (done) return { kind: 'ended', delivered };
      idle = setTimeout(() => attempt.abort(), idleMs);
      for (const m of parser.push(decoder.decode(value, { stream: true }))) {
        delivered = true;
        onMessage(m);
      }
    }
  } finally {
    clearTimeout(idle);
    reader.releaseLock();
  }
}

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });
}
