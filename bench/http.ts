/**
 * A small HTTP client for load generation: node:http over a keep-alive
 * agent, which costs the client far less CPU per request than fetch, so on a
 * 2-core machine more of the second core is left to the region under test.
 */
import { Agent, request as httpRequest, type OutgoingHttpHeaders } from 'node:http';

export interface Reply {
  status: number;
  body: string;
  /** Length of the body in bytes. */
  bytes: number;
  headers: Record<string, string | string[] | undefined>;
}

export interface RequestOptions {
  method?: string;
  /** A JSON body, sent as-is when already a string. */
  body?: unknown;
  headers?: OutgoingHttpHeaders;
  timeoutMs?: number;
}

/** A request failed on a keep-alive socket that had served an earlier request. */
class StaleSocketError extends Error {
  constructor(cause: Error) {
    super(cause.message, { cause });
    this.name = 'StaleSocketError';
  }
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
    // Idle sockets are dropped before the region's 5 s keep-alive timeout, so a
    // request never goes out on a socket the region is closing.
    this.agent = new Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets, timeout: 4000 });
  }

  /**
   * Sends one request. A GET that fails on a reused keep-alive socket (the
   * region closed or restarted meanwhile) is sent once more on a fresh one.
   */
  async request(path: string, o: RequestOptions = {}): Promise<Reply> {
    try {
      return await this.send(path, o);
    } catch (err) {
      if ((o.method ?? 'GET') !== 'GET' || !(err instanceof StaleSocketError)) throw err;
      return this.send(path, o);
    }
  }

  private send(path: string, o: RequestOptions): Promise<Reply> {
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
            const raw = Buffer.concat(chunks);
            resolve({ status: res.statusCode ?? 0, body: raw.toString('utf8'), bytes: raw.byteLength, headers: res.headers });
          });
        },
      );
      req.setTimeout(o.timeoutMs ?? 60_000, () => req.destroy(new Error(`${o.method ?? 'GET'} ${path} timed out`)));
      req.on('error', (err) => reject(req.reusedSocket ? new StaleSocketError(err) : err));
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
