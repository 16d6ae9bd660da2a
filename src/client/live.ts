/**
 * A live Yjs connection that follows the nearest healthy region: a
 * y-websocket provider to the first region of the client's order, replaced
 * by one to the next region when its region stops answering.
 *
 * Nothing is lost in a move: the `Y.Doc` and its awareness stay, and the new
 * provider's sync sends the region everything it lacks, including local
 * edits the old region never acknowledged; the local presence state is
 * announced again on connect. Refusals that reconnecting cannot fix
 * (close codes 4400-4499: a read-only token, a bad update) end the session
 * instead of moving it: every region would refuse the same.
 *
 * One of them needs the app: `document_replaced` (4410). A peer region's
 * state replaced the document (a content conflict, two writers under one
 * Yjs client id), and `ydoc` holds the losing content under the same ids as
 * the winning one, so no sync can repair it. The session ends and calls
 * `onReplaced`; the app opens the document again with a new `Y.Doc` and
 * binds its editor to that one. The losing state stays readable at
 * `GET /v1/docs/{collection}/{id}/conflicts`.
 */
import { Awareness } from 'y-protocols/awareness';
import { WebsocketProvider } from 'y-websocket';
import type * as Y from 'yjs';
import type { RegionEndpoint } from './regions.js';
import { LIVE_CLOSE } from '../contract.js';

export interface LiveOptions {
  /** Regions in the order to try them, nearest healthy first (e.g. the client's region table); asked at every move. */
  regions: () => readonly RegionEndpoint[];
  /** A bearer token, sent as `?token=` (browsers cannot set WebSocket headers). */
  token?: string;
  /** The WebSocket class; in Node pass `WebSocket` from the `ws` package. */
  WebSocketPolyfill?: unknown;
  /** Failed connection attempts in a row at one region before moving to the next; default 2. */
  failuresBeforeMove?: number;
  /** Ask for meridian-version messages (type 100) after each commit. */
  versions?: boolean;
  /** Told each time the session connects to a region's endpoint (the first one included). */
  onRegion?: (region: RegionEndpoint) => void;
  /**
   * Told when the document was replaced by a peer's state (close code 4410,
   * `document_replaced`): the session has ended, and `ydoc` must not be
   * synced again. Call `live()` again with a new `Y.Doc`.
   */
  onReplaced?: () => void;
  /**
   * Told when a region ended the session with any other 44xx code (the token
   * may not read, or write; an update was refused for good, e.g.
   * `client_id_conflict`): y-websocket stops there, and the edits not
   * acknowledged stay in `ydoc` only. `reason` is the stable error code.
   */
  onStopped?: (code: number, reason: string) => void;
}

/** The live session of one document. */
export interface LiveSession {
  /** The provider in use now; replaced on a move (bind editors to `doc` and `awareness`, which stay). */
  readonly provider: WebsocketProvider;
  /** The region the provider is connected (or connecting) to. */
  readonly region: RegionEndpoint;
  /** Presence, shared by every provider of this session. */
  readonly awareness: Awareness;
  /** Closes the connection; the document and awareness are left to the caller. */
  destroy(): void;
}

/**
 * Connects `ydoc` to `collection/id` at the first region of `options.regions()`.
 * @throws Error when no region is configured.
 */
export function live(collection: string, id: string, ydoc: Y.Doc, options: LiveOptions): LiveSession {
  const awareness = new Awareness(ydoc);
  const failuresBeforeMove = options.failuresBeforeMove ?? 2;
  let region = firstRegion(options.regions(), null);
  let provider = open(region);
  let destroyed = false;

  function open(to: RegionEndpoint): WebsocketProvider {
    const params: Record<string, string> = {};
    if (options.token !== undefined) params['token'] = options.token;
    if (options.versions === true) params['versions'] = '1';
    const serverUrl = `${to.url.replace(/^http/, 'ws').replace(/\/+$/, '')}/v1/live/${encodeURIComponent(collection)}`;
    const next = new WebsocketProvider(serverUrl, id, ydoc, {
      awareness, params, disableBc: true,
      ...(options.WebSocketPolyfill !== undefined ? { WebSocketPolyfill: options.WebSocketPolyfill as typeof WebSocket } : {}),
    });
    next.on('closed', (event) => {
      if (destroyed || next !== provider) return;
      if (event.code !== LIVE_CLOSE.documentReplaced) {
        options.onStopped?.(event.code, event.reason);
        return;
      }
      // y-websocket already stopped (a 44xx code); nothing of `ydoc` may reach a region again.
      destroyed = true;
      next.destroy();
      options.onReplaced?.();
    });
    next.on('connection-close', () => {
      if (destroyed || next !== provider || !next.shouldConnect) return;
      if (next.wsUnsuccessfulReconnects >= failuresBeforeMove) move();
    });
    options.onRegion?.(to);
    return next;
  }

  function move(): void {
    const from = region;
    region = firstRegion(options.regions(), from.name);
    provider.destroy();
    provider = open(region);
  }

  return {
    get provider() {
      return provider;
    },
    get region() {
      return region;
    },
    awareness,
    destroy() {
      destroyed = true;
      provider.destroy();
    },
  };
}

/** The first region of `order` other than `avoid` (the one that failed), or `avoid` itself when it is the only one. */
function firstRegion(order: readonly RegionEndpoint[], avoid: string | null): RegionEndpoint {
  const pick = order.find((r) => r.name !== avoid) ?? order[0];
  if (!pick) throw new Error('live(): no region is configured');
  return pick;
}
