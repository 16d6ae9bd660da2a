/**
 * `meridian proxy`: one fault proxy as its own process, for links that the
 * simulator does not manage (e.g. between containers or hosts), controlled
 * over HTTP: `POST /fault` with a fault in the simulator's syntax
 * (`blackhole`, `latency 80ms ±20ms`, `heal`, ...), `GET /stats`.
 */
import { createServer } from 'node:http';
import { once } from 'node:events';
import { formatFault, parseFault, startFaultProxy } from './proxy.js';
import { asUsage, UsageError } from '../usage-error.js';

export interface StandaloneProxyOptions {
  listen: string;
  upstream: string;
  controlPort: number;
  fault?: string;
}

/** `host:port` or `port` (loopback). */
export function parseAddress(text: string, what: string): { host: string; port: number } {
  const m = /^(?:(.+):)?(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new UsageError(`${what} must be host:port or port, not '${text}'`);
  return { host: m[1] ?? '127.0.0.1', port };
}

export async function runStandaloneProxy(o: StandaloneProxyOptions): Promise<void> {
  const listen = parseAddress(o.listen, '--listen');
  const upstream = parseAddress(o.upstream, '--upstream');
  // Every option is checked before the proxy listens: a refused command leaves nothing open.
  const fault = o.fault === undefined ? null : asUsage('--fault', () => parseFault(o.fault ?? ''));
  const proxy = await startFaultProxy({
    listenHost: listen.host, listenPort: listen.port, upstreamHost: upstream.host, upstreamPort: upstream.port,
  });
  if (fault) proxy.setFault(fault);
  const control = createServer((req, res) => {
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method === 'GET' && req.url === '/stats') return reply(200, { ...proxy.stats(), fault: formatFault(proxy.stats().fault) });
    if (req.method !== 'POST' || req.url !== '/fault') return reply(404, { error: 'not_found', message: 'use POST /fault or GET /stats' });
    let text = '';
    req.on('data', (c: Buffer) => {
      if (text.length < 1024) text += c.toString('utf8');
    });
    req.on('end', () => {
      try {
        proxy.setFault(parseFault(text));
        reply(200, { fault: formatFault(proxy.stats().fault) });
      } catch (err) {
        reply(400, { error: 'bad_request', message: err instanceof Error ? err.message : String(err) });
      }
    });
  });
  control.listen(o.controlPort, '127.0.0.1');
  try {
    await once(control, 'listening');
  } catch (err) {
    await proxy.close();
    throw err;
  }
  const address = control.address();
  const controlPort = typeof address === 'object' && address ? address.port : o.controlPort;
  const { host, port } = proxy.address();
  process.stdout.write(`proxy ${host}:${port} -> ${upstream.host}:${upstream.port}  fault: ${formatFault(proxy.stats().fault)}\n`);
  process.stdout.write(`control: curl -d 'blackhole' http://127.0.0.1:${controlPort}/fault\n`);
  const stop = () => {
    control.close();
    void proxy.close().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
