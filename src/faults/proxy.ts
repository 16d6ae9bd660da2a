/**
 * A TCP proxy for one directed link (listen address -> upstream host:port)
 * whose fault can be changed at run time, modelled on Toxiproxy. The outage
 * simulator puts one in front of every replication link it wants to break.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import type { Logger } from 'pino';
import { formatFault, validateFault, type Fault } from './proxy-fault.js';
import { Pipe, type PipeCounters } from './proxy-pipe.js';

export {
  parseFault,
  formatFault,
  validateFault,
  faultApplies,
  type Fault,
  type FaultKind,
  type FaultDirection,
  type StreamDirection,
} from './proxy-fault.js';

export interface FaultProxyOptions {
  /** Default 127.0.0.1. */
  listenHost?: string;
  /** 0 (the default) picks a free port; read it back with {@link FaultProxy.address}. */
  listenPort?: number;
  upstreamHost: string;
  upstreamPort: number;
  /** Names the link in logs, e.g. `us-east->eu-west`. */
  name?: string;
  logger?: Logger;
  /** Source of randomness for jitter and slice sizes; pass a seeded one for repeatable runs. */
  random?: () => number;
}

export interface FaultProxyStats {
  /** Connections accepted since start, including those refused while `down`. */
  connectionsTotal: number;
  /** Connections with at least one of their two sockets still open. */
  connectionsOpen: number;
  /** Client -> server bytes written to the upstream host. */
  bytesUpstream: number;
  /** Server -> client bytes written to the client. */
  bytesDownstream: number;
  /** Bytes swallowed by a blackhole or queued when their connection was reset or closed. */
  bytesDropped: number;
  fault: Fault;
}

/** The two sockets of one proxied connection and the pipes between them. */
interface Link {
  client: Socket;
  upstream: Socket;
  pipes: Pipe[];
}

/** Sends an RST where the socket has a connection to reset; otherwise just closes it. */
function reset(socket: Socket): void {
  if (socket.destroyed) return;
  if (socket.connecting) socket.destroy();
  else socket.resetAndDestroy();
}

export class FaultProxy {
  private readonly server: Server;
  private readonly links = new Set<Link>();
  /** Accepted sockets not yet paired with an upstream (or refused while down). */
  private readonly loose = new Set<Socket>();
  private fault: Fault = { kind: 'none' };
  private closing = false;
  private readonly counts = { connectionsTotal: 0, bytesUpstream: 0, bytesDownstream: 0, bytesDropped: 0 };
  private readonly counters: PipeCounters = {
    forwarded: (stream, bytes) => {
      if (stream === 'upstream') this.counts.bytesUpstream += bytes;
      else this.counts.bytesDownstream += bytes;
    },
    dropped: (bytes) => {
      this.counts.bytesDropped += bytes;
    },
  };
  private readonly random: () => number;
  private upstreamPort: number;
  readonly name: string;

  constructor(private readonly options: FaultProxyOptions) {
    this.random = options.random ?? Math.random;
    this.upstreamPort = options.upstreamPort;
    this.name = options.name ?? `proxy->${options.upstreamHost}:${options.upstreamPort}`;
    // Half-open sockets let a FIN in one direction travel without cutting off bytes still delayed in the other.
    this.server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.accept(socket));
  }

  /** Starts listening; resolves once the port is bound. */
  async start(): Promise<this> {
    this.server.listen(this.options.listenPort ?? 0, this.options.listenHost ?? '127.0.0.1');
    await once(this.server, 'listening');
    this.options.logger?.debug({ proxy: this.name, address: this.address() }, 'fault proxy listening');
    return this;
  }

  /** The bound listen address. Throws before {@link start} has resolved. */
  address(): { host: string; port: number } {
    const addr = this.server.address();
    if (addr === null || typeof addr === 'string') throw new Error(`fault proxy ${this.name} is not listening`);
    return { host: addr.address, port: addr.port };
  }

  /** Connections from now on go to `port` (the upstream moved); open ones stay where they are. */
  retarget(port: number): void {
    this.upstreamPort = port;
  }

  /** Whether the listener is bound; false after {@link close}. */
  get listening(): boolean {
    return this.server.listening;
  }

  /** The current fault. */
  currentFault(): Fault {
    return { ...this.fault };
  }

  /**
   * Replaces the fault; it applies at once to open connections and to new
   * ones. Throws a `bad_request` MeridianError for an invalid fault.
   */
  setFault(fault: Fault): void {
    validateFault(fault);
    this.fault = { ...fault };
    this.options.logger?.info({ proxy: this.name, fault: formatFault(fault) }, 'fault set');
    if (fault.kind === 'down') {
      for (const link of [...this.links]) this.resetLink(link);
      for (const socket of [...this.loose]) reset(socket);
      return;
    }
    for (const link of this.links) for (const pipe of link.pipes) pipe.refresh();
  }

  /** Shorthand for `setFault({ kind: 'none' })`. */
  heal(): void {
    this.setFault({ kind: 'none' });
  }

  stats(): FaultProxyStats {
    return { ...this.counts, connectionsOpen: this.links.size + this.loose.size, fault: { ...this.fault } };
  }

  /**
   * Stops listening and destroys every socket the proxy opened or accepted;
   * resolves once the listener and all those sockets have closed.
   */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const sockets = [...this.loose];
    for (const link of this.links) sockets.push(link.client, link.upstream);
    const closed = sockets
      .filter((socket) => !socket.closed)
      .map((socket) => new Promise<void>((resolve) => socket.once('close', () => resolve())));
    if (this.server.listening) closed.push(new Promise<void>((resolve) => this.server.close(() => resolve())));
    for (const link of this.links) for (const pipe of link.pipes) pipe.dispose();
    for (const socket of sockets) socket.destroy();
    await Promise.all(closed);
  }

  private accept(client: Socket): void {
    this.counts.connectionsTotal += 1;
    this.loose.add(client);
    client.once('close', () => this.loose.delete(client));
    client.on('error', (err) => this.options.logger?.debug({ proxy: this.name, err }, 'client socket error'));
    if (this.closing) {
      client.destroy();
      return;
    }
    if (this.fault.kind === 'down') {
      reset(client);
      return;
    }
    const upstream = connect({
      host: this.options.upstreamHost,
      port: this.upstreamPort,
      allowHalfOpen: true,
      noDelay: true,
    });
    upstream.on('error', (err) => this.options.logger?.debug({ proxy: this.name, err }, 'upstream socket error'));
    this.loose.delete(client);
    this.track(client, upstream);
  }

  private track(client: Socket, upstream: Socket): void {
    const base = { fault: (): Fault => this.fault, random: this.random, counters: this.counters };
    const toUpstream = new Pipe({ ...base, stream: 'upstream', source: client, dest: upstream });
    const toClient = new Pipe({ ...base, stream: 'downstream', source: upstream, dest: client });
    const link: Link = { client, upstream, pipes: [toUpstream, toClient] };
    this.links.add(link);
    let open = 2;
    const onClose = (other: Socket, inbound: Pipe) => (hadError: boolean) => {
      inbound.dispose();
      // A reset or failure on one side is passed on as a reset, as a real link would show it to the other peer.
      if (hadError) reset(other);
      open -= 1;
      if (open === 0) this.forget(link);
    };
    client.once('close', onClose(upstream, toClient));
    upstream.once('close', onClose(client, toUpstream));
  }

  private forget(link: Link): void {
    for (const pipe of link.pipes) pipe.dispose();
    this.links.delete(link);
  }

  private resetLink(link: Link): void {
    for (const pipe of link.pipes) pipe.dispose();
    reset(link.client);
    reset(link.upstream);
  }
}

/** Creates a {@link FaultProxy} and waits until it listens. */
export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  return new FaultProxy(options).start();
}
