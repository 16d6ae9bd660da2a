/**
 * Failover of one call across regions. The call goes to the regions in the
 * order the region table gives, carrying the session version; each answer
 * or failure is judged: served, move on (marking the region unhealthy when
 * it failed), or stop, when moving on could apply a write twice or the write
 * already stands.
 */
import {
  MeridianClientError,
  OutcomeUnknownError,
  QuorumTimeoutError,
  RequestError,
  UnavailableError,
  type FailedAttempt,
} from './errors.js';
import type { RegionEndpoint, RegionTable } from './regions.js';
import type { SessionTicket, SessionVersion } from './session.js';
import type { StalePolicy, Staleness } from './stale.js';
import { MAX_AFTER_TOKENS } from '../contract.js';
import {
  AFTER_HEADER,
  REPLICAS_HEADER,
  VERSION_HEADER,
  WAIT_HEADER,
  exchange,
  type Exchange,
  type FetchLike,
  type HttpRequest,
} from './transport.js';

/** One API call, before it is sent to a region. */
export interface Call {
  method: HttpRequest['method'];
  path: string;
  collection: string;
  body?: unknown;
  contentType?: string;
  write: boolean;
  /** Whether applying the call twice has the effect of applying it once. */
  idempotent: boolean;
  /** `meridian-replicas`; 1 asks for the serving region alone. */
  replicas: number;
  /** Sent without the session version, and its answer not folded into it (status reads). */
  sessionless?: boolean;
}

/** A region's answer to a call: 2xx, or a 4xx the caller interprets. */
export interface Served {
  region: string;
  status: number;
  body: unknown;
  headers: Headers;
  /** Non-null when the call was served without some of the session's earlier writes. */
  stale: Staleness | null;
}

export interface RouterDeps {
  regions: RegionTable;
  session: SessionVersion;
  stale: StalePolicy;
  fetch: FetchLike;
  /** Aborted when the client closes. */
  closed: AbortSignal;
  timeoutMs: number;
  waitMs: number;
  token?: string;
}

type Skip = { kind: 'skip'; reason: string };
type Verdict = { kind: 'served'; served: Served } | Skip;

/** Sends calls to the best region that serves them. */
export class Router {
  /** The region that served the last call. */
  lastRegion: string | null = null;

  constructor(private readonly d: RouterDeps) {}

  /**
   * Tries regions in order until one serves the call.
   * @throws UnavailableError when none did; OutcomeUnknownError or
   *   QuorumTimeoutError as {@link Router.judge} decides
   */
  async execute(call: Call): Promise<Served> {
    if (this.d.closed.aborted) throw new MeridianClientError('the client is closed');
    await this.d.regions.ready;
    if (call.sessionless === true) {
      return this.tryEach((region) => this.send(region, call, null).then((ex) => this.judge(region, call, ex, null)));
    }
    try {
      return await this.tryEach((region) => this.attempt(region, call));
    } catch (err) {
      const stuck = err instanceof UnavailableError && err.attempts.some((a) => a.reason === 'lagging');
      if (!stuck || !this.d.stale.stuck(Date.now())) throw err;
      // Waited long enough for a lost region: go on without the writes only it holds.
      this.d.stale.setAside(this.d.session.setAside(), Date.now());
      return this.tryEach((region) => this.attempt(region, call));
    }
  }

  /** Tries regions in order until one serves. */
  private async tryEach(attempt: (region: RegionEndpoint) => Promise<Verdict>): Promise<Served> {
    const failures: FailedAttempt[] = [];
    for (const region of this.d.regions.order()) {
      const verdict = await attempt(region);
      if (this.d.closed.aborted) throw new MeridianClientError('the client was closed during the request');
      if (verdict.kind === 'served') {
        this.lastRegion = region.name;
        return verdict.served;
      }
      failures.push({ region: region.name, reason: verdict.reason });
    }
    throw new UnavailableError(failures);
  }

  /**
   * One attempt at one region: first whether it has the tokens set aside (if
   * any), then the session's pending tokens, then the call itself.
   */
  private async attempt(region: RegionEndpoint, call: Call): Promise<Verdict> {
    const aside = this.d.stale.state === null ? null : await this.checkAside(region, call, this.d.stale.state);
    if (aside?.kind === 'skip') return aside;
    const verdict = await this.attemptSession(region, call);
    if (verdict.kind !== 'served') return verdict;
    if (aside === null) this.d.stale.served();
    return { kind: 'served', served: { ...verdict.served, stale: aside?.stale ?? null } };
  }

  /**
   * Asks `region`, without waiting, whether it has applied the tokens set
   * aside. When it has, they rejoin the session (as pending, so the call
   * covers them) and the call is whole; otherwise the call is served stale.
   */
  private async checkAside(
    region: RegionEndpoint,
    call: Call,
    aside: Staleness,
  ): Promise<Skip | { kind: 'checked'; stale: Staleness | null }> {
    for (const token of aside.behind) {
      const ex = await this.send(region, foldCall(call.collection), token, 0);
      const missing = laggingMissing(ex);
      if (missing !== null) return { kind: 'checked', stale: { ...aside, missing } };
      const verdict = this.judge(region, foldCall(call.collection), ex, null);
      if (verdict.kind === 'skip') return verdict;
      expectOk(verdict.served);
    }
    this.d.session.restore(this.d.stale.caughtUp());
    return { kind: 'checked', stale: null };
  }

  /**
   * The call with the session: the session's token and its pending ones,
   * listed in the call's `meridian-after`, so that one request waits for all
   * of them. A region that refuses the list (a token in it malformed) is
   * shown each pending token first, then the call; a token it refuses as
   * malformed is dropped from the session (a region refuses it before it
   * does anything), and the call goes on without it.
   */
  private async attemptSession(region: RegionEndpoint, call: Call): Promise<Verdict> {
    const ticket = this.d.session.begin();
    const listed = [...(ticket.after === null ? [] : [ticket.after]), ...ticket.pending].join(', ');
    if (ticket.pending.length > 0 && ticket.pending.length < MAX_AFTER_TOKENS && listed.length <= MAX_LISTED_AFTER_CHARS) {
      const verdict = this.judge(region, call, await this.sendCall(region, call, listed), ticket);
      if (verdict.kind !== 'served' || !(refusesToken(verdict.served) || verdict.served.status === 431)) return verdict;
    }
    for (const token of ticket.pending) {
      const fold = foldCall(call.collection);
      const verdict = this.judge(region, fold, await this.send(region, fold, token), null);
      if (verdict.kind === 'skip') return verdict;
      if (refusesToken(verdict.served)) {
        this.d.session.drop(token);
        continue;
      }
      expectOk(verdict.served);
    }
    const verdict = this.judge(region, call, await this.sendCall(region, call, ticket.after), ticket);
    if (verdict.kind === 'served' && ticket.after !== null && refusesToken(verdict.served)) {
      this.d.session.drop(ticket.after);
      return this.attemptSession(region, call);
    }
    return verdict;
  }

  /**
   * Sends `call` to `region`, and an idempotent write whose answer was lost
   * once more to the same region: applied twice there, the second copy
   * follows the first. Sent to another region, the two copies would be
   * concurrent, and the first, reaching the others later, could win over
   * what the client wrote after it (see {@link judge}).
   */
  private async sendCall(region: RegionEndpoint, call: Call, after: string | null): Promise<Exchange> {
    const ex = await this.send(region, call, after);
    if (ex.kind !== 'lost' || !call.write || !call.idempotent || this.d.closed.aborted) return ex;
    const again = await this.send(region, call, after);
    if (again.kind === 'answer' && again.status !== 429 && again.status !== 503) return again;
    // Refused or unreached the second time, the first copy may still stand here: lost all the same, never sent elsewhere.
    const then = again.kind === 'answer' ? `http ${again.status}` : again.reason;
    return { kind: 'lost', reason: `${ex.reason}, then ${then} when sent again`, error: again.kind === 'answer' ? ex.error : again.error };
  }

  private send(region: RegionEndpoint, call: Call, after: string | null, waitMs = this.d.waitMs): Promise<Exchange> {
    const headers: Record<string, string> = { [WAIT_HEADER]: String(waitMs) };
    if (this.d.token !== undefined) headers['authorization'] = `Bearer ${this.d.token}`;
    if (after !== null) headers[AFTER_HEADER] = after;
    if (call.replicas > 1) headers[REPLICAS_HEADER] = String(call.replicas);
    // A region may hold the request for each wait it was asked to do before it answers.
    const waits = (after === null ? 0 : 1) + (call.replicas > 1 ? 1 : 0);
    const request: HttpRequest = {
      method: call.method, path: call.path, headers, timeoutMs: this.d.timeoutMs + waits * waitMs,
      ...(call.body === undefined ? {} : { body: call.body }),
      ...(call.contentType === undefined ? {} : { contentType: call.contentType }),
    };
    return exchange(this.d.fetch, region.url, request, this.d.closed);
  }

  /**
   * What an exchange means. Unreached, failed or refusing regions are skipped
   * (all but `lagging` and `overloaded` are marked unhealthy). A write, or
   * a call that is not idempotent, stops with {@link OutcomeUnknownError}
   * when the region may have applied it: a write applied at two regions is
   * two concurrent writes, and the copy that arrives late can undo the
   * client's later writes (a set's element removed since added back, a
   * field set since gone: the two copies made two maps where it was set). A
   * write whose quorum timed out stops with {@link QuorumTimeoutError},
   * since it stands and must not be repeated.
   */
  private judge(region: RegionEndpoint, call: Call, ex: Exchange, ticket: SessionTicket | null): Verdict {
    if (ex.kind !== 'answer') {
      this.d.regions.markDown(region.name, ex.reason);
      if (ex.kind === 'lost' && (call.write || !call.idempotent)) throw new OutcomeUnknownError(region.name, ex.reason, { cause: ex.error });
      return { kind: 'skip', reason: ex.reason };
    }
    const served: Served = { region: region.name, status: ex.status, body: ex.body, headers: ex.headers, stale: null };
    const code = errorCode(ex.body);
    if (ex.status < 500 && ex.status !== 429) {
      this.d.regions.served(region.name);
      if (ticket !== null && ex.status < 300) this.observe(ticket, call, served);
      return { kind: 'served', served };
    }
    if (ex.status === 429) return { kind: 'skip', reason: 'overloaded' };
    if (ex.status === 503 && code === 'lagging') return { kind: 'skip', reason: 'lagging' };
    const version = (ex.body as { version?: unknown } | null)?.version;
    if (ex.status === 504 && code === 'quorum_timeout' && ticket !== null && typeof version === 'string') {
      this.d.session.observe(ticket, version, true);
      throw new QuorumTimeoutError(region.name, version, call.replicas);
    }
    const reason = `http ${ex.status} ${code ?? ''}`.trim();
    this.d.regions.markDown(region.name, reason);
    // `unavailable` is refused before anything is written; any other failure may have come after.
    if ((call.write || !call.idempotent) && code !== 'unavailable') throw new OutcomeUnknownError(region.name, reason);
    return { kind: 'skip', reason };
  }

  private observe(ticket: SessionTicket, call: Call, served: Served): void {
    const version = call.write
      ? (served.body as { version?: unknown } | null)?.version
      : served.headers.get(VERSION_HEADER);
    if (typeof version === 'string' && version !== '') this.d.session.observe(ticket, version, call.write);
  }
}

/**
 * Longest list of tokens sent in one `meridian-after`: servers refuse
 * requests whose headers pass 16 KiB in all (Node's default), and each token
 * grows with the cluster's writers; beyond, they are shown one at a time.
 */
const MAX_LISTED_AFTER_CHARS = 8 * 1024;

/** A request carrying a token proves the region has applied it; a one-id list is the cheapest. */
function foldCall(collection: string): Call {
  return {
    method: 'GET', path: `/v1/docs/${encodeURIComponent(collection)}?limit=1`,
    collection, write: false, idempotent: true, replicas: 1,
  };
}

/** The `missing` of a `lagging` answer (empty when it has none); null for any other exchange. */
function laggingMissing(ex: Exchange): Record<string, number> | null {
  if (ex.kind !== 'answer' || ex.status !== 503 || errorCode(ex.body) !== 'lagging') return null;
  const missing = (ex.body as { missing?: unknown }).missing;
  if (typeof missing !== 'object' || missing === null) return {};
  return Object.fromEntries(Object.entries(missing).filter((e): e is [string, number] => typeof e[1] === 'number'));
}

/** A region's refusal of the `meridian-after` token a request carried. */
function refusesToken(served: Served): boolean {
  return served.status === 400 && errorCode(served.body) === 'invalid_token';
}

function errorCode(body: unknown): string | null {
  const code = typeof body === 'object' && body !== null ? (body as { error?: unknown }).error : undefined;
  return typeof code === 'string' ? code : null;
}

/** Throws a region's error answer as a {@link RequestError}. */
export function expectOk(served: Served): void {
  if (served.status >= 200 && served.status < 300) return;
  const body = typeof served.body === 'object' && served.body !== null ? (served.body as Record<string, unknown>) : {};
  const { error: _error, message, ...details } = body;
  const text = typeof message === 'string' ? message : typeof served.body === 'string' ? served.body : '';
  throw new RequestError(served.region, served.status, errorCode(served.body) ?? `http_${served.status}`, text, details);
}

/** The `version` of a write's answer; throws its error otherwise. */
export function versionOf(served: Served): string {
  expectOk(served);
  const version = (served.body as { version?: unknown } | null)?.version;
  if (typeof version !== 'string') throw new MeridianClientError(`${served.region}: the write answer carries no version`);
  return version;
}
