/**
 * A change-feed consumer for tests: reads a real SSE stream through fetch
 * and keeps every event, so tests can assert on what arrived and in which
 * order.
 */
import { SseParser, type SseMessage } from '../../src/client/sse.js';
import { waitFor } from './cluster.js';

export interface FeedChange {
  collection: string;
  id: string;
  version: string;
  value: Record<string, unknown> | null;
}

export interface FeedReader {
  status: number;
  /** Every event in arrival order. */
  messages: SseMessage[];
  /** The `change` events, parsed. */
  changes(): FeedChange[];
  /** The id of the last event that carried one. */
  lastId(): string | undefined;
  /** Resolves once the server ended the stream (or it failed). */
  ended: Promise<void>;
  /** Waits until `predicate` holds over what arrived. */
  until(what: string, predicate: (r: FeedReader) => boolean, timeoutMs?: number): Promise<void>;
  close(): void;
}

/** Opens a feed; resolves once its headers arrived. The body (an error, on failure) is in `errorBody`. */
export async function openFeed(
  url: string,
  headers: Record<string, string> = {},
): Promise<FeedReader & { errorBody: unknown }> {
  const abort = new AbortController();
  const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: abort.signal });
  const messages: SseMessage[] = [];
  let errorBody: unknown = null;
  let ended: Promise<void> = Promise.resolve();
  if (res.status === 200 && res.body !== null) {
    const reader = res.body.getReader();
    const parser = new SseParser();
    const decoder = new TextDecoder();
    ended = (async () => {
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) return;
          messages.push(...parser.push(decoder.decode(value, { stream: true })));
        }
      } catch (err) {
        if (!abort.signal.aborted) throw err;
      }
    })();
  } else {
    errorBody = JSON.parse(await res.text()) as unknown;
  }
  const feed: FeedReader & { errorBody: unknown } = {
    status: res.status,
    errorBody,
    messages,
    changes: () => messages.filter((m) => m.event === 'change').map((m) => JSON.parse(m.data) as FeedChange),
    lastId: () => messages.filter((m) => m.id !== undefined).at(-1)?.id,
    ended,
    until: (what, predicate, timeoutMs = 20_000) => waitFor(what, async () => predicate(feed), timeoutMs, 20).then(() => undefined),
    close: () => abort.abort(),
  };
  return feed;
}

/** Per document, the `n` values its changes carried, in order. */
export function valuesByDoc(changes: readonly FeedChange[]): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const c of changes) {
    const list = out.get(c.id) ?? [];
    list.push(typeof c.value?.['n'] === 'number' ? c.value['n'] : -1);
    out.set(c.id, list);
  }
  return out;
}
