/**
 * Session guarantees over HTTP. `meridian-after: <version>` holds a request
 * until this region has applied that version (read-your-writes across
 * regions); `meridian-replicas: N` holds a write's acknowledgement until N
 * regions store it. `meridian-wait-ms` bounds either wait.
 *
 * A wait holds memory until it ends, so waits are bounded: one ends as soon
 * as its client disconnects, and at most `maxWaiters` run at once (beyond
 * that a request is refused with 503 `unavailable` and `retry-after`). A
 * write waits with its parsed body: the bodies of waiting requests are
 * bounded too ({@link waitingBodyBytes}), and a write is checked for what
 * refuses it alone (a route's `checkBeforeWait`) before it waits.
 */
import type { Socket } from 'node:net';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { MeridianError } from '../errors.js';
import type { VersionVector } from '../ids.js';
import type { Documents, WriteAck } from '../docs/types.js';
import { decodeVersion, encodeVersion, refuseUnheldWriters } from '../docs/token.js';
import { covers, merged, missingByWriter } from '../vv.js';
import type { ReplicationView } from '../replication/types.js';
import type { Metrics, WriteKind } from '../metrics.js';
import type { Quotas } from './quotas.js';
import type { Refusals } from './refusals.js';
import { CallerSlots } from './caller-slots.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * Refuses the request for what its body alone refuses it for (a write's
     * node budget), before it waits for `meridian-after`: 349,000 nodes of a
     * 1 MiB body take 21 MB of heap parsed, held for the whole wait, and
     * would be refused after it.
     */
    checkBeforeWait?: (request: FastifyRequest) => void;
  }
}

import { AFTER_HEADER, MAX_AFTER_TOKENS, REPLICAS_HEADER, VERSION_HEADER, WAIT_HEADER } from '../contract.js';

// The header names are part of the wire contract; routes import them from here too.
export { AFTER_HEADER, REPLICAS_HEADER, VERSION_HEADER, WAIT_HEADER };

export interface SessionLimits {
  readonly defaultWaitMs: number;
  readonly maxWaitMs: number;
  /** Requests that may wait at once. */
  readonly maxWaiters: number;
  /** Largest request body, bytes. */
  readonly bodyBytes: number;
}

/**
 * Most bytes of request bodies held by waiting requests, in all: 64 MiB, or
 * four of the largest bodies. A caller holds at most a quarter of them.
 */
export function waitingBodyBytes(limits: Pick<SessionLimits, 'bodyBytes'>): number {
  return Math.max(64 * 1024 * 1024, 4 * limits.bodyBytes);
}

/** How a write asks to be acknowledged. */
interface WriteOptions {
  /** Regions (this one included) that must hold the write; 1 means this region alone. */
  replicas: number;
  waitMs: number;
}

/** The body of an acknowledged write. */
export interface WriteResponse {
  version: string;
}

export interface Session {
  /**
   * Resolves once this region has applied the request's `meridian-after`;
   * throws `lagging` on timeout or when the client went away, `unavailable`
   * when too many requests wait already.
   */
  awaitAfter(request: FastifyRequest, reply: FastifyReply): Promise<void>;
  /** Requests waiting now. */
  waiting(): number;
  /** Ends every wait now (they answer as timed out): the node is closing and should not wait out a minute. */
  endWaits(): void;
  /**
   * Runs one local write: checks its headers first (so a bad header writes
   * nothing), times and counts the commit, sets `meridian-version`, then waits
   * for replicas if asked. Throws `quorum_timeout` when the replicas do not
   * confirm in time.
   */
  write(
    request: FastifyRequest,
    reply: FastifyReply,
    kind: LocalWriteKind,
    run: () => Promise<WriteAck>,
  ): Promise<WriteResponse>;
}

/** The kinds of writes clients make through the API. */
export type LocalWriteKind = Exclude<WriteKind, 'remote'>;

/** The number of milliseconds a request may wait, from `meridian-wait-ms`. */
export function parseWaitMs(header: string | string[] | undefined, limits: Pick<SessionLimits, 'defaultWaitMs' | 'maxWaitMs'>): number {
  if (header === undefined) return Math.min(limits.defaultWaitMs, limits.maxWaitMs);
  if (typeof header !== 'string' || !/^\d{1,10}$/.test(header)) {
    throw new MeridianError('bad_request', `${WAIT_HEADER} must be a whole number of milliseconds`);
  }
  return Math.min(Number(header), limits.maxWaitMs);
}

/** The replica count of `meridian-replicas`, 1 when absent; `peers` is the number of peer regions. */
export function parseReplicas(header: string | string[] | undefined, peers: number): number {
  if (header === undefined) return 1;
  const n = typeof header === 'string' && /^\d{1,4}$/.test(header) ? Number(header) : NaN;
  if (!(n >= 1 && n <= peers + 1)) {
    throw new MeridianError('bad_request', `${REPLICAS_HEADER} must be a whole number from 1 to ${peers + 1}`);
  }
  return n;
}

/**
 * The version of `meridian-after` (one token, or several separated by
 * commas: their union), or null when absent; throws `invalid_token` when
 * malformed.
 */
export function parseAfter(header: string | string[] | undefined): VersionVector | null {
  if (header === undefined) return null;
  if (typeof header !== 'string') throw new MeridianError('invalid_token', `${AFTER_HEADER} must appear once`);
  if (!header.includes(',')) return decodeVersion(header);
  const tokens = header.split(',').map((t) => t.trim());
  if (tokens.length > MAX_AFTER_TOKENS) throw new MeridianError('invalid_token', `${AFTER_HEADER} lists at most ${MAX_AFTER_TOKENS} tokens`);
  return tokens.reduce<VersionVector>((union, token) => merged(union, decodeVersion(token)), new Map());
}

/**
 * What a region must hold to hold a write: its entry; or, for a write that
 * changed nothing and wrote none, everything its region had applied, since
 * what it found there may have come from any writer.
 */
function heldBy(ack: WriteAck): VersionVector {
  return ack.seq > 0 ? new Map([[ack.origin, ack.seq]]) : ack.version;
}

/** What a wait runs: resolves true when reached, false on timeout or abort. */
type Wait = (signal: AbortSignal) => Promise<boolean>;

/** Seconds a request refused for too many waiters is told to wait. */
const WAITERS_RETRY_AFTER_S = 1;
/** One caller may hold at most a quarter of `limits.maxWaiters`. */
const WAITERS_SHARE = 4;

export function createSession(deps: {
  documents: Documents;
  replication: ReplicationView;
  metrics: Metrics;
  limits: SessionLimits;
  refusals?: Refusals;
  quotas?: Quotas;
  /** Who a request comes from, as per-caller limits count it; without it waits are counted in all only. */
  callerOf?: (request: FastifyRequest) => string;
}): Session {
  const { documents, replication, metrics, limits } = deps;
  let waiting = 0;
  const active = new Set<AbortController>();
  // Change feeds are not counted against the concurrency cap (they have their own bound), so
  // without a share per caller one token could hold every wait with feeds that never start.
  const callers = new CallerSlots(Math.max(1, Math.floor(limits.maxWaiters / WAITERS_SHARE)));
  const maxBodyBytes = waitingBodyBytes(limits);
  const callerBodies = new CallerSlots(Math.floor(maxBodyBytes / WAITERS_SHARE));
  let bodyBytes = 0;

  /** Bytes of the body `request` holds: its length, or the largest allowed when it came in chunks. */
  function bodyBytesOf(request: FastifyRequest): number {
    const length = Number(request.headers['content-length']);
    if (Number.isSafeInteger(length) && length >= 0) return length;
    return request.headers['transfer-encoding'] === undefined ? 0 : limits.bodyBytes;
  }

  /** Takes one of the `maxWaiters` slots, or throws (`unavailable` in all, `too_many_requests` per caller); returns its release. */
  function reserveWait(request: FastifyRequest): () => void {
    const bytes = bodyBytesOf(request);
    if (waiting >= limits.maxWaiters || bodyBytes + bytes > maxBodyBytes) {
      deps.refusals?.record(request, 'waiters', WAITERS_RETRY_AFTER_S);
      const what = waiting >= limits.maxWaiters ? `${limits.maxWaiters} requests are` : `requests holding ${bodyBytes} bytes of bodies are`;
      throw new MeridianError('unavailable', `${what} waiting already; retry shortly`);
    }
    const caller = deps.callerOf?.(request);
    if (caller !== undefined && (callers.full(caller) || callerBodies.full(caller, bytes))) {
      deps.refusals?.record(request, 'caller_waiters', WAITERS_RETRY_AFTER_S);
      const what = callers.full(caller)
        ? `${callers.max} requests waiting for a version or for replicas already (a quarter of limits.maxWaiters)`
        : `requests holding ${callerBodies.heldBy(caller)} bytes of bodies waiting for a version or for replicas already (a quarter of the ${maxBodyBytes} a region lets wait)`;
      throw new MeridianError('too_many_requests', `this caller has ${what}; retry once some are answered`);
    }
    const releaseCaller = caller === undefined ? null : callers.hold(caller);
    const releaseBody = caller === undefined || bytes === 0 ? null : callerBodies.hold(caller, bytes);
    waiting += 1;
    bodyBytes += bytes;
    metrics.waitingRequests.set(waiting);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      releaseCaller?.();
      releaseBody?.();
      waiting -= 1;
      bodyBytes -= bytes;
      metrics.waitingRequests.set(waiting);
    };
  }

  /** Runs one wait, ending it when the client disconnects or the node closes. */
  async function untilDisconnected(request: FastifyRequest, reply: FastifyReply, wait: Wait): Promise<boolean> {
    const disconnected = new AbortController();
    const abort = (): void => disconnected.abort();
    // 'close' before the response is sent means the client went away.
    reply.raw.once('close', abort);
    if (request.raw.socket?.destroyed === true) abort();
    // The socket's idle timeout (limits.connectionTimeoutMs) closed waits as
    // long as it unanswered, a write's outcome unknown to its client: off
    // while it waits (a wait has its own bound), on again once it ends.
    // (Requests injected in process have a socket without timeouts.)
    const socket: Partial<Pick<Socket, 'setTimeout'>> | undefined = request.raw.socket;
    socket?.setTimeout?.(0);
    active.add(disconnected);
    try {
      return await wait(disconnected.signal);
    } finally {
      active.delete(disconnected);
      reply.raw.off('close', abort);
      // Again from now: a client that never reads the answer must not hold its socket (and its request's slot) for good.
      socket?.setTimeout?.(request.server.server.timeout);
    }
  }

  /** Commits one write through `run`, settling the creation quota whatever happens. */
  async function commit(request: FastifyRequest, kind: LocalWriteKind, run: () => Promise<WriteAck>): Promise<WriteAck> {
    const settle = kind === 'delete' ? null : (deps.quotas?.reserveCreation(request) ?? null);
    const started = performance.now();
    let ack: WriteAck;
    try {
      ack = await run();
    } finally {
      // Whether it threw or not, the quota looks at the document itself.
      settle?.();
    }
    metrics.writeLatencySeconds.observe({ kind }, (performance.now() - started) / 1000);
    metrics.writes.inc({ kind });
    return ack;
  }

  async function writeOptions(request: FastifyRequest): Promise<WriteOptions> {
    const header = request.headers[REPLICAS_HEADER];
    const replicas = header === undefined ? 1 : parseReplicas(header, replication.peerStatuses().length);
    return { replicas, waitMs: parseWaitMs(request.headers[WAIT_HEADER], limits) };
  }

  async function acknowledge(
    request: FastifyRequest,
    reply: FastifyReply,
    ack: WriteAck,
    options: WriteOptions,
  ): Promise<WriteResponse> {
    const version = encodeVersion(ack.version);
    void reply.header(VERSION_HEADER, version);
    if (options.replicas > 1) {
      const held = await untilDisconnected(request, reply, (signal) =>
        replication.waitForReplicas(heldBy(ack), options.replicas, options.waitMs, signal),
      );
      if (!held) {
        throw new MeridianError(
          'quorum_timeout',
          `${options.replicas} regions did not confirm the write within ${options.waitMs} ms; ` +
            'the write stands locally and will replicate',
          { version },
        );
      }
    }
    return { version };
  }

  return {
    async awaitAfter(request, reply) {
      const want = parseAfter(request.headers[AFTER_HEADER]);
      if (want === null) return;
      const held = documents.versionVector();
      refuseUnheldWriters(want, held);
      const waitMs = parseWaitMs(request.headers[WAIT_HEADER], limits);
      if (covers(held, want)) return;
      request.routeOptions.config.checkBeforeWait?.(request);
      const release = reserveWait(request);
      try {
        if (await untilDisconnected(request, reply, (signal) => replication.waitForVersion(want, waitMs, signal))) return;
      } finally {
        release();
      }
      const missing = missingByWriter(want, documents.versionVector());
      throw new MeridianError('lagging', `this region has not yet applied the requested version after ${waitMs} ms`, {
        missing,
      });
    },

    waiting: () => waiting,

    endWaits() {
      for (const controller of active) controller.abort();
    },

    async write(request, reply, kind, run) {
      const options = await writeOptions(request);
      // A write that will wait for replicas takes its slot first: refused, it must not have been stored.
      const release = options.replicas > 1 ? reserveWait(request) : null;
      try {
        const ack = await commit(request, kind, run);
        return await acknowledge(request, reply, ack, options);
      } finally {
        release?.();
      }
    },
  };
}
