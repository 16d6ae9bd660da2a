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
 *
 * When the region holding the session's latest writes is lost before they
 * replicate, every other region answers `lagging` and every call fails,
 * even on unrelated documents, until that region returns. Two ways out:
 * {@link MeridianClient.resetSession} (give up read-your-writes for those
 * writes now), or {@link ClientOptions.staleAfterMs} (give it up
 * automatically after a deadline, with each result marked stale until a
 * region has the writes again).
 */
import type { JsonObject, Op } from '../crdt/types.js';
import { MeridianClientError } from './errors.js';
import { Router, expectOk, versionOf, type Call } from './failover.js';
import { RegionTable, type RegionEndpoint, type RegionStatus } from './regions.js';
import type { SyncStatus } from '../replication/types.js';
import { SessionVersion } from './session.js';
import { StalePolicy, type Staleness } from './stale.js';
import { VERSION_HEADER, probeRtt, type FetchLike } from './transport.js';
import { openSubscription, type ChangeEvent, type SubscribeOptions, type SubscriptionDeps, type Unsubscribe } from './subscribe.js';

export * from './errors.js';
export type { RegionEndpoint, RegionStatus } from './regions.js';
export type { FetchLike } from './transport.js';
export type { ChangeEvent, SubscribeOptions, Unsubscribe } from './subscribe.js';
export { live, type LiveOptions, type LiveSession } from './live.js';
export type { Staleness } from './stale.js';
export type { PeerState, PeerStatus, SyncStatus } from '../replication/types.js';
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
  /**
   * How long the session may be stuck (every region failing a call, some of
   * them `lagging`: they lack the session's own writes) before calls go on
   * without those writes, in ms; 0 goes on at once. Default: never (calls
   * keep failing with {@link UnavailableError} until a region has the
   * writes, or {@link MeridianClient.resetSession} is called). Results
   * served meanwhile carry `stale`; see {@link Staleness}.
   */
  staleAfterMs?: number;
  /** Told when calls start being served stale, and with null when they are whole again. */
  onStale?: (staleness: Staleness | null) => void;
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
  /** Set when the serving region may lack some of the session's own writes (see {@link ClientOptions.staleAfterMs}). */
  stale?: Staleness;
}

export interface ListPage {
  ids: string[];
  /** Pass as `after` for the next page; null on the last page. */
  next: string | null;
  /** Set when the serving region may lack some of the session's own writes. */
  stale?: Staleness;
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
  /** Non-null while calls go on without some of the session's writes (see {@link ClientOptions.staleAfterMs}). */
  stale: Staleness | null;
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
  private readonly stale: StalePolicy;
  private readonly router: Router;
  private readonly closed = new AbortController();
  private readonly replicas: number;
  private readonly feeds: SubscriptionDeps;

  constructor(options: ClientOptions) {
    validate(options);
    const fetchFn: FetchLike = options.fetch ?? ((input, init) => fetch(input, init));
    const timeoutMs = options.timeoutMs ?? 3000;
    const probeIntervalMs = options.probeIntervalMs ?? 5000;
    const endpoints = options.regions.map((r) => ({ name: r.name, url: r.url.replace(/\/+$/, '') }));
    this.replicas = options.replicas ?? 1;
    this.session = new SessionVersion(options.session ?? null);
    this.stale = new StalePolicy(options.staleAfterMs, options.onStale ?? (() => undefined));
    this.regions = new RegionTable(endpoints, {
      probe: (region, signal) => probeRtt(fetchFn, region.url, timeoutMs, signal),
      probeIntervalMs,
      recheckMs: options.recheckMs ?? Math.min(1000, probeIntervalMs),
      samples: 3,
    });
    this.router = new Router({
      regions: this.regions, session: this.session, stale: this.stale, fetch: fetchFn, closed: this.closed.signal,
      timeoutMs, waitMs: options.waitMs ?? 5000,
      ...(options.token === undefined ? {} : { token: options.token }),
    });
    this.feeds = {
      regions: this.regions, fetch: fetchFn, closed: this.closed.signal,
      // A region resuming a feed may first wait (up to its default wait) for the position to arrive.
      connectTimeoutMs: timeoutMs + (options.waitMs ?? 5000),
      ...(options.token === undefined ? {} : { token: options.token }),
    };
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
    const read: DocumentRead = { value: served.body as JsonObject, version: served.headers.get(VERSION_HEADER) ?? '' };
    return served.stale === null ? read : { ...read, stale: served.stale };
  }

  /**
   * Replaces a document. Sent to another region when this one was not
   * reached or refused it before writing; when its answer was lost, sent once
   * more to the same region (writing the same content twice there leaves the
   * same document), and then, lost again, it throws
   * {@link OutcomeUnknownError}: applied at a second region, the two copies
   * would be concurrent, and the one arriving late could undo the client's
   * later writes.
   * @returns the version covering the write
   */
  async put(collection: string, id: string, value: JsonObject, options: WriteOptions = {}): Promise<string> {
    return this.writeVersion(this.write('PUT', collection, docPath(collection, id), value, true, options));
  }

  /** Applies a JSON merge patch (RFC 7396). Retried like {@link put}: the same patch twice has one effect. */
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
   * when the connection never opened (nothing was sent), and never at the
   * same region; otherwise it throws {@link OutcomeUnknownError}.
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
    const listed = served.body as ListPage;
    return served.stale === null ? listed : { ...listed, stale: served.stale };
  }

  /**
   * The replication status of the cluster as the nearest healthy region sees
   * it (`GET /v1/sync`): its digest, and per peer the link state, round-trip
   * time and lag. Sent without the session version, so it answers even while
   * the session is stuck. Needs a token whose collections include `*`, or a
   * `status` token.
   */
  async sync(): Promise<SyncStatus> {
    const call: Call = { method: 'GET', path: '/v1/sync', collection: '', write: false, idempotent: true, replicas: 1, sessionless: true };
    const served = await this.router.execute(call);
    expectOk(served);
    return served.body as SyncStatus;
  }

  /**
   * Starts the session afresh, for a session stuck waiting for a lost region
   * (every call failing with {@link UnavailableError}, regions answering
   * `lagging`). Later calls no longer wait for the session's earlier writes.
   *
   * What the app gives up: read-your-writes for the writes the lost region
   * held alone. They are not undone: they stand at that region and replicate
   * when it returns (merged with whatever was written meanwhile, as
   * concurrent writes are), or are lost with it if its disk is. Until then,
   * reads may not show them, and a write may build on a state without them.
   *
   * @returns the session tokens dropped; pass one as
   *   {@link ClientOptions.session} (or `meridian-after`) later to wait for
   *   those writes again
   */
  resetSession(): string[] {
    return [...this.stale.clear(), ...this.session.setAside()];
  }

  /**
   * Calls `handler` with every change to a document (`id`), or to every
   * document of a collection (`id` undefined), from now on or from
   * `options.after`, local and replicated changes alike. The feed follows
   * the client's regions: when its region fails it resumes at the next one
   * from the last change seen, so no change is missed or repeated. Several
   * changes to a document in one commit may come as one.
   * @returns a function that ends the subscription
   */
  subscribe(collection: string, id: string | undefined, handler: (change: ChangeEvent) => void, options: SubscribeOptions = {}): Unsubscribe {
    if (this.closed.signal.aborted) throw new MeridianClientError('the client is closed');
    return openSubscription(this.feeds, collection, id, handler, options);
  }

  /** The region in use, each region's health and round-trip time, and the session version. */
  status(): ClientStatus {
    const table = this.regions.status();
    return {
      current: table.current, lastRegion: this.router.lastRegion, session: this.session.current, regions: table.regions,
      stale: this.stale.state,
    };
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
  const stale = options.staleAfterMs;
  if (stale !== undefined && !(Number.isFinite(stale) && stale >= 0)) throw new MeridianClientError('staleAfterMs must be 0 or more');
}
