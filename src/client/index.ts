/**
 * The Meridian client SDK: load balancing and failover across regions, with
 * read-your-writes kept across failover.
 *
 * Requests go to the nearest healthy region (by probed round-trip time). A
 * region that cannot serve a request is marked unhealthy and the request
 * moves to the next region, unless that could apply a write twice (see
 * {@link MeridianClient.ops}). Every request carries the session's version
 * (`meridian-after`), so a region that has not yet applied the session's own
 * writes waits for them, or answers `lagging` and the client moves on.
 */
import type { JsonObject, Op } from '../crdt/types.js';
import { MeridianClientError } from './errors.js';
import { Router, expectOk, versionOf, type Call } from './failover.js';
import { RegionTable, type RegionEndpoint, type RegionStatus } from './regions.js';
import { SessionVersion } from './session.js';
import { VERSION_HEADER, probeRtt, type FetchLike } from './transport.js';

export * from './errors.js';
export type { RegionEndpoint, RegionStatus } from './regions.js';
export type { FetchLike } from './transport.js';
export type { Json, JsonObject, Op } from '../crdt/types.js';

export interface ClientOptions {
  /** Every region the client may use; order does not matter, round-trip time decides. */
  regions: RegionEndpoint[];
  /** Bearer token sent with every request. */
  token?: string;
  /** Time for one attempt at one region, beyond any wait the request asks for. Default 3000. */
  timeoutMs?: number;
  /** How often each healthy region's round-trip time is measured. Default 5000. */
  probeIntervalMs?: number;
  /** How often an unhealthy region is probed until it answers. Default min(1000, probeIntervalMs). */
  recheckMs?: number;
  /**
   * `meridian-wait-ms`: how long a region may hold a request until it has
   * applied the session's writes (or until a write reaches `replicas`).
   * Default 5000. An attempt's timeout grows by this much per wait it may do.
   */
  waitMs?: number;
  /** Regions that must hold each write before it is acknowledged (`meridian-replicas`). Default 1. */
  replicas?: number;
  /** A session version to continue (see {@link ClientStatus.session}), e.g. handed over from another process. */
  session?: string;
  /** The fetch implementation. Default: the global `fetch`. */
  fetch?: FetchLike;
}

/** Per-write options. */
export interface WriteOptions {
  /** Overrides {@link ClientOptions.replicas} for this write. */
  replicas?: number;
}

/** A document as read, with the version of the region that served it. */
export interface DocumentRead {
  value: JsonObject;
  version: string;
}

export interface ListPage {
  ids: string[];
  /** Pass as `after` for the next page; null on the last page. */
  next: string | null;
}

export interface ClientStatus {
  /** The region the next request will go to. */
  current: string | null;
  /** The region that served the last request. */
  lastRegion: string | null;
  /** The session version every request carries; null before the first write or read. */
  session: string | null;
  /** Every region in the order they would be tried. */
  regions: RegionStatus[];
}

/** Operations that, applied twice, leave the document as applying them once does. */
const IDEMPOTENT_OPS: ReadonlySet<Op['op']> = new Set(['set', 'delete', 'add', 'remove']);

/** Creates a client and starts probing its regions. */
export function createClient(options: ClientOptions): MeridianClient {
  return new MeridianClient(options);
}

export class MeridianClient {
  private readonly regions: RegionTable;
  private readonly session: SessionVersion;
  private readonly router: Router;
  private readonly closed = new AbortController();
  private readonly replicas: number;

  constructor(options: ClientOptions) {
    validate(options);
    const fetchFn: FetchLike = options.fetch ?? ((input, init) => fetch(input, init));
    const timeoutMs = options.timeoutMs ?? 3000;
    const probeIntervalMs = options.probeIntervalMs ?? 5000;
    const endpoints = options.regions.map((r) => ({ name: r.name, url: r.url.replace(/\/+$/, '') }));
    this.replicas = options.replicas ?? 1;
    this.session = new SessionVersion(options.session ?? null);
    this.regions = new RegionTable(endpoints, {
      probe: (region, signal) => probeRtt(fetchFn, region.url, timeoutMs, signal),
      probeIntervalMs,
      recheckMs: options.recheckMs ?? Math.min(1000, probeIntervalMs),
      samples: 3,
    });
    this.router = new Router({
      regions: this.regions, session: this.session, fetch: fetchFn, closed: this.closed.signal,
      timeoutMs, waitMs: options.waitMs ?? 5000,
      ...(options.token === undefined ? {} : { token: options.token }),
    });
  }

  /** Resolves once every region has been probed once; requests wait for this themselves. */
  ready(): Promise<void> {
    return this.regions.ready;
  }

  /** Reads a document; null when it does not exist (or is deleted). */
  async get(collection: string, id: string): Promise<DocumentRead | null> {
    const served = await this.router.execute(this.read(collection, docPath(collection, id)));
    if (served.status === 404) return null;
    expectOk(served);
    return { value: served.body as JsonObject, version: served.headers.get(VERSION_HEADER) ?? '' };
  }

  /**
   * Replaces a document. Retried at another region after any failure: writing
   * the same content twice leaves the same document (unless another writer
   * changed it in between, whose change the retry then overwrites).
   * @returns the version covering the write
   */
  async put(collection: string, id: string, value: JsonObject, options: WriteOptions = {}): Promise<string> {
    return this.writeVersion(this.write('PUT', collection, docPath(collection, id), value, true, options));
  }

  /** Applies a JSON merge patch (RFC 7386). Retried like {@link put}: the same patch twice has one effect. */
  async patch(collection: string, id: string, patch: JsonObject, options: WriteOptions = {}): Promise<string> {
    const call = this.write('PATCH', collection, docPath(collection, id), patch, true, options);
    return this.writeVersion({ ...call, contentType: 'application/merge-patch+json' });
  }

  /**
   * Applies typed CRDT operations atomically. `set`, `delete`, `add` and
   * `remove` are idempotent and retried like {@link put}. `increment`,
   * `insertText` and `deleteText` are not: a request that timed out or lost
   * its connection after it was sent may have been applied, and sending it
   * again could count or insert twice. Such a call is retried elsewhere only
   * when the connection never opened (nothing was sent); otherwise it throws
   * {@link OutcomeUnknownError}.
   */
  async ops(collection: string, id: string, ops: Op[], options: WriteOptions = {}): Promise<string> {
    const idempotent = ops.every((op) => IDEMPOTENT_OPS.has(op.op));
    return this.writeVersion(this.write('POST', collection, `${docPath(collection, id)}/ops`, { ops }, idempotent, options));
  }

  /**
   * Deletes a document. Retried like {@link put}.
   * @returns the version covering the delete, or null when the document did
   * not exist (which, after a retried attempt, may be because that attempt deleted it)
   */
  async delete(collection: string, id: string, options: WriteOptions = {}): Promise<string | null> {
    const served = await this.router.execute(this.write('DELETE', collection, docPath(collection, id), undefined, true, options));
    if (served.status === 404) return null;
    return versionOf(served);
  }

  /** Lists document ids of a collection in order, a page at a time. */
  async list(collection: string, page: { after?: string; limit?: number } = {}): Promise<ListPage> {
    const query = new URLSearchParams();
    if (page.after !== undefined) query.set('after', page.after);
    if (page.limit !== undefined) query.set('limit', String(page.limit));
    const suffix = query.size > 0 ? `?${query.toString()}` : '';
    const served = await this.router.execute(this.read(collection, `/v1/docs/${encodeURIComponent(collection)}${suffix}`));
    expectOk(served);
    return served.body as ListPage;
  }

  /** The region in use, each region's health and round-trip time, and the session version. */
  status(): ClientStatus {
    const table = this.regions.status();
    return { current: table.current, lastRegion: this.router.lastRegion, session: this.session.current, regions: table.regions };
  }

  /** Stops probing and aborts requests in flight; later calls throw. */
  close(): void {
    this.regions.close();
    this.closed.abort();
  }

  private read(collection: string, path: string): Call {
    return { method: 'GET', path, collection, write: false, idempotent: true, replicas: 1 };
  }

  private write(
    method: Call['method'],
    collection: string,
    path: string,
    body: unknown,
    idempotent: boolean,
    options: WriteOptions,
  ): Call {
    return { method, path, collection, body, write: true, idempotent, replicas: options.replicas ?? this.replicas };
  }

  private async writeVersion(call: Call): Promise<string> {
    const served = await this.router.execute(call);
    return versionOf(served);
  }
}

function docPath(collection: string, id: string): string {
  return `/v1/docs/${encodeURIComponent(collection)}/${encodeURIComponent(id)}`;
}

function validate(options: ClientOptions): void {
  if (options.regions.length === 0) throw new MeridianClientError('at least one region is required');
  const names = new Set(options.regions.map((r) => r.name));
  if (names.size !== options.regions.length) throw new MeridianClientError('region names must be unique');
  for (const r of options.regions) {
    if (!URL.canParse(r.url)) throw new MeridianClientError(`region ${r.name}: '${r.url}' is not a URL`);
  }
  for (const key of ['timeoutMs', 'probeIntervalMs', 'recheckMs', 'waitMs', 'replicas'] as const) {
    const v = options[key];
    if (v !== undefined && !(Number.isFinite(v) && v > 0)) throw new MeridianClientError(`${key} must be a positive number`);
  }
}
