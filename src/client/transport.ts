/**
 * One HTTP exchange with one region, and what is known about it afterwards:
 * an answer, a failure before anything was sent, or a failure after the
 * request may have reached the region. The failover policy lives in the
 * client; this module only classifies.
 */

/** The `fetch` the client uses; pass one to add a dispatcher, tracing or a proxy. */
export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

// The header names are part of the wire contract the server shares.
export { AFTER_HEADER, REPLICAS_HEADER, VERSION_HEADER, WAIT_HEADER } from '../contract.js';

/** One request, independent of the region it goes to. */
export interface HttpRequest {
  method: 'GET' | 'PUT' | 'PATCH' | 'POST' | 'DELETE';
  /** Path and query, starting with `/`. */
  path: string;
  body?: unknown;
  contentType?: string;
  headers: Record<string, string>;
  timeoutMs: number;
}

export type Exchange =
  | { kind: 'answer'; status: number; body: unknown; headers: Headers }
  /** The connection could not be opened: the region received nothing. */
  | { kind: 'unreached'; reason: string; error: unknown }
  /** The request may have reached the region (timeout, reset, truncated answer). */
  | { kind: 'lost'; reason: string; error: unknown };

/**
 * Error codes of a connection that never opened. Anything else (a reset, a
 * closed keep-alive socket, our own timeout) may come after the request left.
 */
const NOT_SENT_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** Sends one request to `baseUrl` and reads the whole answer within `timeoutMs`. */
export async function exchange(
  fetchFn: FetchLike,
  baseUrl: string,
  request: HttpRequest,
  closed: AbortSignal,
): Promise<Exchange> {
  const headers: Record<string, string> = { ...request.headers };
  let body: string | undefined;
  if (request.body !== undefined) {
    headers['content-type'] = request.contentType ?? 'application/json';
    body = JSON.stringify(request.body);
  }
  const { signal, done } = deadline(closed, request.timeoutMs);
  try {
    const res = await fetchFn(baseUrl + request.path, { method: request.method, headers, body, signal });
    const text = await res.text();
    return { kind: 'answer', status: res.status, body: parseBody(text), headers: res.headers };
  } catch (error) {
    return classify(error, signal);
  } finally {
    done();
  }
}

/** Measures one round trip to `/readyz` in milliseconds; throws unless the region is ready (200). */
export async function probeRtt(
  fetchFn: FetchLike,
  baseUrl: string,
  timeoutMs: number,
  closed: AbortSignal,
): Promise<number> {
  const started = performance.now();
  const { signal, done } = deadline(closed, timeoutMs);
  try {
    const res = await fetchFn(`${baseUrl}/readyz`, { method: 'GET', signal });
    // Reading the body returns the connection to the pool for the next request.
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`/readyz answered ${res.status}`);
    return performance.now() - started;
  } finally {
    done();
  }
}

/**
 * A signal that aborts when `closed` does or after `timeoutMs` (reason: a
 * `TimeoutError`), and `done` to stop both once the exchange is over. Not
 * `AbortSignal.any([closed, AbortSignal.timeout(ms)])`: in Node 20 the
 * timeout's signal can be garbage-collected inside the composite before it
 * fires (nodejs/node#57736), and a request to a region that never answers
 * then waits for ever instead of failing over. Here the timer holds the
 * controller until it fires or is cleared.
 */
function deadline(closed: AbortSignal, timeoutMs: number): { signal: AbortSignal; done: () => void } {
  const controller = new AbortController();
  const onClosed = (): void => controller.abort(closed.reason);
  const timer = setTimeout(() => controller.abort(new DOMException(`no answer within ${timeoutMs} ms`, 'TimeoutError')), timeoutMs);
  if (closed.aborted) onClosed();
  else closed.addEventListener('abort', onClosed, { once: true });
  return {
    signal: controller.signal,
    done: () => {
      clearTimeout(timer);
      closed.removeEventListener('abort', onClosed);
    },
  };
}

function classify(error: unknown, signal: AbortSignal): Exchange {
  if (signal.aborted) {
    const reason = signal.reason instanceof Error && signal.reason.name === 'TimeoutError' ? 'timeout' : 'closed';
    return { kind: 'lost', reason, error };
  }
  const code = errorCode(error);
  if (code !== null && NOT_SENT_CODES.has(code)) return { kind: 'unreached', reason: 'unreachable', error };
  return { kind: 'lost', reason: 'connection lost', error };
}

/** The first `code` along the `cause` chain (fetch wraps socket errors in a TypeError). */
function errorCode(error: unknown): string | null {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && typeof current === 'object' && current !== null; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    current = (current as { cause?: unknown }).cause;
  }
  return null;
}

function parseBody(text: string): unknown {
  if (text === '') return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    // Not every answer is ours (a proxy's error page): keep the text for the error message.
    return text;
  }
}
