/**
 * The history of a verification run: every operation a client invoked and
 * how it ended, and every fault the run injected and healed. Kept in memory
 * for the checker and appended to `history.jsonl` as it happens.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';

/**
 * How an operation ended. `ok`: acknowledged, it must take effect. `fail`:
 * definitely refused, it must not. `unknown`: it may or may not take effect
 * (timeouts, connection errors, 5xx without a definite meaning).
 */
export type Outcome = 'ok' | 'fail' | 'unknown';

/** What an operation asked for. Elements, tokens and values are unique per client. */
export type OpValue =
  | { kind: 'counter'; doc: string; by: number }
  | { kind: 'set'; doc: string; element: string }
  | { kind: 'patch'; doc: string; field: string; value: number }
  | { kind: 'text'; doc: string; token: string; index: number };

export type OpKind = OpValue['kind'];

/** The field of its document that each kind of operation writes (patches write per-client fields). */
export const FIELDS = { counter: 'n', set: 's', text: 't' } as const;

/** Text tokens are enclosed in braces, so a token split by a concurrent insert can still be told apart. */
export const TOKEN_OPEN = '{';
export const TOKEN_CLOSE = '}';

/** One operation: invoked by `client` at `region`, completed (or not yet) with an outcome. */
export interface OpRecord {
  id: number;
  client: string;
  region: string;
  op: OpValue;
  /** Milliseconds from the start of the workload. */
  invokeMs: number;
  completeMs?: number;
  outcome?: Outcome;
  /** HTTP status, when a response arrived. */
  status?: number;
  /** The error code of the response, or the client-side error (e.g. `timeout`, `ECONNREFUSED`). */
  error?: string;
}

/** A fault starting or ending, as the history records it. */
export interface FaultEvent {
  atMs: number;
  faultId: number;
  phase: 'start' | 'end' | 'note';
  label: string;
  detail?: string;
}

/** The response classes of the API for a plain write (no quorum or session headers). */
export function classifyResponse(status: number, errorCode: string | undefined): Outcome {
  if (status >= 200 && status < 300) return 'ok';
  // The write is durable locally even though replicas did not confirm it in time.
  if (status === 504 && errorCode === 'quorum_timeout') return 'ok';
  // `lagging` refuses a request before it writes anything.
  if (status === 503 && errorCode === 'lagging') return 'fail';
  if (status >= 400 && status < 500) return 'fail';
  return 'unknown';
}

/** Appends operations and fault events to memory and to a JSON-lines file. */
export class History {
  readonly ops: OpRecord[] = [];
  readonly faults: FaultEvent[] = [];
  private readonly out: WriteStream | null;
  private nextId = 1;

  private readonly clock: () => number;

  /** `clock` gives milliseconds since the run started; the history keeps them to a tenth. */
  constructor(path: string | null, clock: () => number) {
    this.clock = () => Math.round(clock() * 10) / 10;
    this.out = path ? createWriteStream(path, { flags: 'w' }) : null;
  }

  /** Records an invocation; complete it with {@link complete}. */
  invoke(client: string, region: string, op: OpValue): OpRecord {
    const rec: OpRecord = { id: this.nextId++, client, region, op, invokeMs: this.clock() };
    this.ops.push(rec);
    this.write({ type: 'invoke', id: rec.id, client, region, ...rec.op, at: rec.invokeMs });
    return rec;
  }

  complete(rec: OpRecord, outcome: Outcome, detail: { status?: number; error?: string } = {}): void {
    rec.completeMs = this.clock();
    rec.outcome = outcome;
    if (detail.status !== undefined) rec.status = detail.status;
    if (detail.error !== undefined) rec.error = detail.error;
    this.write({ type: outcome, id: rec.id, client: rec.client, region: rec.region, at: rec.completeMs, ...detail });
  }

  fault(faultId: number, phase: FaultEvent['phase'], label: string, detail?: string): void {
    const event: FaultEvent = { atMs: this.clock(), faultId, phase, label, ...(detail ? { detail } : {}) };
    this.faults.push(event);
    this.write({ type: `fault-${phase}`, ...event, at: event.atMs });
  }

  /** Counts of completed operations by outcome, and those still in flight. */
  counts(): Record<Outcome | 'pending', number> {
    const c = { ok: 0, fail: 0, unknown: 0, pending: 0 };
    for (const op of this.ops) c[op.outcome ?? 'pending']++;
    return c;
  }

  /** Flushes and closes the file. */
  async close(): Promise<void> {
    if (!this.out) return;
    this.out.end();
    await once(this.out, 'finish');
  }

  private write(line: Record<string, unknown>): void {
    this.out?.write(`${JSON.stringify(line)}\n`);
  }
}
