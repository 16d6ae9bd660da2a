// The region's HTTP API, as the dashboard uses it: same origin, with the
// operator's token (kept for this browser tab only) when the API asks for one.

const TOKEN_KEY = 'meridian-token';

/** Thrown when the API wants a (better) token: 401 or 403. */
export class NeedsToken extends Error {
  constructor(message, sentToken) {
    super(message);
    /** The token the refused request carried (null for none). */
    this.sentToken = sentToken;
  }
}

/** The token requests carry now (null for none). */
export function currentToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function headers(token, extra = {}) {
  return token ? { ...extra, authorization: `Bearer ${token}` } : extra;
}

/** GET or POST a JSON route; resolves the parsed body, throws with the API's message otherwise. */
export async function api(path, { method = 'GET', body } = {}) {
  const token = currentToken();
  const init = { method, headers: headers(token, body === undefined ? {} : { 'content-type': 'application/json' }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const res = await fetch(path, { ...init, signal: AbortSignal.timeout(method === 'GET' ? 5000 : 65000) });
  const text = await res.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { message: text };
  }
  if (res.status === 401 || res.status === 403) throw new NeedsToken(parsed?.message ?? `HTTP ${res.status}`, token);
  if (!res.ok) throw new Error(parsed?.message ?? `HTTP ${res.status}`);
  return parsed;
}

/** Whether the region takes writes: `/readyz` is public and answers 503 while writes are held. */
export async function readiness() {
  const res = await fetch('/readyz', { signal: AbortSignal.timeout(5000) });
  return res.json();
}
