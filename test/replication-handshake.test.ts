import type { IncomingHttpHeaders } from 'node:http';
import { describe, expect, it } from 'vitest';
import type { RegionId } from '../src/ids.js';
import {
  HEADER,
  acceptProof,
  createDialHeaders,
  createNonce,
  createNonceStore,
  dialProof,
  isNonce,
  parseChallenge,
  verifyAccept,
  verifyDial,
  type AcceptContext,
  type Transcript,
} from '../src/replication/handshake.js';
import { PROTOCOL_VERSION } from '../src/replication/protocol.js';

// A dials B (its name sorts first); C is another peer of B.
const A = 'ap-south' as RegionId;
const B = 'eu-west' as RegionId;
const C = 'us-east' as RegionId;
const SECRET = 'correct horse battery staple';
const CLUSTER = 'prod';

function setup(opts: { now?: () => number } = {}) {
  const nonces = createNonceStore({ ttlMs: 30_000, max: 100, now: opts.now ?? (() => 0) });
  const ctx: AcceptContext = { secret: SECRET, cluster: CLUSTER, self: B, peers: new Set([A, C]), nonces };
  const dial = (overrides: Partial<Parameters<typeof createDialHeaders>[0]> = {}) =>
    createDialHeaders({ secret: SECRET, cluster: CLUSTER, self: A, peer: B, serverNonce: nonces.issue(), ...overrides });
  return { ctx, nonces, dial };
}

describe('replication handshake', () => {
  it('authenticates both sides of a valid handshake', () => {
    const { ctx, dial } = setup();
    const { headers, transcript } = dial();
    const verdict = verifyDial(headers, ctx);
    expect(verdict).toMatchObject({ ok: true, region: A, protocolVersion: PROTOCOL_VERSION });
    if (!verdict.ok) throw new Error('unreachable');
    expect(verifyAccept(transcript, verdict.proof)).toBe(true);
  });

  it('lets the dialer reject a wrong, replayed or missing accept proof', () => {
    const { ctx, dial } = setup();
    const first = dial();
    const firstVerdict = verifyDial(first.headers, ctx);
    const second = dial();
    expect(firstVerdict.ok).toBe(true);
    if (!firstVerdict.ok) throw new Error('unreachable');
    // An answer recorded for one dial does not satisfy another: it covers the client nonce.
    expect(verifyAccept(second.transcript, firstVerdict.proof)).toBe(false);
    expect(verifyAccept({ ...first.transcript, secret: 'other' }, firstVerdict.proof)).toBe(false);
    expect(verifyAccept(first.transcript, undefined)).toBe(false);
    expect(verifyAccept(first.transcript, [firstVerdict.proof])).toBe(false);
    // The dialer's own proof reflected back is not an accept proof.
    expect(verifyAccept(first.transcript, first.headers[HEADER.proof])).toBe(false);
  });

  it('refuses a dialer with the wrong secret', () => {
    const { ctx, dial } = setup();
    expect(verifyDial(dial({ secret: 'guess' }).headers, ctx)).toEqual({ ok: false, status: 401, reason: 'bad proof' });
  });

  it('refuses an unknown region, itself, and another cluster', () => {
    const { ctx, dial } = setup();
    const unknown = verifyDial(dial({ self: 'mars' as RegionId }).headers, ctx);
    expect(unknown).toEqual({ ok: false, status: 403, reason: 'region is not a configured peer' });
    expect(verifyDial(dial({ self: B }).headers, ctx)).toMatchObject({ ok: false, status: 403 });
    const otherCluster = verifyDial(dial({ cluster: 'staging' }).headers, ctx);
    expect(otherCluster).toEqual({ ok: false, status: 403, reason: 'cluster mismatch' });
  });

  it('refuses, once authenticated, a peer whose name sorts after its own: this region dials that one', () => {
    const { ctx, dial } = setup();
    expect(verifyDial(dial({ self: C }).headers, ctx)).toMatchObject({ ok: false, status: 409, reason: /this region dials that peer itself/ });
    // An unauthenticated dial learns only that its proof is wrong.
    expect(verifyDial(dial({ self: C, secret: 'guess' }).headers, ctx)).toEqual({ ok: false, status: 401, reason: 'bad proof' });
  });

  it('refuses an incompatible protocol version with 426', () => {
    const { ctx, dial } = setup();
    const verdict = verifyDial(dial({ protocolVersion: PROTOCOL_VERSION + 1 }).headers, ctx);
    expect(verdict).toMatchObject({ ok: false, status: 426 });
    if (verdict.ok) throw new Error('unreachable');
    expect(verdict.reason).toMatch(new RegExp(`protocol version ${PROTOCOL_VERSION + 1} not supported`));
  });

  it('refuses a replayed handshake: the server nonce is single use', () => {
    const { ctx, dial } = setup();
    const { headers } = dial();
    expect(verifyDial(headers, ctx).ok).toBe(true);
    expect(verifyDial({ ...headers }, ctx)).toEqual({ ok: false, status: 401, reason: 'server nonce unknown, expired or already used' });
  });

  it('refuses a nonce that this server never issued', () => {
    const { ctx } = setup();
    const { headers } = createDialHeaders({ secret: SECRET, cluster: CLUSTER, self: A, peer: B, serverNonce: createNonce() });
    expect(verifyDial(headers, ctx)).toMatchObject({ ok: false, status: 401, reason: /server nonce/ });
  });

  it('refuses an expired server nonce', () => {
    let clock = 1_000;
    const { ctx, dial } = setup({ now: () => clock });
    const { headers } = dial();
    clock += 30_000;
    expect(verifyDial(headers, ctx)).toMatchObject({ ok: false, status: 401, reason: /server nonce/ });
  });

  it('refuses tampered proofs and tampered signed headers', () => {
    const { ctx, dial } = setup();
    const { headers } = dial();
    const proof = headers[HEADER.proof]!;
    const flipped = (proof[0] === 'A' ? 'B' : 'A') + proof.slice(1);
    expect(verifyDial({ ...headers, [HEADER.proof]: flipped }, ctx)).toEqual({ ok: false, status: 401, reason: 'bad proof' });
    expect(verifyDial({ ...headers, [HEADER.proof]: proof.slice(0, 20) }, ctx)).toMatchObject({ status: 401 });
    expect(verifyDial({ ...headers, [HEADER.proof]: '' }, ctx)).toMatchObject({ status: 400 });
    // Claiming to be another configured peer, or swapping the client nonce, breaks the proof.
    expect(verifyDial({ ...headers, [HEADER.region]: C }, ctx)).toMatchObject({ status: 401, reason: 'bad proof' });
    expect(verifyDial({ ...headers, [HEADER.nonce]: createNonce() }, ctx)).toMatchObject({ status: 401, reason: 'bad proof' });
    // Failed attempts do not burn the nonce: the real dialer still gets in.
    expect(verifyDial(headers, ctx).ok).toBe(true);
  });

  it('refuses missing or malformed headers with 400', () => {
    const { ctx, dial } = setup();
    const { headers } = dial();
    for (const name of Object.values(HEADER)) {
      const without: IncomingHttpHeaders = { ...headers };
      delete without[name];
      expect(verifyDial(without, ctx)).toMatchObject({ ok: false, status: 400 });
    }
    expect(verifyDial({ ...headers, [HEADER.protocol]: '1.0' }, ctx)).toMatchObject({ status: 400 });
    expect(verifyDial({ ...headers, [HEADER.nonce]: 'c2hvcnQ=' }, ctx)).toMatchObject({ status: 400, reason: 'malformed nonce' });
  });

  it('binds every field unambiguously', () => {
    const t: Transcript = {
      secret: SECRET, cluster: 'ab', dialer: 'c' as RegionId, acceptor: B,
      protocolVersion: 1, serverNonce: createNonce(), clientNonce: createNonce(),
    };
    expect(dialProof(t)).not.toBe(dialProof({ ...t, cluster: 'a', dialer: 'bc' as RegionId }));
    expect(dialProof(t)).not.toBe(dialProof({ ...t, protocolVersion: 2 }));
    expect(dialProof(t)).not.toBe(acceptProof(t));
    expect(dialProof(t)).not.toBe(dialProof({ ...t, dialer: t.acceptor, acceptor: t.dialer }));
    expect(() => dialProof({ ...t, secret: '' })).toThrow(RangeError);
  });
});

describe('nonce store', () => {
  it('issues distinct 32-byte nonces, each accepted once and only before expiry', () => {
    let clock = 0;
    const store = createNonceStore({ ttlMs: 100, max: 10, now: () => clock });
    const a = store.issue();
    const b = store.issue();
    expect(a).not.toBe(b);
    expect(isNonce(a)).toBe(true);
    expect(Buffer.from(a, 'base64')).toHaveLength(32);
    expect(store.consume(a)).toBe(true);
    expect(store.consume(a)).toBe(false);
    clock = 100;
    expect(store.consume(b)).toBe(false);
    expect(store.consume('never issued')).toBe(false);
  });

  it('stays bounded, dropping expired and then the oldest nonces', () => {
    let clock = 0;
    const store = createNonceStore({ ttlMs: 1_000, max: 3, now: () => clock });
    const issued = Array.from({ length: 5 }, () => store.issue());
    expect(store.size).toBe(3);
    expect(store.consume(issued[0]!)).toBe(false);
    expect(store.consume(issued[1]!)).toBe(false);
    expect(store.consume(issued[4]!)).toBe(true);
    clock = 1_000;
    store.issue();
    expect(store.size).toBe(1);
  });
});

describe('challenge body', () => {
  it('accepts a well-formed challenge and nothing else', () => {
    const nonce = createNonce();
    expect(parseChallenge({ nonce, region: 'eu-west' })).toEqual({ nonce, region: 'eu-west' });
    for (const body of [null, 'x', { nonce }, { nonce: 'abc', region: 'eu' }, { nonce, region: '' }, { nonce, region: 7 }]) {
      expect(parseChallenge(body)).toBeNull();
    }
  });
});
