/**
 * What the fuzzer holds a region to, independent of how an input was made:
 * answers are 2xx or a documented refusal, a refusal changes nothing, text
 * is never corrupted, and the counts the campaign summary prints.
 */
import { ERRORS, type ErrorCode } from '../../src/errors.js';
import { isWellFormed } from '../../src/crdt/json.js';
import type { FuzzResponse, FuzzTarget } from './fuzz-target.js';

/** 5xx answers that are documented waits, not faults of the node. */
const DOCUMENTED_5XX: ReadonlySet<string> = new Set(['lagging', 'unavailable', 'quorum_timeout']);

/** The error code of a refusal, or null when the body is not a Meridian error. */
export function errorCodeOf(res: FuzzResponse): string | null {
  try {
    const body: unknown = JSON.parse(res.body.toString('utf8'));
    if (typeof body === 'object' && body !== null && typeof (body as { error?: unknown }).error === 'string') {
      return (body as { error: string }).error;
    }
  } catch {
    return null;
  }
  return null;
}

/**
 * Null when `res` is 2xx or a refusal the catalogue of src/errors.ts
 * documents (its code, with that code's status; 5xx only for the waits
 * 503/504); otherwise what is wrong with it.
 */
export function undocumentedAnswer(res: FuzzResponse): string | null {
  if (res.status >= 200 && res.status < 300) return null;
  const code = errorCodeOf(res);
  if (code === null || !Object.hasOwn(ERRORS, code)) {
    return `status ${res.status} without a documented error code: ${res.body.toString('utf8').slice(0, 200)}`;
  }
  const status = ERRORS[code as ErrorCode];
  if (status !== res.status) return `code ${code} came with status ${res.status}, documented ${status}`;
  if (status >= 500 && !DOCUMENTED_5XX.has(code)) return `node fault ${res.status} ${code}`;
  return null;
}

/** A document's state as readers see it: the Yjs state (bytes) and the JSON read. */
export interface DocSnapshot {
  yjsStatus: number;
  yjs: Buffer;
  jsonStatus: number;
  json: string;
}

/** Reads one document both ways; `headers` carries a token where the region wants one. */
export async function snapshotDoc(target: FuzzTarget, doc: DocRef, headers: Record<string, string> = {}): Promise<DocSnapshot> {
  const base = `/v1/docs/${doc.collection}/${doc.id}`;
  const yjs = await target.send({ method: 'GET', path: `${base}/yjs`, headers });
  const json = await target.send({ method: 'GET', path: base, headers });
  return { yjsStatus: yjs.status, yjs: yjs.body, jsonStatus: json.status, json: json.body.toString('utf8') };
}

/** What changed between two snapshots, or null. */
export function snapshotChange(before: DocSnapshot, after: DocSnapshot): string | null {
  if (before.jsonStatus !== after.jsonStatus || before.json !== after.json) {
    return `JSON read changed: ${before.jsonStatus} ${before.json.slice(0, 120)} -> ${after.jsonStatus} ${after.json.slice(0, 120)}`;
  }
  if (before.yjsStatus !== after.yjsStatus || !before.yjs.equals(after.yjs)) {
    return `Yjs state changed (${before.yjs.length} -> ${after.yjs.length} bytes)`;
  }
  return null;
}

export interface DocRef {
  collection: string;
  id: string;
}

/** Strings holding a lone surrogate or U+FFFD, anywhere in a JSON value (keys included). */
export function corruptStrings(value: unknown, found: string[] = []): string[] {
  if (typeof value === 'string') {
    if (!isWellFormed(value) || value.includes('\uFFFD')) found.push(value);
  } else if (Array.isArray(value)) {
    for (const v of value) corruptStrings(v, found);
  } else if (typeof value === 'object' && value !== null) {
    for (const [k, v] of Object.entries(value)) {
      corruptStrings(k, found);
      corruptStrings(v, found);
    }
  }
  return found;
}

/** Counts for the campaign summary: cases per input kind, refusals by code, slowest /healthz, failures. */
export class FuzzStats {
  readonly cases = new Map<string, number>();
  readonly answers = new Map<string, number>();
  readonly failures: { kind: string; seed: number; detail: string }[] = [];
  maxHealthMs = 0;

  countCase(kind: string): void {
    this.cases.set(kind, (this.cases.get(kind) ?? 0) + 1);
  }

  /** Counts one answer as `2xx` or `<status> <code>`. */
  countAnswer(res: FuzzResponse): void {
    const key = res.status >= 200 && res.status < 300 ? '2xx' : `${res.status} ${errorCodeOf(res) ?? '(no code)'}`;
    this.answers.set(key, (this.answers.get(key) ?? 0) + 1);
  }

  /** Counts an outcome that is not an HTTP answer (a frame closing a link, ...). */
  countOutcome(what: string): void {
    this.answers.set(what, (this.answers.get(what) ?? 0) + 1);
  }

  healthMs(ms: number): void {
    this.maxHealthMs = Math.max(this.maxHealthMs, ms);
  }

  format(): string {
    const lines = ['cases per input kind:'];
    for (const [k, n] of [...this.cases].sort()) lines.push(`  ${k.padEnd(24)} ${n}`);
    lines.push('answers and refusals:');
    for (const [k, n] of [...this.answers].sort()) lines.push(`  ${k.padEnd(40)} ${n}`);
    lines.push(`max /healthz latency: ${this.maxHealthMs.toFixed(1)} ms`);
    lines.push(`failures: ${this.failures.length}`);
    for (const f of this.failures) lines.push(`  [${f.kind}] seed ${f.seed}: ${f.detail.split('\n').slice(0, 12).join('\n    ')}`);
    return lines.join('\n');
  }
}

/** Thrown by a fuzz case that broke a property; the message lists every violation. */
export class PropertyViolation extends Error {
  constructor(readonly violations: string[]) {
    super(violations.join('\n'));
    this.name = 'PropertyViolation';
  }
}

/** Throws a {@link PropertyViolation} when `violations` is not empty. */
export function assertNone(violations: string[]): void {
  if (violations.length > 0) throw new PropertyViolation(violations);
}
