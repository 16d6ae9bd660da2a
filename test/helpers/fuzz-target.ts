/**
 * Where fuzz cases are sent: one interface over a region driven in process
 * (fastify `inject`, no socket) and a region process reached over HTTP, so
 * that the same cases and oracles run against both. Also the `/healthz`
 * poller that measures how long a region takes to answer while it is fuzzed.
 */
import { request as httpRequest, Agent } from 'node:http';
import type { FastifyInstance } from 'fastify';

/** One HTTP request as the fuzzer builds it: the path is sent as is (already percent-encoded). */
export interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
}

export interface FuzzResponse {
  status: number;
  headers: Record<string, string | undefined>;
  body: Buffer;
}

/** A region under fuzz. */
export interface FuzzTarget {
  readonly name: string;
  /** The region process's base URL, for what needs a socket of its own (live connections); none in process. */
  readonly url?: string;
  send(req: FuzzRequest): Promise<FuzzResponse>;
}

/** Longest a single fuzz request may take before the target counts as hung. */
export const REQUEST_TIMEOUT_MS = 20_000;

/** A region in this process, driven through `inject`. */
export function injectTarget(app: FastifyInstance, name: string): FuzzTarget {
  return {
    name,
    async send(req) {
      const res = await app.inject({
        method: req.method as 'GET',
        url: req.path,
        headers: req.headers,
        ...(req.body === undefined ? {} : { payload: req.body }),
      });
      return { status: res.statusCode, headers: flatHeaders(res.headers), body: res.rawPayload };
    },
  };
}

/** A region process at `baseUrl` (http only), reached with node:http so that paths and headers go out unchanged. */
export function socketTarget(baseUrl: string, name: string): FuzzTarget {
  const url = new URL(baseUrl);
  const agent = new Agent({ keepAlive: true, maxSockets: 16 });
  return {
    name, url: baseUrl,
    send(req) {
      return new Promise((resolve, reject) => {
        const headers = { ...req.headers, ...(req.body === undefined ? {} : { 'content-length': String(req.body.length) }) };
        const outgoing = httpRequest(
          { host: url.hostname, port: url.port, method: req.method, path: req.path, headers, agent, timeout: REQUEST_TIMEOUT_MS },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: flatHeaders(res.headers), body: Buffer.concat(chunks) }));
            res.on('error', reject);
          },
        );
        outgoing.on('timeout', () => outgoing.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
        outgoing.on('error', reject);
        outgoing.end(req.body);
      });
    },
  };
}

function flatHeaders(raw: Record<string, string | string[] | number | undefined>): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(raw)) out[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : v === undefined ? undefined : String(v);
  return out;
}

/** What the poller saw. */
export interface HealthReport {
  samples: number;
  maxMs: number;
  /** Polls that failed or answered other than 200, with what happened. */
  failures: string[];
}

export interface HealthPoller {
  /** The report so far. */
  report(): HealthReport;
  /** Stops polling and waits for the poll in flight. */
  stop(): Promise<HealthReport>;
}

/**
 * Polls `GET /healthz` one request after another (a fresh poll `everyMs`
 * after the previous answer) and keeps the slowest answer. A poll in flight
 * is measured until it ends, so a frozen region shows as one long sample.
 */
export function startHealthPoller(target: FuzzTarget, everyMs = 10): HealthPoller {
  const report: HealthReport = { samples: 0, maxMs: 0, failures: [] };
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const started = performance.now();
      try {
        const res = await target.send({ method: 'GET', path: '/healthz', headers: {} });
        if (res.status !== 200) report.failures.push(`${target.name}: /healthz answered ${res.status}`);
      } catch (err) {
        report.failures.push(`${target.name}: /healthz failed: ${err instanceof Error ? err.message : String(err)}`);
      }
      report.samples++;
      report.maxMs = Math.max(report.maxMs, performance.now() - started);
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    report: () => ({ ...report, failures: [...report.failures] }),
    async stop() {
      stopped = true;
      await loop;
      return { ...report, failures: [...report.failures] };
    },
  };
}
