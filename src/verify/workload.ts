/**
 * The clients of a verification run. Several clients per region each write,
 * one request at a time, a seeded mix of counter increments, set adds, merge
 * patches of the client's own field and text inserts, and record every
 * request and its outcome in the history.
 */
import { classifyResponse, FIELDS, TOKEN_CLOSE, TOKEN_OPEN, type History, type OpValue, type Outcome } from './history.js';
import type { Random } from './random.js';

/** The documents the workload writes, as `collection/id` keys. */
export interface WorkloadPlan {
  counters: string[];
  sets: string[];
  registers: string[];
  texts: string[];
}

/**
 * `run` names the run in every collection (`counters.<run>`): a stack that
 * outlives one run (`--target compose`) still holds the documents of the
 * runs before, which this run's history cannot explain.
 */
export function workloadPlan(run: string): WorkloadPlan {
  const docs = (collection: string, prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${collection}.${run}/${prefix}${i}`);
  return {
    counters: docs('counters', 'c', 3),
    sets: docs('sets', 's', 2),
    registers: docs('registers', 'r', 24),
    texts: docs('texts', 't', 2),
  };
}

export function planDocs(plan: WorkloadPlan): string[] {
  return [...plan.counters, ...plan.sets, ...plan.registers, ...plan.texts];
}

export interface ClientOptions {
  /** Unique in the run, e.g. `us-east.2`; used in elements, tokens and field names. */
  name: string;
  region: string;
  /** Read before each request: a restarted container may be published on another port. */
  url: () => string;
  rng: Random;
  plan: WorkloadPlan;
  history: History;
  timeoutMs: number;
  /** Pause between requests, drawn uniformly from this range (ms). */
  thinkMs: [number, number];
}

/** A response, or the client-side error that prevented one. */
type Reply = { status: number; code?: string; body?: unknown } | { error: string };

/** One client: a loop of requests to its region, until stopped. */
export class Client {
  private seq = 0;
  private running: Promise<void> | null = null;
  private stopped = false;
  private held: Promise<void> | null = null;
  private idle: (() => void) | null = null;

  constructor(private readonly o: ClientOptions) {}

  get region(): string {
    return this.o.region;
  }

  start(): void {
    this.running ??= this.loop();
  }

  /** Stops after the request in flight; resolves once it has ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.release();
    await this.running;
  }

  /** Holds the client until `until` settles; resolves once no request of this client is in flight. */
  hold(until: Promise<void>): Promise<void> {
    const idle = new Promise<void>((resolve) => (this.idle = resolve));
    const clear = (): void => {
      this.held = null;
    };
    this.held = until.then(clear, clear);
    // A client that is not looping has nothing in flight.
    if (!this.running || this.stopped) this.release();
    return idle;
  }

  private release(): void {
    this.idle?.();
    this.idle = null;
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      if (this.held) {
        this.release();
        await this.held;
        continue;
      }
      const outcome = await this.once();
      const [lo, hi] = this.o.thinkMs;
      // Back off a little after an error, so a dead region is not hammered.
      await sleep(this.o.rng.int(lo, hi) + (outcome === 'ok' ? 0 : 100));
    }
  }

  private async once(): Promise<Outcome> {
    const { rng, plan } = this.o;
    const id = `${this.o.name}.${++this.seq}`;
    const roll = rng.next();
    if (roll < 0.25) return this.ops({ kind: 'counter', doc: rng.pick(plan.counters), by: 1 });
    if (roll < 0.5) return this.ops({ kind: 'set', doc: rng.pick(plan.sets), element: id });
    if (roll < 0.8) {
      const field = this.o.name.replace(/\./g, '_');
      return this.patch({ kind: 'patch', doc: rng.pick(plan.registers), field, value: this.seq });
    }
    const doc = rng.pick(plan.texts);
    const index = rng.chance(0.5) ? 0 : await this.textLength(doc);
    return this.ops({ kind: 'text', doc, token: id, index });
  }

  private async ops(op: Exclude<OpValue, { kind: 'patch' }>): Promise<Outcome> {
    const body = { ops: [opBody(op)] };
    return this.record(op, () => request(`${this.o.url()}/v1/docs/${op.doc}/ops`, 'POST', body, this.o.timeoutMs));
  }

  private async patch(op: Extract<OpValue, { kind: 'patch' }>): Promise<Outcome> {
    const body = { [op.field]: op.value };
    return this.record(op, () => request(`${this.o.url()}/v1/docs/${op.doc}`, 'PATCH', body, this.o.timeoutMs));
  }

  private async record(op: OpValue, send: () => Promise<Reply>): Promise<Outcome> {
    const rec = this.o.history.invoke(this.o.name, this.o.region, op);
    const reply = await send();
    const outcome = outcomeOf(reply);
    this.o.history.complete(rec, outcome, 'error' in reply ? { error: reply.error } : { status: reply.status, ...(reply.code ? { error: reply.code } : {}) });
    return outcome;
  }

  /** The text's current length at this region, so the insert lands at its end; 0 when unknown. */
  private async textLength(doc: string): Promise<number> {
    const reply = await request(`${this.o.url()}/v1/docs/${doc}`, 'GET', undefined, this.o.timeoutMs);
    if ('error' in reply || reply.status !== 200) return 0;
    const text = (reply.body as Record<string, unknown> | null)?.[FIELDS.text];
    return typeof text === 'string' ? text.length : 0;
  }
}

function opBody(op: Exclude<OpValue, { kind: 'patch' }>): Record<string, unknown> {
  switch (op.kind) {
    case 'counter':
      return { op: 'increment', path: [FIELDS.counter], by: op.by };
    case 'set':
      return { op: 'add', path: [FIELDS.set], value: op.element };
    case 'text':
      return { op: 'insertText', path: [FIELDS.text], index: op.index, text: `${TOKEN_OPEN}${op.token}${TOKEN_CLOSE}` };
  }
}

/**
 * The outcome of a reply. A refused connection is a definite failure (nothing
 * reached the region); any other transport error or a timeout is unknown.
 */
export function outcomeOf(reply: Reply): Outcome {
  if ('error' in reply) return reply.error === 'ECONNREFUSED' ? 'fail' : 'unknown';
  return classifyResponse(reply.status, reply.code);
}

/** One HTTP request with a deadline for the whole exchange, body included. */
export async function request(url: string, method: string, body: unknown, timeoutMs: number): Promise<Reply> {
  try {
    const res = await fetch(url, {
      method,
      signal: AbortSignal.timeout(timeoutMs),
      ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
    });
    const text = await res.text();
    const parsed = parseJson(text);
    const code = res.ok ? undefined : (parsed as { error?: unknown } | null)?.error;
    return { status: res.status, body: parsed, ...(typeof code === 'string' ? { code } : {}) };
  } catch (err) {
    return { error: errorName(err) };
  }
}

function parseJson(text: string): unknown {
  if (!text) return null;
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    // A non-JSON body (e.g. from a proxy) carries no error code; keep its first characters.
    return { error: `non-json: ${text.slice(0, 40)}`, cause: String(err) };
  }
}

/** `timeout`, a system error code such as `ECONNREFUSED`, or the error's name. */
export function errorName(err: unknown): string {
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) return 'timeout';
  const cause = err instanceof Error ? (err.cause as { code?: unknown } | undefined) : undefined;
  if (cause && typeof cause.code === 'string') return cause.code;
  return err instanceof Error ? err.name : String(err);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
