/**
 * A peer that speaks the replication protocol by hand: one link to a region,
 * authenticated with the real cluster secret as one of its configured peers
 * (which must be stopped, or its own link supersedes this one).
 */
import { WebSocket } from 'ws';
import type { RegionId, VersionVector } from '../../src/ids.js';
import { CHALLENGE_PATH, REPLICATE_PATH, createDialHeaders } from '../../src/replication/handshake.js';
import { decodeFrame, encodeFrame, type Frame } from '../../src/replication/protocol.js';
import { http } from './cluster.js';

export class ImpostorLink {
  readonly frames: Frame[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private waiters: (() => void)[] = [];
  private pinger: NodeJS.Timeout | null = null;

  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      this.frames.push(decodeFrame(new Uint8Array(data), 1 << 26));
      for (const w of this.waiters.splice(0)) w();
    });
    this.closed = new Promise((resolve) =>
      ws.once('close', (code, reason) => {
        if (this.pinger) clearInterval(this.pinger);
        resolve({ code, reason: reason.toString() });
      }),
    );
  }

  /** Heartbeats stating `vv`, as a real peer sends, so that the region does not time the link out. */
  keepAlive(vv: VersionVector): void {
    let id = 0;
    this.pinger = setInterval(() => this.send({ type: 'ping', id: ++id, sentAt: performance.now(), vv, links: [], lagMs: 0 }), 150);
  }

  /** Links to the region at `url` as `self`, its configured peer, proving `secret` (the cluster's). */
  static async open(url: string, self: RegionId, region: RegionId, secret: string): Promise<ImpostorLink> {
    const { body } = await http<{ nonce: string }>(`${url}${CHALLENGE_PATH}`);
    const { headers } = createDialHeaders({ secret, cluster: 'meridian-local', self, peer: region, serverNonce: body.nonce });
    const ws = new WebSocket(`${url.replace('http', 'ws')}${REPLICATE_PATH}`, { headers });
    const link = new ImpostorLink(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return link;
  }

  /** The first frame matching `type`, waiting for it. */
  async next<T extends Frame['type']>(type: T, timeoutMs = 10_000): Promise<Extract<Frame, { type: T }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.frames.find((f) => f.type === type);
      if (found) return found as Extract<Frame, { type: T }>;
      if (Date.now() > deadline) throw new Error(`no ${type} frame within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }

  send(frame: Frame | Uint8Array): void {
    this.ws.send(frame instanceof Uint8Array ? frame : encodeFrame(frame));
  }

  /** Stops reading the socket: what the region sends waits in the kernel's buffers, then in its own. */
  pause(): void {
    this.ws.pause();
  }

  resume(): void {
    this.ws.resume();
  }

  /** The close code, or 'open' if the region kept the link for `ms`. */
  async closeCode(ms = 10_000): Promise<number | 'open'> {
    const timeout = new Promise<'open'>((resolve) => setTimeout(() => resolve('open'), ms));
    const result = await Promise.race([this.closed, timeout]);
    return result === 'open' ? 'open' : result.code;
  }

  close(): void {
    this.ws.close(1000);
  }
}
