/**
 * Per-token write quotas: a write rate (token bucket; 429 `too_many_requests`
 * with `retry-after`) and a number of documents the token may create (403
 * `quota_exceeded`). Both are off unless the token's `quota` sets them, and
 * apply only when tokens are configured.
 *
 * Where the counts live: in this region's memory, since it started. Each
 * region counts the writes it takes itself (a token may write up to its rate
 * at every region it reaches), and a restart begins a new count; replicated
 * writes are never counted or refused, since refusing them would split the
 * regions. A document counts once it exists after a write of this token that
 * found it absent; deleting it does not give the count back.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { MeridianError } from '../errors.js';
import type { DocKey } from '../ids.js';
import type { Documents } from '../docs/types.js';
import { requirementOf, type Principal, type Principals } from './auth.js';
import type { Refusals } from './refusals.js';
import { docOf, type DocParams } from './schemas.js';
import { createTokenBucket, type TokenBucket } from '../token-bucket.js';

/** Called once a write ends, committed or not: the document counts if it now exists. */
export type SettleCreation = () => void;

export interface Quotas {
  /** Charges one write to the caller's rate; throws `too_many_requests` beyond it. */
  chargeWrite(request: FastifyRequest): void;
  /**
   * Before a write that may create a document: reserves the creation, or
   * throws `quota_exceeded` when the token has created its last one.
   */
  reserveCreation(request: FastifyRequest): SettleCreation;
}

/**
 * The write-rate buckets of every token, one per token: shared by the HTTP
 * API and live connections, so a token writes at its rate whichever way it
 * writes.
 */
export interface WriteRates {
  /** Takes one write from the token's rate: 0 when taken (or it has none), else the seconds until one is there. */
  take(principal: Principal): number;
}

/** Write-rate buckets, made on a token's first write; `now` is a monotonic clock in ms. */
export function createWriteRates(now: () => number = () => performance.now()): WriteRates {
  const buckets = new Map<number, TokenBucket>();
  return {
    take(principal) {
      const rate = principal.quota?.writesPerSecond ?? null;
      if (rate === null) return 0;
      let bucket = buckets.get(principal.id);
      if (bucket === undefined) {
        bucket = createTokenBucket(rate, principal.quota?.writeBurst ?? 1, now);
        buckets.set(principal.id, bucket);
      }
      return bucket.take();
    },
  };
}

/**
 * The documents each token has created, and those its writes in flight may
 * create: shared by the HTTP API and live connections, so that a token's
 * `quota.maxDocuments` holds whichever way it writes.
 */
export interface DocumentCreations {
  /**
   * Before a write by `principal` that may create `doc`: reserves the
   * creation and returns what to call once the write ends; null when the
   * token has created its last document.
   */
  reserve(principal: Principal, doc: DocKey): SettleCreation | null;
}

/** Creation counts, made on a token's first write that may create a document. */
export function createDocumentCreations(documents: Pick<Documents, 'hasState'>): DocumentCreations {
  const creations = new Map<number, Creations>();
  return {
    reserve(principal, doc) {
      const max = principal.quota?.maxDocuments ?? null;
      if (max === null) return NOTHING;
      let c = creations.get(principal.id);
      if (c === undefined) {
        c = { created: new Set(), pending: new Map() };
        creations.set(principal.id, c);
      }
      const mine = c;
      if (mine.created.has(doc) || documents.hasState(doc)) return NOTHING;
      if (mine.created.size + mine.pending.size >= max && !mine.pending.has(doc)) return null;
      mine.pending.set(doc, (mine.pending.get(doc) ?? 0) + 1);
      return () => {
        const left = (mine.pending.get(doc) ?? 1) - 1;
        if (left > 0) mine.pending.set(doc, left);
        else mine.pending.delete(doc);
        if (documents.hasState(doc)) mine.created.add(doc);
      };
    },
  };
}

/** The error a write gets when its token has created its last document. */
export function documentQuotaExceeded(principal: Principal): MeridianError {
  const max = principal.quota?.maxDocuments ?? 0;
  return new MeridianError('quota_exceeded', `this token may create ${max} documents and has created them`);
}

export interface QuotaDeps {
  principals: Principals;
  /** The write rates to charge; shared with live connections (see {@link WriteRates}). */
  rates?: WriteRates;
  /** The creation counts; shared with live connections (see {@link DocumentCreations}). */
  creations?: DocumentCreations;
  documents: Pick<Documents, 'hasState'>;
  refusals: Refusals;
  /** A monotonic clock in ms. */
  now?: () => number;
}

/** Documents a token has created, and those its writes in flight may create. */
interface Creations {
  created: Set<DocKey>;
  pending: Map<DocKey, number>;
}

const NOTHING: SettleCreation = () => undefined;

export function createQuotas(deps: QuotaDeps): Quotas {
  const rates = deps.rates ?? createWriteRates(deps.now);
  const creations = deps.creations ?? createDocumentCreations(deps.documents);

  return {
    chargeWrite(request) {
      const principal = deps.principals.principalOf(request);
      if (principal === null) return;
      const wait = rates.take(principal);
      if (wait === 0) return;
      const rate = principal.quota?.writesPerSecond ?? 0;
      deps.refusals.record(request, 'write_rate', wait);
      throw new MeridianError('too_many_requests', `this token may write ${rate} times a second; retry later`);
    },

    reserveCreation(request) {
      const principal = deps.principals.principalOf(request);
      const params = request.params as Partial<DocParams> | undefined;
      if (principal === null || params?.collection === undefined || params.id === undefined) return NOTHING;
      const settle = creations.reserve(principal, docOf(params as DocParams));
      if (settle !== null) return settle;
      deps.refusals.record(request, 'document_quota');
      throw documentQuotaExceeded(principal);
    },
  };
}

/** Charges every write request of `app` to its token's rate, before the body is read. */
export function installWriteRate(app: FastifyInstance, quotas: Quotas): void {
  app.addHook('onRequest', async (request) => {
    if (requirementOf(request, false)?.access === 'write') quotas.chargeWrite(request);
  });
}
