/**
 * Session guarantees over HTTP. `meridian-after: <version>` holds a request
 * until this region has applied that version (read-your-writes across
 * regions); `meridian-replicas: N` holds a write's acknowledgement until N
 * regions store it. `meridian-wait-ms` bounds either wait.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { MeridianError } from '../errors.js';
import type { VersionVector } from '../ids.js';
import type { Documents, WriteAck } from '../docs/types.js';
import { decodeVersion, encodeVersion } from '../docs/token.js';
import { missingByWriter } from '../vv.js';
import type { ReplicationView } from '../replication/types.js';
import type { Metrics, WriteKind } from '../metrics.js';

export const AFTER_HEADER = 'meridian-after';
export const WAIT_HEADER = 'meridian-wait-ms';
export const REPLICAS_HEADER = 'meridian-replicas';
export const VERSION_HEADER = 'meridian-version';

export interface SessionLimits {
  readonly defaultWaitMs: number;
  readonly maxWaitMs: number;
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
  /** Resolves once this region has applied the request's `meridian-after`; throws `lagging` on timeout. */
  awaitAfter(request: FastifyRequest): Promise<void>;
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
export function parseWaitMs(header: string | string[] | undefined, limits: SessionLimits): number {
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

/** The version of `meridian-after`, or null when absent; throws `invalid_token` when malformed. */
export function parseAfter(header: string | string[] | undefined): VersionVector | null {
  if (header === undefined) return null;
  if (typeof header !== 'string') throw new MeridianError('invalid_token', `${AFTER_HEADER} must appear once`);
  return decodeVersion(header);
}

export function createSession(deps: {
  documents: Documents;
  replication: ReplicationView;
  metrics: Metrics;
  limits: SessionLimits;
}): Session {
  const { documents, replication, metrics, limits } = deps;

  function writeOptions(request: FastifyRequest): WriteOptions {
    const header = request.headers[REPLICAS_HEADER];
    // status() may do real work; only a write that asks for replicas pays for it.
    const replicas = header === undefined ? 1 : parseReplicas(header, replication.status().peers.length);
    return { replicas, waitMs: parseWaitMs(request.headers[WAIT_HEADER], limits) };
  }

  async function acknowledge(reply: FastifyReply, ack: WriteAck, options: WriteOptions): Promise<WriteResponse> {
    const version = encodeVersion(ack.version);
    void reply.header(VERSION_HEADER, version);
    if (options.replicas > 1) {
      const held = await replication.waitForReplicas(ack.origin, ack.seq, options.replicas, options.waitMs);
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
    async awaitAfter(request) {
      const want = parseAfter(request.headers[AFTER_HEADER]);
      if (want === null) return;
      const waitMs = parseWaitMs(request.headers[WAIT_HEADER], limits);
      if (await replication.waitForVersion(want, waitMs)) return;
      const missing = missingByWriter(want, documents.versionVector());
      throw new MeridianError('lagging', `this region has not yet applied the requested version after ${waitMs} ms`, {
        missing,
      });
    },

    async write(request, reply, kind, run) {
      const options = writeOptions(request);
      const started = performance.now();
      const ack = await run();
      metrics.writeLatencySeconds.observe({ kind }, (performance.now() - started) / 1000);
      metrics.writes.inc({ kind });
      return acknowledge(reply, ack, options);
    },
  };
}
