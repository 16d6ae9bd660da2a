import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalCluster, type RegionSpec } from '../../src/faults/cluster.js';

/** Replication timings short enough for tests, long enough for a loaded 2-core machine. */
export const FAST_REPLICATION = {
  replication: { heartbeatMs: 200, suspectAfterMisses: 3, deadAfterMs: 1500, reconnectMinMs: 50, reconnectMaxMs: 1000, antiEntropyMs: 1500 },
  storage: { gcIntervalMs: 500, compactIntervalMs: 200 },
  log: { level: 'info' },
};

export async function startTestCluster(
  names: string[] = ['ap-south', 'eu-west', 'us-east'],
  extra: Record<string, unknown> = {},
  perRegion: Record<string, Record<string, unknown>> = {},
): Promise<LocalCluster & { dispose(): Promise<void> }> {
  // Ports are picked free and bound a moment later by the region process; a
  // test running beside this one can take one in between. Start again then.
  try {
    return await startTestClusterOnce(names, extra, perRegion);
  } catch {
    return startTestClusterOnce(names, extra, perRegion);
  }
}

async function startTestClusterOnce(
  names: string[],
  extra: Record<string, unknown>,
  perRegion: Record<string, Record<string, unknown>>,
): Promise<LocalCluster & { dispose(): Promise<void> }> {
  const baseDir = mkdtempSync(join(tmpdir(), 'meridian-cluster-'));
  const specs: RegionSpec[] = names.map((region) => ({ region, extra: perRegion[region] ?? {} }));
  const cluster = new LocalCluster({ regions: specs, baseDir, extra: { ...FAST_REPLICATION, ...extra } });
  const disposable = Object.assign(cluster, {
    async dispose() {
      await cluster.stop(true);
      rmSync(baseDir, { recursive: true, force: true });
    },
  });
  try {
    await cluster.start();
  } catch (err) {
    await disposable.dispose();
    throw err;
  }
  return disposable;
}

export interface HttpResult<T = unknown> {
  status: number;
  body: T;
  headers: Headers;
}

export async function http<T = unknown>(
  url: string,
  init: { method?: string; body?: unknown; headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<HttpResult<T>> {
  const headers: Record<string, string> = { ...(init.headers ?? {}) };
  let body: string | undefined;
  if (init.body !== undefined) {
    headers['content-type'] ??= 'application/json';
    body = JSON.stringify(init.body);
  }
  const method = init.method ?? 'GET';
  const send = () => fetch(url, { method, headers, body, signal: AbortSignal.timeout(init.timeoutMs ?? 10_000) });
  let res: Response;
  try {
    res = await send();
  } catch (err) {
    // A kept-alive connection the region closed as idle (limits.keepAliveTimeoutMs)
    // just as this request went out fails with nothing read: a read is sent again.
    if (method !== 'GET' || !closedUnread(err)) throw err;
    res = await send();
  }
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = text;
  }
  return { status: res.status, body: parsed as T, headers: res.headers };
}

function closedUnread(err: unknown): boolean {
  const cause = err instanceof Error ? (err.cause as { code?: string; socket?: { bytesRead?: number } } | undefined) : undefined;
  return cause?.code === 'UND_ERR_SOCKET' && cause.socket?.bytesRead === 0;
}

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | null | false>,
  timeoutMs = 20_000,
  everyMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

export interface SyncBody {
  region: string;
  writer: string;
  digest: string;
  isolated: boolean;
  pendingDocs: number;
  conflicts: number;
  agree: boolean;
  peers: {
    region: string;
    state: string;
    route: string;
    rttMs: number | null;
    lastError: string | null;
    outbound: { pendingUpdates: number; pendingBytes: number; lagMs: number };
    inbound: { pendingUpdates: number; lagMs: number };
  }[];
}

export async function syncStatus(url: string): Promise<SyncBody> {
  const r = await http<SyncBody>(`${url}/v1/sync`);
  if (r.status !== 200) throw new Error(`/v1/sync answered ${r.status}`);
  return r.body;
}

/**
 * Waits until every region reports the same digest and nothing pending; on
 * timeout, the error says what each region last reported.
 */
export async function waitForConvergence(cluster: LocalCluster, timeoutMs = 30_000): Promise<string> {
  let last: SyncBody[] = [];
  try {
    return await waitFor('convergence', async () => {
      const all = await Promise.all([...cluster.regions.values()].map((r) => syncStatus(r.url)));
      last = all;
      const digests = new Set(all.map((s) => s.digest));
      const quiet = all.every((s) => s.pendingDocs === 0 && s.peers.every((p) => p.outbound.pendingUpdates === 0));
      return digests.size === 1 && quiet ? [...digests][0] : undefined;
    }, timeoutMs, 200);
  } catch (err) {
    const seen = last.map((s) => `${s.region}: digest ${s.digest.slice(0, 12)}, pending docs ${s.pendingDocs}, peers ${
      s.peers.map((p) => `${p.region} ${p.state} (${p.outbound.pendingUpdates} to send, ${p.inbound.pendingUpdates} to receive)`).join(', ')}`);
    throw new Error(`${err instanceof Error ? err.message : String(err)}; last reported: ${seen.join('; ') || 'nothing'}`, { cause: err });
  }
}
