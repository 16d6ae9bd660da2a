/**
 * A small HTTP client for load generation: node:http over a keep-alive
 * agent, which costs the client far less CPU per request than fetch, so on a
 * 2-core machine more of the second core is left to the region under test.
 */
import { Agent, request as httpRequest, type OutgoingHttpHeaders } from 'node:http';

export interface Reply {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

export interface RequestOptions {
  method?: string;
  /** A JSON body, sent as-is when already a string. */
  body?: unknown;
  headers?: OutgoingHttpHeaders;
  timeoutMs?: number;
}

/** A client bound to one base URL and one pool of keep-alive sockets. */
export class HttpClient {
  private readonly agent: Agent;
  private readonly host: string;
  private readonly port: number;

  constructor(readonly baseUrl: string, maxSockets = 64) {
    const url = new URL(baseUrl);
    this.host = url.hostname;
    this.port = Number(url.port);
    this.agent = new Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets, keepAliveMsecs: 1000 });
  }

  request(path: string, o: RequestOptions = {}): Promise<Reply> {
    const payload = o.body === undefined ? undefined : typeof o.body === 'string' ? o.body : JSON.stringify(o.body);
    const headers: OutgoingHttpHeaders = { ...(o.headers ?? {}) };
    if (payload !== undefined) {
      headers['content-type'] ??= 'application/json';
      headers['content-length'] = Buffer.byteLength(payload);
    }
    return new Promise<Reply>((resolve, reject) => {
      const req = httpRequest(
        { host: this.host, port: this.port, method: o.method ?? 'GET', path, agent: this.agent, headers },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers });
          });
        },
      );
      req.setTimeout(o.timeoutMs ?? 60_000, () => req.destroy(new Error(`${o.method ?? 'GET'} ${path} timed out`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** GET and parse JSON; throws unless the status is 200. */
  async json<T>(path: string, o: RequestOptions = {}): Promise<T> {
    const r = await this.request(path, o);
    if (r.status !== 200) throw new Error(`${o.method ?? 'GET'} ${this.baseUrl}${path} answered ${r.status}: ${r.body.slice(0, 200)}`);
    return JSON.parse(r.body) as T;
  }

  close(): void {
    this.agent.destroy();
  }
}
