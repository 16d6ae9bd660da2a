/**
 * Mutual authentication of two regions, done inside the WebSocket upgrade so
 * that a peer which cannot prove it holds the cluster secret never gets a
 * socket. Pure functions only; the HTTP and WebSocket code calls them.
 *
 * 1. The dialer A asks `GET CHALLENGE_PATH` and gets `{ nonce, region }`: a
 *    fresh server nonce that B remembers for a short time and accepts once.
 * 2. A upgrades `REPLICATE_PATH` with its region, cluster, protocol version, a
 *    fresh client nonce, the server nonce and
 *    `proof = HMAC(secret, ["meridian/1 dial", cluster, A, B, version, serverNonce, clientNonce])`.
 * 3. B checks version, cluster and that A is a configured peer, verifies the
 *    proof in constant time, and only then consumes the server nonce. Its
 *    upgrade response carries
 *    `HMAC(secret, ["meridian/1 accept", cluster, B, A, version, clientNonce, serverNonce])`,
 *    which A checks before it sends a frame.
 *
 * Why a recorded handshake cannot be replayed or reflected:
 * - A dial proof covers a server nonce that B issued, keeps for `ttlMs` and
 *   accepts once, so replaying it to B fails (used or expired), and another
 *   region never issued that nonce and is named differently in the proof.
 * - An accept proof covers A's fresh client nonce, so an old upgrade response
 *   does not satisfy a new dial: B is authenticated to A as well.
 * - The labels differ by direction and both region names are bound in order,
 *   so a proof cannot be turned around or relabelled.
 * - The MAC input is a JSON array, so fields cannot run into each other
 *   (`cluster "ab" + region "c"` differs from `"a" + "bc"`), and the cluster
 *   and protocol version are covered, so neither can be downgraded in flight.
 * - B verifies the proof before it consumes the nonce, so a party without the
 *   secret cannot burn nonces that a real peer is about to use.
 * Limits: the handshake authenticates the peers, not the bytes that follow;
 * an attacker on the path could take over an open connection. Links between
 * regions should therefore run over TLS (`wss://`). The challenge endpoint is
 * unauthenticated and stores what it issues (bounded by `max`): rate-limit it.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { RegionId } from '../ids.js';
import { PROTOCOL_VERSION } from './protocol.js';

export const CHALLENGE_PATH = '/v1/replicate/challenge';
export const REPLICATE_PATH = '/v1/replicate';

/** Request headers of the upgrade; `proof` is also the header of B's answer. */
export const HEADER = {
  region: 'meridian-region',
  cluster: 'meridian-cluster',
  protocol: 'meridian-protocol',
  nonce: 'meridian-nonce',
  serverNonce: 'meridian-server-nonce',
  proof: 'meridian-proof',
} as const;

/** WebSocket close codes of replication links: part of the wire contract. */
export { CloseCode } from '../contract.js';

export const NONCE_BYTES = 32;
const NONCE_PATTERN = /^[A-Za-z0-9+/]{43}=$/;

/** Body of `GET CHALLENGE_PATH`. */
export interface Challenge {
  nonce: string;
  region: RegionId;
}

/** Server nonces issued to dialers: short-lived, single use, bounded. */
export interface NonceStore {
  /** A fresh nonce (base64 of 32 random bytes), remembered for ttlMs. */
  issue(): string;
  /** True once for a nonce issued less than ttlMs ago; it is forgotten either way. */
  consume(nonce: string): boolean;
  readonly size: number;
}

/**
 * A nonce store; when full, the oldest nonces are dropped (a dialer holding
 * one fails and retries, nothing is ever wrongly accepted).
 */
export function createNonceStore(opts: { ttlMs?: number; max?: number; now?: () => number } = {}): NonceStore {
  const ttlMs = opts.ttlMs ?? 30_000;
  const max = opts.max ?? 10_000;
  // A monotonic clock: wall-clock steps must not stretch or cut a nonce's life.
  const now = opts.now ?? (() => performance.now());
  // Insertion order is issue order, so expired and oldest entries sit at the front.
  const expiries = new Map<string, number>();
  return {
    issue() {
      const t = now();
      for (const [nonce, expiry] of expiries) {
        if (expiry > t && expiries.size < max) break;
        expiries.delete(nonce);
      }
      const nonce = randomBytes(NONCE_BYTES).toString('base64');
      expiries.set(nonce, t + ttlMs);
      return nonce;
    },
    consume(nonce) {
      const expiry = expiries.get(nonce);
      if (expiry === undefined) return false;
      expiries.delete(nonce);
      return now() < expiry;
    },
    get size() {
      return expiries.size;
    },
  };
}

/** A fresh random nonce, as the dialer sends it. */
export function createNonce(): string {
  return randomBytes(NONCE_BYTES).toString('base64');
}

/** Canonical base64 of exactly 32 bytes. */
export function isNonce(s: string): boolean {
  return NONCE_PATTERN.test(s) && Buffer.from(s, 'base64').toString('base64') === s;
}

/** Validates an untrusted challenge body; null if it is not one. */
export function parseChallenge(body: unknown): Challenge | null {
  if (typeof body !== 'object' || body === null) return null;
  const { nonce, region } = body as Record<string, unknown>;
  if (typeof nonce !== 'string' || !isNonce(nonce) || typeof region !== 'string' || region.length === 0) return null;
  return { nonce, region: region as RegionId };
}

/** Whether this node can speak `version` with a peer. */
export function isCompatibleVersion(version: number): boolean {
  return version === PROTOCOL_VERSION;
}

/** Everything both proofs cover. */
export interface Transcript {
  secret: string;
  cluster: string;
  dialer: RegionId;
  acceptor: RegionId;
  protocolVersion: number;
  serverNonce: string;
  clientNonce: string;
}

function mac(secret: string, fields: (string | number)[]): Buffer {
  if (secret.length === 0) throw new RangeError('cluster secret must not be empty');
  return createHmac('sha256', secret).update(JSON.stringify(fields)).digest();
}

function dialMac(t: Transcript): Buffer {
  const fields = ['meridian/1 dial', t.cluster, t.dialer, t.acceptor, t.protocolVersion, t.serverNonce, t.clientNonce];
  return mac(t.secret, fields);
}

function acceptMac(t: Transcript): Buffer {
  const fields = ['meridian/1 accept', t.cluster, t.acceptor, t.dialer, t.protocolVersion, t.clientNonce, t.serverNonce];
  return mac(t.secret, fields);
}

/** The dialer's proof, base64. */
export function dialProof(t: Transcript): string {
  return dialMac(t).toString('base64');
}

/** The acceptor's proof, base64. */
export function acceptProof(t: Transcript): string {
  return acceptMac(t).toString('base64');
}

/** Constant-time comparison of a base64 proof with the expected MAC; a length mismatch is simply false. */
function proofMatches(given: string, expected: Buffer): boolean {
  const bytes = Buffer.from(given, 'base64');
  if (bytes.length !== expected.length) return false;
  return timingSafeEqual(bytes, expected);
}

/**
 * Headers for the dialer's upgrade request. Keep `transcript`: it checks the
 * acceptor's answer with {@link verifyAccept}.
 */
export function createDialHeaders(opts: {
  secret: string;
  cluster: string;
  self: RegionId;
  peer: RegionId;
  serverNonce: string;
  protocolVersion?: number;
}): { headers: Record<string, string>; transcript: Transcript } {
  const transcript: Transcript = {
    secret: opts.secret,
    cluster: opts.cluster,
    dialer: opts.self,
    acceptor: opts.peer,
    protocolVersion: opts.protocolVersion ?? PROTOCOL_VERSION,
    serverNonce: opts.serverNonce,
    clientNonce: createNonce(),
  };
  const headers = {
    [HEADER.region]: opts.self,
    [HEADER.cluster]: opts.cluster,
    [HEADER.protocol]: String(transcript.protocolVersion),
    [HEADER.nonce]: transcript.clientNonce,
    [HEADER.serverNonce]: opts.serverNonce,
    [HEADER.proof]: dialProof(transcript),
  };
  return { headers, transcript };
}

/** The dialer's check of the acceptor's `meridian-proof` response header. */
export function verifyAccept(t: Transcript, proof: string | string[] | undefined): boolean {
  return typeof proof === 'string' && proofMatches(proof, acceptMac(t));
}

/** What the accepting region knows. */
export interface AcceptContext {
  secret: string;
  cluster: string;
  self: RegionId;
  peers: ReadonlySet<RegionId>;
  nonces: NonceStore;
}

export type DialVerdict =
  | {
      ok: true;
      region: RegionId;
      protocolVersion: number;
      /** For the `meridian-proof` header of the upgrade response. */
      proof: string;
    }
  | { ok: false; status: 400 | 401 | 403 | 409 | 426; reason: string };

function header(headers: IncomingHttpHeaders, name: string): string | null {
  const v = headers[name];
  return typeof v === 'string' && v.length > 0 ? v : null;
}

function refuse(status: 400 | 401 | 403 | 409 | 426, reason: string): DialVerdict {
  return { ok: false, status, reason };
}

/** Of each pair of regions the one whose name sorts first dials the other, which only accepts. */
export function dialsTo(self: RegionId, peer: RegionId): boolean {
  return self < peer;
}

/**
 * The acceptor's check of an upgrade request. Consumes the server nonce only
 * when the proof is right. Reasons echo nothing the caller sent but a version number.
 */
export function verifyDial(headers: IncomingHttpHeaders, ctx: AcceptContext): DialVerdict {
  const region = header(headers, HEADER.region) as RegionId | null;
  const cluster = header(headers, HEADER.cluster);
  const protocol = header(headers, HEADER.protocol);
  const clientNonce = header(headers, HEADER.nonce);
  const serverNonce = header(headers, HEADER.serverNonce);
  const proof = header(headers, HEADER.proof);
  if (!region || !cluster || !protocol || !clientNonce || !serverNonce || !proof) {
    return refuse(400, 'missing replication handshake headers');
  }
  if (!/^[0-9]{1,6}$/.test(protocol)) return refuse(400, `malformed ${HEADER.protocol} header`);
  const protocolVersion = Number(protocol);
  if (!isCompatibleVersion(protocolVersion)) {
    return refuse(426, `protocol version ${protocolVersion} not supported; this node speaks ${PROTOCOL_VERSION}`);
  }
  if (cluster !== ctx.cluster) return refuse(403, 'cluster mismatch');
  if (region === ctx.self || !ctx.peers.has(region)) return refuse(403, 'region is not a configured peer');
  if (!isNonce(clientNonce) || !isNonce(serverNonce)) return refuse(400, 'malformed nonce');
  const { secret, self: acceptor } = ctx;
  const t: Transcript = { secret, cluster, dialer: region, acceptor, protocolVersion, serverNonce, clientNonce };
  if (!proofMatches(proof, dialMac(t))) return refuse(401, 'bad proof');
  if (!ctx.nonces.consume(serverNonce)) return refuse(401, 'server nonce unknown, expired or already used');
  // That peer never dials this one: a link in its name would replace the one
  // this region dialled, which it never redials (a second process configured
  // as that region, or a peer that got hold of the secret).
  if (dialsTo(acceptor, region)) return refuse(409, 'this region dials that peer itself; a link from it is refused (is a second process configured under its name?)');
  return { ok: true, region, protocolVersion, proof: acceptProof(t) };
}
