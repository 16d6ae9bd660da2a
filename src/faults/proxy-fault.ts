/**
 * The faults a {@link FaultProxy} can inject, their validation and the
 * outage simulator's text syntax for them. Pure: no sockets, no timers.
 */
import { MeridianError } from '../errors.js';

/**
 * Which bytes a fault affects. `upstream` is client -> server (bytes the proxy
 * reads from the accepted connection and writes to the upstream host);
 * `downstream` is server -> client. Omitted means `both`.
 */
export type FaultDirection = 'both' | 'upstream' | 'downstream';

/** One byte stream of a proxied connection. */
export type StreamDirection = Exclude<FaultDirection, 'both'>;

/**
 * What the proxy does to the link. One fault at a time; a new one replaces the
 * old and applies at once to open and future connections. Latency, loss and a
 * bandwidth limit together, as a WAN shows them, are one `wan` fault.
 */
export type Fault =
  /** Normal forwarding. Healing from a stall releases the held bytes; bytes a blackhole took are gone. */
  | { kind: 'none' }
  /** Every open connection is reset (RST); new ones are accepted and reset at once. */
  | { kind: 'down' }
  /**
   * Connections open and stay open, but every byte in `direction` is
   * discarded; a FIN is held back until the fault changes. Only an
   * application heartbeat can tell this from a quiet peer.
   */
  | { kind: 'blackhole'; direction?: FaultDirection }
  /** The proxy stops reading in `direction`, so the sender's kernel and user-space buffers fill. */
  | { kind: 'stall'; direction?: FaultDirection }
  /** Each chunk is held `ms` ± `jitterMs`; bytes never overtake each other. */
  | { kind: 'latency'; ms: number; jitterMs?: number; direction?: FaultDirection }
  /** At most `bytesPerSecond` are forwarded per second. */
  | { kind: 'bandwidth'; bytesPerSecond: number; direction?: FaultDirection }
  /**
   * Packet loss as TCP shows it: a relayed stream cannot lose bytes, so each
   * chunk is, with probability `percent`/100, held for a retransmission
   * timeout ({@link retransmitTimeoutMs}) instead; later bytes wait behind it.
   */
  | { kind: 'loss'; percent: number; direction?: FaultDirection }
  /** Latency with jitter, loss and a bandwidth limit at once (each optional). */
  | { kind: 'wan'; latencyMs: number; jitterMs?: number; lossPercent?: number; bytesPerSecond?: number; direction?: FaultDirection }
  /** Bytes are forwarded in random pieces of 1..`maxBytes`, `delayMs` apart. */
  | { kind: 'slicer'; maxBytes: number; delayMs?: number; direction?: FaultDirection };

export type FaultKind = Fault['kind'];

/** The delay, loss and rate limit a latency, loss, bandwidth or wan fault puts on a stream. */
export interface WanShape {
  latencyMs: number;
  jitterMs: number;
  lossPercent: number;
  /** Infinity: no limit. */
  bytesPerSecond: number;
}

/** Linux's minimum TCP retransmission timeout. */
const MIN_RTO_MS = 200;

/**
 * How long a lost segment delays the stream: TCP retransmits after an RTO of
 * at least 200 ms and at least about one round trip (twice the one-way latency).
 */
export function retransmitTimeoutMs(latencyMs: number): number {
  return Math.max(MIN_RTO_MS, 2 * latencyMs);
}

/** The shape of a delay-type fault, or null for the others (none, down, blackhole, stall, slicer). */
export function wanShape(fault: Fault): WanShape | null {
  const none: WanShape = { latencyMs: 0, jitterMs: 0, lossPercent: 0, bytesPerSecond: Infinity };
  switch (fault.kind) {
    case 'latency':
      return { ...none, latencyMs: fault.ms, jitterMs: fault.jitterMs ?? 0 };
    case 'bandwidth':
      return { ...none, bytesPerSecond: fault.bytesPerSecond };
    case 'loss':
      return { ...none, lossPercent: fault.percent };
    case 'wan':
      return {
        latencyMs: fault.latencyMs,
        jitterMs: fault.jitterMs ?? 0,
        lossPercent: fault.lossPercent ?? 0,
        bytesPerSecond: fault.bytesPerSecond ?? Infinity,
      };
    default:
      return null;
  }
}

/** Whether `fault` acts on the byte stream flowing in `stream`. */
export function faultApplies(fault: Fault, stream: StreamDirection): boolean {
  if (fault.kind === 'none' || fault.kind === 'down') return fault.kind === 'down';
  const direction = fault.direction ?? 'both';
  return direction === 'both' || direction === stream;
}

function invalid(message: string, details?: Record<string, unknown>): MeridianError {
  return new MeridianError('bad_request', message, details);
}

function requireNumber(value: number, name: string, min: number): void {
  if (!Number.isFinite(value) || value < min) {
    throw invalid(`${name} must be a finite number >= ${min}, got ${value}`);
  }
}

function requirePercent(value: number): void {
  if (!Number.isFinite(value) || value < 0 || value > 100) throw invalid(`loss must be a percentage from 0 to 100, got ${value}`);
}

/**
 * Throws a `bad_request` {@link MeridianError} if `fault` cannot be applied
 * (unknown kind, negative or non-finite numbers, unknown direction).
 */
export function validateFault(fault: Fault): void {
  if ('direction' in fault && fault.direction !== undefined) {
    if (!['both', 'upstream', 'downstream'].includes(fault.direction)) {
      throw invalid(`unknown direction "${String(fault.direction)}"`);
    }
  }
  switch (fault.kind) {
    case 'none':
    case 'down':
    case 'blackhole':
    case 'stall':
      return;
    case 'latency':
      requireNumber(fault.ms, 'latency', 0);
      requireNumber(fault.jitterMs ?? 0, 'jitter', 0);
      return;
    case 'bandwidth':
      requireNumber(fault.bytesPerSecond, 'bandwidth', 1);
      return;
    case 'loss':
      requirePercent(fault.percent);
      return;
    case 'wan':
      requireNumber(fault.latencyMs, 'latency', 0);
      requireNumber(fault.jitterMs ?? 0, 'jitter', 0);
      requirePercent(fault.lossPercent ?? 0);
      if (fault.bytesPerSecond !== undefined) requireNumber(fault.bytesPerSecond, 'bandwidth', 1);
      return;
    case 'slicer':
      requireNumber(fault.maxBytes, 'slicer size', 1);
      requireNumber(fault.delayMs ?? 0, 'slicer delay', 0);
      return;
    default:
      throw invalid(`unknown fault kind "${(fault as { kind: unknown }).kind as string}"`);
  }
}

const DURATION = /^(\d+(?:\.\d+)?)(ms|s)$/i;
const RATE = /^(\d+(?:\.\d+)?)(b|kb|kib|mb|mib)\/s$/i;
const RATE_UNITS: Record<string, number> = { b: 1, kb: 1000, kib: 1024, mb: 1_000_000, mib: 1_048_576 };
const JITTER_PREFIXES = ['±', '+-', '~'];

function parseDuration(token: string, text: string): number {
  const m = DURATION.exec(token);
  if (!m?.[1] || !m[2]) throw invalid(`expected a duration like 80ms or 1s, got "${token}" in "${text}"`);
  const n = Number(m[1]);
  return m[2].toLowerCase() === 's' ? n * 1000 : n;
}

function parsePercent(token: string, text: string): number {
  const m = /^(\d+(?:\.\d+)?)%$/.exec(token);
  if (!m?.[1]) throw invalid(`expected a percentage like 5% or 0.5%, got "${token}" in "${text}"`);
  return Number(m[1]);
}

function parseRate(token: string, text: string): number {
  const m = RATE.exec(token);
  const unit = m?.[2] ? RATE_UNITS[m[2].toLowerCase()] : undefined;
  if (!m?.[1] || unit === undefined) {
    throw invalid(`expected a rate in bytes like 64kb/s, 512b/s or 1mib/s, got "${token}" in "${text}"`);
  }
  return Math.floor(Number(m[1]) * unit);
}

/**
 * Splits off a trailing direction word and turns a jitter written as
 * `80ms±20ms`, `± 20ms` or `~20ms` into the two tokens `±` and `20ms`.
 */
function tokenize(text: string): { words: string[]; direction?: FaultDirection } {
  let spaced = text.trim().toLowerCase();
  for (const prefix of JITTER_PREFIXES) spaced = spaced.split(prefix).join(' ± ');
  const words = spaced.split(/\s+/).filter((w) => w.length > 0);
  const last = words[words.length - 1];
  if (words.length > 1 && (last === 'both' || last === 'upstream' || last === 'downstream')) {
    words.pop();
    return { words, direction: last };
  }
  return { words };
}

function expectArity(words: string[], min: number, max: number, usage: string, text: string): void {
  if (words.length - 1 < min || words.length - 1 > max) throw invalid(`usage: ${usage}; got "${text}"`);
}

function parseLatency(args: string[], text: string): { ms: number; jitterMs?: number } {
  const usage = 'latency <ms> [±<ms>] [upstream|downstream|both]';
  const first = args[0];
  if (first === undefined || (args.length !== 1 && args.length !== 3) || (args.length === 3 && args[1] !== '±')) {
    throw invalid(`usage: ${usage}; got "${text}"`);
  }
  const ms = parseDuration(first, text);
  const jitter = args[2];
  return jitter === undefined ? { ms } : { ms, jitterMs: parseDuration(jitter, text) };
}

function parseSlicer(args: string[], text: string): { maxBytes: number; delayMs?: number } {
  const [size, delay] = args;
  if (size === undefined || !/^\d+$/.test(size) || Number(size) < 1) {
    throw invalid(`usage: slicer <maxBytes> [<delay>] [upstream|downstream|both]; got "${text}"`);
  }
  return delay === undefined
    ? { maxBytes: Number(size) }
    : { maxBytes: Number(size), delayMs: parseDuration(delay, text) };
}

/**
 * Parses the outage simulator's fault syntax:
 * `heal` | `none` | `down` | `blackhole [dir]` | `stall [dir]` |
 * `latency 80ms [±20ms] [dir]` (also `+-20ms`, `~20ms`) |
 * `bandwidth 64kb/s [dir]` (units in bytes: b, kb, kib, mb, mib) |
 * `loss 5% [dir]` | `slicer 16 [5ms] [dir]`, where `dir` is `upstream`,
 * `downstream` or `both`. Latency, loss and bandwidth combine into one `wan`
 * fault when separated by commas, the direction once at the end:
 * `latency 80ms ±20ms, loss 1%, bandwidth 1mb/s upstream`.
 * Throws a `bad_request` {@link MeridianError} naming the expected form.
 */
export function parseFault(text: string): Fault {
  const clauses = text.split(',');
  return clauses.length > 1 ? parseWan(clauses, text) : parseOne(text);
}

function parseOne(text: string): Fault {
  const { words, direction } = tokenize(text);
  const [kind, ...args] = words;
  const dir = direction === undefined ? {} : { direction };
  let fault: Fault;
  switch (kind) {
    case 'heal':
    case 'none':
    case 'down':
      expectArity(words, 0, 0, kind, text);
      if (direction !== undefined) throw invalid(`"${kind}" takes no direction; got "${text}"`);
      fault = { kind: kind === 'down' ? 'down' : 'none' };
      break;
    case 'blackhole':
    case 'stall':
      expectArity(words, 0, 0, `${kind} [upstream|downstream|both]`, text);
      fault = { kind, ...dir };
      break;
    case 'latency':
      fault = { kind, ...parseLatency(args, text), ...dir };
      break;
    case 'bandwidth':
      expectArity(words, 1, 1, 'bandwidth <rate>/s [upstream|downstream|both]', text);
      fault = { kind, bytesPerSecond: parseRate(args[0] ?? '', text), ...dir };
      break;
    case 'loss':
      expectArity(words, 1, 1, 'loss <percent>% [upstream|downstream|both]', text);
      fault = { kind, percent: parsePercent(args[0] ?? '', text), ...dir };
      break;
    case 'slicer':
      expectArity(words, 1, 2, 'slicer <maxBytes> [<delay>] [upstream|downstream|both]', text);
      fault = { kind, ...parseSlicer(args, text), ...dir };
      break;
    default:
      throw invalid(
        `unknown fault "${text.trim()}"; expected one of heal, none, down, blackhole, stall, latency, bandwidth, loss, slicer`,
      );
  }
  validateFault(fault);
  return fault;
}

const COMBINABLE: ReadonlySet<FaultKind> = new Set(['latency', 'loss', 'bandwidth']);

/** `latency 80ms ±20ms, loss 1%, bandwidth 1mb/s [dir]`: each clause at most once, the direction only at the end. */
function parseWan(clauses: string[], text: string): Fault {
  const wan: Extract<Fault, { kind: 'wan' }> = { kind: 'wan', latencyMs: 0 };
  const seen = new Set<FaultKind>();
  clauses.forEach((clause, i) => {
    const part = parseOne(clause);
    if (!COMBINABLE.has(part.kind)) throw invalid(`only latency, loss and bandwidth combine (separated by commas); got "${text}"`);
    if (seen.has(part.kind)) throw invalid(`"${part.kind}" appears twice in "${text}"`);
    seen.add(part.kind);
    const direction = 'direction' in part ? part.direction : undefined;
    if (direction !== undefined && i < clauses.length - 1) throw invalid(`give the direction once, at the end; got "${text}"`);
    if (direction !== undefined) wan.direction = direction;
    if (part.kind === 'latency') {
      wan.latencyMs = part.ms;
      if (part.jitterMs !== undefined) wan.jitterMs = part.jitterMs;
    } else if (part.kind === 'loss') wan.lossPercent = part.percent;
    else if (part.kind === 'bandwidth') wan.bytesPerSecond = part.bytesPerSecond;
  });
  validateFault(wan);
  return wan;
}

/** The inverse of {@link parseFault}, for logs and status output. */
export function formatFault(fault: Fault): string {
  const dir = 'direction' in fault && fault.direction && fault.direction !== 'both' ? ` ${fault.direction}` : '';
  switch (fault.kind) {
    case 'none':
    case 'down':
      return fault.kind;
    case 'blackhole':
    case 'stall':
      return `${fault.kind}${dir}`;
    case 'latency':
      return `latency ${fault.ms}ms${fault.jitterMs ? ` ±${fault.jitterMs}ms` : ''}${dir}`;
    case 'bandwidth':
      return `bandwidth ${fault.bytesPerSecond}b/s${dir}`;
    case 'loss':
      return `loss ${fault.percent}%${dir}`;
    case 'wan':
      return `${formatWanClauses(fault).join(', ')}${dir}`;
    case 'slicer':
      return `slicer ${fault.maxBytes}${fault.delayMs ? ` ${fault.delayMs}ms` : ''}${dir}`;
  }
}

function formatWanClauses(f: Extract<Fault, { kind: 'wan' }>): string[] {
  const clauses = [`latency ${f.latencyMs}ms${f.jitterMs ? ` ±${f.jitterMs}ms` : ''}`];
  if (f.lossPercent !== undefined) clauses.push(`loss ${f.lossPercent}%`);
  if (f.bytesPerSecond !== undefined) clauses.push(`bandwidth ${f.bytesPerSecond}b/s`);
  return clauses;
}
