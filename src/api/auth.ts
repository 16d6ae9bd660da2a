/**
 * Access control of the HTTP API: bearer tokens with a scope (`read`,
 * `read-write` or `status`) and the collections they may reach. With no
 * tokens configured the API is open.
 *
 * `/v1/sync` tells the region's digest, writer id, peers and their errors:
 * it is for operators, so it needs a token that reaches every collection
 * (`*`) or the `status` scope, which reaches `/v1/sync` and `/metrics` and
 * nothing else. The health endpoints stay public for load balancers.
 */
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TokenQuotaConfig, TokenScope } from '../config.js';
import { MeridianError } from '../errors.js';
import { sha256 } from '../sha256.js';

/** A configured token (see `TokenConfig` in src/config.ts). */
export interface AccessToken {
  readonly token: string;
  readonly scope: TokenScope;
  /** Exact collection names or prefixes ending in `*`; absent means every collection. */
  readonly collections?: readonly string[];
  /** Label for logs; the token itself is never logged. */
  readonly name?: string;
  readonly quota?: TokenQuotaConfig;
}

/** Who made a request, once its token matched. */
export interface Principal {
  /** The token's position in the configuration: names need not be unique, this is. */
  readonly id: number;
  readonly name: string;
  readonly scope: TokenScope;
  readonly collections: readonly string[];
  readonly quota: TokenQuotaConfig | null;
}

/** `status`: region-wide status (`/v1/sync`); `any`: any valid token (protected `/metrics`). */
export type Access = 'read' | 'write' | 'status' | 'any';

export interface Authenticator {
  /** False when no tokens are configured: every request is let through. */
  readonly enabled: boolean;
  /** The principal of an `Authorization` header value, or null when it carries no known token. */
  identify(authorization: string | undefined): Principal | null;
}

/** What a route demands of the caller. */
export interface Requirement {
  access: Access;
  /** The collection the request touches, if any. */
  collection: string | null;
}

const BEARER = /^Bearer +(\S+) *$/i;

/**
 * Builds the token matcher. Tokens are compared as SHA-256 digests with
 * `timingSafeEqual`, against every configured token without stopping at a
 * match, so neither a token's content nor its position leaks through timing.
 */
export function createAuthenticator(tokens: readonly AccessToken[]): Authenticator {
  const known = tokens.map((t, i) => ({
    digest: sha256(t.token),
    principal: {
      id: i, name: t.name ?? `token ${i}`, scope: t.scope, collections: t.collections ?? ['*'], quota: t.quota ?? null,
    } satisfies Principal,
  }));
  return {
    enabled: known.length > 0,
    identify(authorization) {
      const token = authorization === undefined ? null : (BEARER.exec(authorization)?.[1] ?? null);
      if (token === null) return null;
      const digest = sha256(token);
      let found: Principal | null = null;
      for (const k of known) {
        if (timingSafeEqual(k.digest, digest) && found === null) found = k.principal;
      }
      return found;
    },
  };
}

/** Whether a collection is one of `patterns`: exact names or prefixes ending in `*`. */
export function collectionAllowed(patterns: readonly string[], collection: string): boolean {
  return patterns.some((p) => (p.endsWith('*') ? collection.startsWith(p.slice(0, -1)) : p === collection));
}

/** Throws `forbidden` unless the principal may do `need`. */
export function authorize(principal: Principal, need: Requirement): void {
  if (need.access === 'any') return;
  if (need.access === 'status') {
    if (principal.scope === 'status' || principal.collections.includes('*')) return;
    throw new MeridianError('forbidden', "region status needs a token for every collection ('*') or the status scope");
  }
  if (principal.scope === 'status') throw new MeridianError('forbidden', 'this token may only read region status');
  if (need.access === 'write' && principal.scope !== 'read-write') {
    throw new MeridianError('forbidden', 'this token may only read');
  }
  if (need.collection !== null && !collectionAllowed(principal.collections, need.collection)) {
    throw new MeridianError('forbidden', `this token may not access collection '${need.collection}'`);
  }
}

/** The routes of region-wide replication status (and its recent history). */
const STATUS_ROUTES: ReadonlySet<string> = new Set(['/v1/sync', '/v1/sync/history']);

/**
 * What a request needs: every `/v1` route needs a token (writing needs
 * `read-write`, `/v1/sync` needs `status` or every collection), `/metrics`
 * needs one when `protectMetrics` is set, and the health endpoints and
 * unknown routes need none.
 */
export function requirementOf(request: FastifyRequest, protectMetrics: boolean): Requirement | null {
  const route = request.routeOptions.url;
  if (route === undefined) return null;
  if (route === '/metrics') return protectMetrics ? { access: 'any', collection: null } : null;
  if (STATUS_ROUTES.has(route)) return { access: 'status', collection: null };
  if (!route.startsWith('/v1/')) return null;
  const params = (request.params ?? {}) as Record<string, string | undefined>;
  const access: Access = request.method === 'GET' || request.method === 'HEAD' ? 'read' : 'write';
  return { access, collection: params['collection'] ?? null };
}

/** Who each request is, for the limits that apply per caller. */
export interface Principals {
  /** The principal of an authorized request; null when no token was needed or none are configured. */
  principalOf(request: FastifyRequest): Principal | null;
}

/**
 * Adds the access check, before the body is read, to every route of `app`,
 * and remembers who each authorized request is.
 */
export function installAuth(
  app: FastifyInstance,
  options: { tokens: readonly AccessToken[]; protectMetrics: boolean },
): Principals {
  const authenticator = createAuthenticator(options.tokens);
  const principals = new WeakMap<FastifyRequest, Principal>();
  const none: Principals = { principalOf: () => null };
  if (!authenticator.enabled) return none;
  app.addHook('onRequest', async (request) => {
    const need = requirementOf(request, options.protectMetrics);
    if (need === null) return;
    const principal = authenticator.identify(authorizationOf(request));
    if (principal === null) throw new MeridianError('unauthorized', 'a valid bearer token is required');
    authorize(principal, need);
    principals.set(request, principal);
    request.log.debug({ principal: principal.name }, 'authorized');
  });
  return { principalOf: (request) => principals.get(request) ?? null };
}

/**
 * URL prefixes of the routes that also take their bearer token as
 * `?token=`: live (WebSocket) clients and change feeds (EventSource), which
 * cannot set headers in a browser.
 */
export const QUERY_TOKEN_PREFIXES: readonly string[] = ['/v1/live/', '/v1/events/'];

/** `?token=` values taken out of the URL, by raw request. */
const queryTokens = new WeakMap<IncomingMessage, string>();

/**
 * For fastify's `rewriteUrl`: removes `token` from the query of a URL under
 * {@link QUERY_TOKEN_PREFIXES} and keeps it aside for
 * {@link authorizationOf}, so the URL that is routed, logged, or handed to
 * any hook or error never holds it. Other URLs pass unchanged.
 */
export function stripQueryToken(req: IncomingMessage): string {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  if (q < 0 || !QUERY_TOKEN_PREFIXES.some((prefix) => url.startsWith(prefix))) return url;
  const params = new URLSearchParams(url.slice(q + 1));
  const token = params.get('token');
  if (token === null) return url;
  params.delete('token');
  queryTokens.set(req, token);
  const rest = params.toString();
  const stripped = url.slice(0, q) + (rest ? `?${rest}` : '');
  // fastify keeps the URL as received here; it must not hold the token either.
  (req as IncomingMessage & { originalUrl?: string }).originalUrl = stripped;
  return stripped;
}

/**
 * The request's `Authorization` header, else the `?token=` that
 * {@link stripQueryToken} took out of its URL, as a bearer value.
 */
export function authorizationOf(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (header !== undefined) return header;
  const token = queryTokens.get(request.raw);
  return token === undefined ? undefined : `Bearer ${token}`;
}

