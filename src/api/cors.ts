/**
 * CORS, so that browser apps served from other origins can call the API.
 *
 * Who may call it: any page, but a browser only lets a page read the answer
 * when its origin is listed in `cors.origins` (or the list holds `*`). This
 * is not access control (a non-browser client ignores CORS; tokens are the
 * access control): it decides which pages a user's browser lets use the
 * user's token. Off by default, so no page elsewhere can.
 *
 * Preflights are answered in the `onRequest` hook, before access control,
 * since browsers send them without the `Authorization` header.
 */
import type { FastifyCorsOptions } from '@fastify/cors';
import type { CorsConfig } from '../config.js';
import { AFTER_HEADER, REPLICAS_HEADER, VERSION_HEADER, WAIT_HEADER } from './session.js';

/** Request headers a page may send: the session headers, the token, and the resume position of a change feed. */
export const CORS_ALLOWED_HEADERS = ['authorization', 'content-type', AFTER_HEADER, WAIT_HEADER, REPLICAS_HEADER, 'last-event-id'];
/** Response headers a page may read beyond the ones browsers always show. */
export const CORS_EXPOSED_HEADERS = [VERSION_HEADER, 'retry-after'];
/** How long a browser may reuse a preflight answer, in seconds. */
const PREFLIGHT_MAX_AGE_S = 600;

/**
 * The options of `@fastify/cors` for `config`, or null when no origin is
 * listed (CORS off: no CORS headers, no preflight route).
 */
export function corsOptions(config: CorsConfig | undefined): FastifyCorsOptions | null {
  const origins = config?.origins ?? [];
  if (origins.length === 0) return null;
  return {
    // Exact origins are compared as strings; an origin not listed gets no CORS headers at all.
    origin: origins.includes('*') ? '*' : [...origins],
    methods: ['GET', 'HEAD', 'PUT', 'PATCH', 'POST', 'DELETE'],
    allowedHeaders: CORS_ALLOWED_HEADERS,
    exposedHeaders: CORS_EXPOSED_HEADERS,
    // Tokens travel in a header, never in cookies.
    credentials: false,
    maxAge: PREFLIGHT_MAX_AGE_S,
  };
}
