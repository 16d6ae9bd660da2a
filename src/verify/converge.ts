/**
 * Waits, after the final heal, until every region holds the same data:
 * equal digests, nothing pending in any direction, and every document of the
 * workload equal when read at each region. Returns the documents it read,
 * which the checker compares with the history.
 */
import { clusterStatus, type RegionStatusRow } from '../faults/sim-commands.js';
import type { JsonObject } from '../crdt/types.js';
import type { FinalState } from './checker.js';
import type { VerifyCluster } from './target.js';
import { request, sleep } from './workload.js';

export interface ConvergenceResult {
  converged: boolean;
  /** Milliseconds from the call until the regions agreed; null when they never did. */
  elapsedMs: number | null;
  /** Each region's digest at the last look (null: unreachable). */
  digests: Record<string, string | null>;
  /** Why the last look was not converged, empty when converged. */
  reasons: string[];
  /** Documents that read differently at different regions, at the last look. */
  differing: string[];
  finals: FinalState;
}

/** Polls until converged or `timeoutMs` has passed; reads the documents once the digests agree, and at the end. */
export async function awaitConvergence(
  cluster: VerifyCluster,
  docs: readonly string[],
  timeoutMs: number,
  pollMs = 250,
): Promise<ConvergenceResult> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    const status = await clusterStatus(cluster);
    if (status.converged) {
      const result = await look(status.rows, await readAll(cluster, docs), started);
      if (result.converged) return result;
    }
    await sleep(pollMs);
  }
  const status = await clusterStatus(cluster);
  return look(status.rows, await readAll(cluster, docs), started);
}

function look(rows: RegionStatusRow[], finals: FinalState, started: number): ConvergenceResult {
  const digests = Object.fromEntries(rows.map((r) => [r.region, r.digest]));
  const docs = new Set([...finals.values()].flatMap((m) => [...m.keys()]));
  const differing = [...docs].filter((doc) => new Set([...finals.values()].map((m) => canonical(m.get(doc)))).size > 1);
  const reasons = rows.flatMap(whyNot);
  if (new Set(rows.map((r) => r.digest)).size > 1) reasons.push('digests differ');
  if (differing.length > 0) reasons.push(`${differing.length} documents differ`);
  const converged = reasons.length === 0;
  return { converged, elapsedMs: converged ? Date.now() - started : null, digests, reasons, differing, finals };
}

function whyNot(r: RegionStatusRow): string[] {
  if (!r.reachable) return [`${r.region} unreachable (${r.process})`];
  const out: string[] = [];
  if (r.pendingDocs > 0) out.push(`${r.region}: ${r.pendingDocs} documents wait for missing updates`);
  for (const p of r.peers) if (p.outboundPending > 0) out.push(`${r.region}->${p.region}: ${p.outboundPending} updates pending`);
  return out;
}

/** Every document at every region; a document that cannot be read is left out for that region. */
async function readAll(cluster: VerifyCluster, docs: readonly string[]): Promise<FinalState> {
  const out = new Map<string, Map<string, JsonObject | null>>();
  await Promise.all([...cluster.regions.values()].map(async (r) => {
    const m = new Map<string, JsonObject | null>();
    out.set(r.name, m);
    for (const doc of docs) {
      const reply = await request(`${r.url}/v1/docs/${doc}`, 'GET', undefined, 2000);
      if ('error' in reply) continue;
      if (reply.status === 404) m.set(doc, null);
      else if (reply.status === 200) m.set(doc, reply.body as JsonObject);
    }
  }));
  return out;
}

/** JSON with object keys sorted, so that equal documents compare equal whatever their key order. */
export function canonical(value: unknown): string {
  if (value === undefined) return 'unreadable';
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  });
}
