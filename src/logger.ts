/**
 * The region's logger: pino JSON lines on stdout, secrets redacted, and a
 * compact one-line rendering of those JSON lines for humans.
 */
import { Writable } from 'node:stream';
import { pino, type DestinationStream, type Logger } from 'pino';
import type { LogLevel } from './config.js';

export interface LoggerOptions {
  level: LogLevel;
  region: string;
  /** Render lines with {@link formatLogLine} instead of JSON. */
  pretty?: boolean;
  /** Where lines go; default stdout, written synchronously so nothing is lost on exit. */
  destination?: DestinationStream;
}

/** Fields that may hold secrets, wherever they appear in a log record. */
export const REDACT_PATHS = [
  'secret',
  '*.secret',
  'token',
  '*.token',
  'headers.authorization',
  'req.headers.authorization',
  'auth.tokens[*].token',
  'config.auth.tokens[*].token',
];

/** Creates the logger of one region; every line carries `region`. */
export function createLogger(opts: LoggerOptions): Logger {
  const json = opts.destination ?? pino.destination({ dest: 1, sync: true });
  return pino(
    {
      level: opts.level,
      // pid and hostname add noise to every line and say nothing the region name does not.
      base: { region: opts.region },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    },
    opts.pretty ? prettyStream(json) : json,
  );
}

const LEVEL_NAMES: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };
// Fields every line has or that the prefix already shows.
const HIDDEN = new Set(['level', 'time', 'msg', 'region', 'pid', 'hostname', 'v']);
const MAX_VALUE_CHARS = 120;

/**
 * Renders one pino JSON line as `level msg key=value ...` (an error shows its
 * message only). Returns the line unchanged if it is not a JSON object.
 */
export function formatLogLine(line: string): string {
  let rec: unknown;
  try {
    rec = JSON.parse(line);
  } catch {
    return line;
  }
  if (rec === null || typeof rec !== 'object' || Array.isArray(rec)) return line;
  const r = rec as Record<string, unknown>;
  const level = typeof r.level === 'number' ? (LEVEL_NAMES[r.level] ?? String(r.level)) : String(r.level ?? '');
  const parts = [level.padEnd(5), typeof r.msg === 'string' ? r.msg : ''];
  for (const [key, value] of Object.entries(r)) {
    if (!HIDDEN.has(key)) parts.push(`${key}=${compact(value)}`);
  }
  return parts.join(' ').trimEnd();
}

function compact(value: unknown): string {
  if (value !== null && typeof value === 'object' && 'message' in value && typeof value.message === 'string') {
    return JSON.stringify(value.message);
  }
  const s = typeof value === 'string' && /^[^\s"=]+$/.test(value) ? value : (JSON.stringify(value) ?? String(value));
  return s.length > MAX_VALUE_CHARS ? `${s.slice(0, MAX_VALUE_CHARS - 1)}…` : s;
}

/** A stream that reformats each JSON line before passing it on. */
function prettyStream(out: DestinationStream): DestinationStream {
  return new Writable({
    write(chunk: Buffer | string, _enc, done) {
      for (const line of chunk.toString().split('\n')) {
        if (line) out.write(`${formatLogLine(line)}\n`);
      }
      done();
    },
  });
}
