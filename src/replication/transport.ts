/**
 * WebSocket links between regions: the accepting side (a challenge route and
 * an upgrade route on the region's HTTP server, authenticated before the
 * upgrade completes) and the dialing side. Both hand the replicator a
 * {@link Link}; nothing else here knows about sync.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Writable } from 'node:stream';
import websocket from '@fastify/websocket';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { WebSocket } from 'ws';
import type { RegionId } from '../ids.js';
import { createLogLimiter } from '../log-limiter.js';
import type { Metrics } from '../metrics.js';
import {
  CHALLENGE_PATH, HEADER, REPLICATE_PATH, createDialHeaders, createNonceStore, parseChallenge, verifyAccept, verifyDial,
} from './handshake.js';
import type { LinkTransport } from './session.js';
import { FEATURES_HEADER, FEATURE_AWARENESS, MAX_FRAME_HEADER, announcedMaxFrame } from './protocol.js';

/** An authenticated link, as the replicator uses it. */
export interface Link extends LinkTransport {
  /** Both ends announced ephemeral (awareness) frames in the handshake. */
  readonly ephemeral: boolean;
  /** The largest frame the peer accepts, as it announced in the handshake. */
  readonly peerMaxFrameBytes: number;
  onMessage(fn: (bytes: Uint8Array) => void): void;
  onClose(fn: (code: number, reason: string) => void): void;
}

/** TLS material, read from its files once by the composition root and shared with the HTTP server. */
export interface TlsMaterial {
  readonly key: Buffer;
  readonly cert: Buffer;
  /** CA certificate(s) peers must chain to; absent: the system's CAs. */
  readonly ca?: Buffer;
}

/**
 * What links need of the configuration: who this region is, the cluster
 * secret that proves it, and the bounds of a link. Never the API's tokens.
 */
export interface LinkOptions {
  readonly region: RegionId;
  readonly cluster: string;
  readonly secret: string;
  /** The regions that may dial in. */
  readonly peers: readonly RegionId[];
  /** Largest frame accepted from a peer (`replication.maxFrameBytes`). */
  readonly maxFrameBytes: number;
  /** Heartbeat interval (`replication.heartbeatMs`); bounds how long a dial may take. */
  readonly heartbeatMs: number;
  /** Presented and trusted when dialling `https://` peers; null for plain http/ws. */
  readonly tls: TlsMaterial | null;
}

export interface AcceptOptions {
  link: LinkOptions;
  logger: Logger;
  onLink: (region: RegionId, link: Link) => void;
  /** A dial was refused; `region` is what the dialer claimed to be, if anything. */
  onRefused: (region: string | null, reason: string) => void;
  /** Where repeated refusals left out of the log are counted (`meridian_log_suppressed_total`). */
  metrics?: Pick<Metrics, 'logSuppressed'>;
}

/** The log event of a refused dial, as the log limiter and its metric name it. */
export const LINK_REFUSED_EVENT = 'replication_link_refused';

/**
 * ws's refusals of what the other end sent (`WS_ERR_*`) and socket errors
 * (`ECONNRESET`, `EPIPE`, ...); an error a handler throws (ours carry
 * lower-case codes) is not one of them.
 */
function fromOtherEnd(err: { code?: unknown }): boolean {
  return typeof err.code === 'string' && /^(WS_ERR_|E[A-Z0-9]+$)/.test(err.code);
}

/** Registers the replication endpoint on the region's HTTP server. */
export async function acceptLinks(app: FastifyInstance, o: AcceptOptions): Promise<void> {
  const { link } = o;
  await app.register(websocket, {
    options: { maxPayload: link.maxFrameBytes, perMessageDeflate: false },
    // The plugin logs every socket error at error level. Most are the other
    // end's doing (a message over the bound, a protocol violation, a reset),
    // which the link or live connection counts and logs at a limited rate:
    // one line per bad message would let any client flood the log.
    errorHandler: (err: Error & { code?: unknown }, socket, request) => {
      if (fromOtherEnd(err)) request.log.debug({ err }, 'websocket closed: error from the other end');
      else request.log.error({ err }, 'websocket handler failed');
      socket.terminate();
    },
  });
  const nonces = createNonceStore();
  // Anyone who reaches the port can be refused as often as they like: one line per source and minute.
  const refusals = createLogLimiter({ logger: o.logger, onSuppressed: (event) => o.metrics?.logSuppressed.inc({ event }) });
  const peers: ReadonlySet<RegionId> = new Set(link.peers);
  const proofs = new WeakMap<IncomingMessage, { proof: string; region: RegionId }>();
  app.websocketServer.on('headers', (headers: string[], req: IncomingMessage) => {
    const accepted = proofs.get(req);
    if (accepted) headers.push(`${HEADER.proof}: ${accepted.proof}`);
    if (accepted && announcesAwareness(req.headers[FEATURES_HEADER])) headers.push(`${FEATURES_HEADER}: ${FEATURE_AWARENESS}`);
    if (accepted) headers.push(`${MAX_FRAME_HEADER}: ${link.maxFrameBytes}`);
  });

  app.get(CHALLENGE_PATH, async () => ({ nonce: nonces.issue(), region: link.region }));

  app.get(REPLICATE_PATH, {
    websocket: true,
    preValidation: async (req, reply) => {
      const verdict = verifyDial(req.headers, {
        secret: link.secret, cluster: link.cluster, self: link.region, peers, nonces,
      });
      if (!verdict.ok) {
        const claimed = typeof req.headers[HEADER.region] === 'string' ? (req.headers[HEADER.region] as string) : null;
        const fields = { claimed, ip: req.ip, status: verdict.status, reason: verdict.reason };
        refusals.warn(LINK_REFUSED_EVENT, req.ip, fields, 'replication link refused');
        o.onRefused(claimed, verdict.reason);
        return reply.code(verdict.status).send({ error: 'link_refused', message: verdict.reason });
      }
      proofs.set(req.raw, { proof: verdict.proof, region: verdict.region });
    },
  }, (socket, req) => {
    const accepted = proofs.get(req.raw);
    if (!accepted) {
      socket.terminate();
      return;
    }
    const peer = { ephemeral: announcesAwareness(req.headers[FEATURES_HEADER]), maxFrameBytes: announcedMaxFrame(req.headers[MAX_FRAME_HEADER]) };
    o.onLink(accepted.region, wrapSocket(socket, o.logger, peer));
  });
}

export interface DialOptions {
  link: LinkOptions;
  logger: Logger;
}

/** Dials a peer: fetches a challenge, upgrades with a proof, checks the peer's proof. */
export async function dialLink(peer: { region: RegionId; url: string }, o: DialOptions): Promise<Link> {
  const { link } = o;
  const base = new URL(peer.url);
  const tls = link.tls ?? {};
  // A dial stuck on a black-holed path must not outlast the heal by long.
  const timeoutMs = Math.min(5000, Math.max(2000, link.heartbeatMs * 3));
  const body = await getJson(new URL(CHALLENGE_PATH, base), tls, timeoutMs);
  const challenge = parseChallenge(body);
  if (!challenge) throw new Error(`peer ${peer.url} sent no valid challenge`);
  if (challenge.region !== peer.region) {
    throw new Error(`peer at ${peer.url} is region '${challenge.region}', not '${peer.region}': check the peers in the config`);
  }
  const { headers, transcript } = createDialHeaders({
    secret: link.secret, cluster: link.cluster, self: link.region, peer: peer.region, serverNonce: challenge.nonce,
  });
  const url = new URL(REPLICATE_PATH, base);
  url.protocol = base.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(url, {
    headers: { ...headers, [FEATURES_HEADER]: FEATURE_AWARENESS, [MAX_FRAME_HEADER]: String(link.maxFrameBytes) }, maxPayload: link.maxFrameBytes, handshakeTimeout: timeoutMs, perMessageDeflate: false, ...tls,
    // Masking guards proxies against scripts in browsers; a link between two
    // authenticated regions has none, and a zero mask spares drawing random
    // bytes and rewriting every payload the dialing side sends.
    generateMask: (mask: Buffer) => void mask.fill(0),
  });
  return new Promise<Link>((resolve, reject) => {
    let verified = false;
    const announced = { ephemeral: false, maxFrameBytes: 0 };
    ws.once('upgrade', (res) => {
      verified = verifyAccept(transcript, res.headers[HEADER.proof]);
      announced.ephemeral = announcesAwareness(res.headers[FEATURES_HEADER]);
      announced.maxFrameBytes = announcedMaxFrame(res.headers[MAX_FRAME_HEADER]);
    });
    ws.once('open', () => {
      if (!verified) {
        ws.terminate();
        reject(new Error(`peer ${peer.region} failed to prove it holds the cluster secret`));
        return;
      }
      resolve(wrapSocket(ws, o.logger, announced));
    });
    ws.once('unexpected-response', (_req, res) => {
      readBody(res).then(
        (text) => reject(new Error(`refused by ${peer.region}: ${res.statusCode} ${refusalReason(text)}`)),
        (err: unknown) => reject(err instanceof Error ? err : new Error(String(err))),
      );
      ws.terminate();
    });
    ws.once('error', (err) => reject(err));
  });
}

/**
 * Whether a handshake header lists awareness frames. Peers of the same
 * protocol version without them never get one (they would close the link).
 */
function announcesAwareness(header: string | string[] | undefined): boolean {
  return typeof header === 'string' && header.split(',').some((f) => f.trim() === FEATURE_AWARENESS);
}

/** What the peer announced in the handshake. */
interface Announced {
  ephemeral: boolean;
  maxFrameBytes: number;
}

function wrapSocket(ws: WebSocket, logger: Logger, peer: Announced): Link {
  ws.on('error', (err) => logger.debug({ err }, 'replication socket error'));
  // The peer may speak in the same packet as the upgrade response, before the
  // replicator has attached: hold such frames until it does.
  let deliver: ((bytes: Uint8Array) => void) | null = null;
  const early: Uint8Array[] = [];
  ws.on('message', (data, isBinary) => {
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
    // Text frames are not part of the protocol; an empty frame fails decoding and closes the link.
    const bytes = isBinary ? new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength) : new Uint8Array(0);
    if (deliver) deliver(bytes);
    else early.push(bytes);
  });
  const send = turnCorked(ws);
  return {
    ephemeral: peer.ephemeral,
    peerMaxFrameBytes: peer.maxFrameBytes,
    send,
    buffered: () => ws.bufferedAmount,
    close: (code, reason) => {
      if (ws.readyState === WebSocket.OPEN) ws.close(code, reason);
      // A black-holed peer never completes the closing handshake.
      setTimeout(() => ws.terminate(), 1000).unref();
    },
    pause: () => ws.pause(),
    resume: () => ws.resume(),
    onMessage: (fn) => {
      deliver = fn;
      for (const bytes of early.splice(0)) fn(bytes);
    },
    onClose: (fn) => {
      ws.on('close', (code, reason) => fn(code, reason.toString()));
    },
  };
}

/**
 * Sends frames on `ws`; batched ones (see LinkTransport.send) reach the
 * socket together at the end of the turn. A rebuild sends a frame per
 * document state, thousands a second, and each written alone was a system
 * call on this side and a wake-up on the peer's: a fifth of the sending
 * region's time. The socket is corked at the turn's first batched frame and
 * uncorked once the turn's callbacks have run, or at once by a frame that
 * is not batched (entries, acknowledgements, heartbeats: an entry must not
 * wait behind the answer its write already got). ws corks each frame's
 * header and payload too; corking nests. Without the underlying socket,
 * frames go out one by one.
 */
function turnCorked(ws: WebSocket): (bytes: Uint8Array, batched?: boolean) => void {
  let corked: Writable | null = null;
  const uncork = (): void => {
    const socket = corked;
    corked = null;
    if (socket !== null && !socket.destroyed) socket.uncork();
  };
  return (bytes, batched = false) => {
    if (!batched) {
      uncork();
    } else if (corked === null) {
      // Not in ws's types, but the socket it writes to (ws's own sender corks it the same way).
      const socket = (ws as unknown as { _socket?: Writable | null })._socket;
      if (socket && !socket.destroyed) {
        socket.cork();
        corked = socket;
        setImmediate(uncork);
      }
    }
    ws.send(bytes, { binary: true });
  };
}

function getJson(url: URL, tls: Partial<TlsMaterial>, timeoutMs: number): Promise<unknown> {
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'GET', timeout: timeoutMs, ...tls }, (res) => {
      readBody(res).then((text) => {
        if (res.statusCode !== 200) return reject(new Error(`challenge from ${url.host} answered ${res.statusCode}`));
        try {
          resolve(JSON.parse(text));
        } catch {
          reject(new Error(`challenge from ${url.host} is not JSON`));
        }
      }, reject);
    });
    req.on('timeout', () => req.destroy(new Error(`challenge from ${url.host} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

function readBody(res: IncomingMessage, max = 64 * 1024): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= max) chunks.push(c);
    });
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', reject);
  });
}

function refusalReason(text: string): string {
  try {
    const body = JSON.parse(text) as { message?: unknown };
    return typeof body.message === 'string' ? body.message : text.slice(0, 200);
  } catch {
    return text.slice(0, 200);
  }
}
