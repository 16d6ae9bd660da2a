/**
 * A failure detector for one peer, free of timers and sockets: the link code
 * reports what it sees and asks for a verdict with the current time.
 *
 * Any frame from the peer is a sign of life. Missing a few heartbeats makes the
 * peer `suspect` (it may only be slow); a long silence, or no connection at all,
 * makes it `down`.
 */
import type { PeerState } from './types.js';

export interface DetectorOptions {
  /** How often the peer is expected to send a heartbeat. */
  heartbeatMs: number;
  /** Heartbeats that may be missed before the peer is suspect. */
  suspectAfterMisses: number;
  /** Silence after which the peer is down. */
  deadAfterMs: number;
}

export interface Detector {
  /** Something arrived from the peer at `now`. */
  heard(now: number): void;
  /** A round-trip sample in ms, folded into a smoothed RTT. */
  rtt(ms: number): void;
  /** The link opened (counts as heard when `now` is given) or closed. */
  connected(up: boolean, now?: number): void;
  state(now: number): PeerState;
  /** Milliseconds since the peer was last heard, null if never. */
  lastSeenMs(now: number): number | null;
  /** Smoothed RTT in ms, null before the first sample. */
  rttMs(): number | null;
}

/** Weight of a new RTT sample, as in TCP's SRTT (RFC 6298). */
const RTT_ALPHA = 1 / 8;

export function createDetector(opts: DetectorOptions): Detector {
  const suspectAfterMs = opts.suspectAfterMisses * opts.heartbeatMs;
  // deadAfterMs below the suspect threshold is allowed: the peer then goes from up straight to down.
  if (!(opts.heartbeatMs > 0) || !(opts.suspectAfterMisses >= 0) || !(opts.deadAfterMs > 0)) {
    throw new RangeError('detector needs heartbeatMs > 0, suspectAfterMisses >= 0 and deadAfterMs > 0');
  }
  let lastHeard: number | null = null;
  let isConnected = false;
  let srtt: number | null = null;

  const heard = (now: number): void => {
    // Out-of-order reports must not move the last sign of life backwards.
    lastHeard = lastHeard === null ? now : Math.max(lastHeard, now);
  };

  return {
    heard,
    rtt(ms) {
      if (!Number.isFinite(ms) || ms < 0) return;
      srtt = srtt === null ? ms : srtt + RTT_ALPHA * (ms - srtt);
    },
    connected(up, now) {
      isConnected = up;
      if (up && now !== undefined) heard(now);
    },
    state(now) {
      if (!isConnected || lastHeard === null) return isConnected ? 'suspect' : 'down';
      const silence = now - lastHeard;
      if (silence > opts.deadAfterMs) return 'down';
      return silence > suspectAfterMs ? 'suspect' : 'up';
    },
    lastSeenMs: (now) => (lastHeard === null ? null : Math.max(0, now - lastHeard)),
    rttMs: () => srtt,
  };
}
