/**
 * Drives the docker-compose stack for test/compose.e2e.ts through the same
 * commands the README gives users (`scripts/compose.sh ...`), plus an HTTP
 * writer per region that records which writes were acknowledged.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REGIONS = ['us-east', 'eu-west', 'ap-south'] as const;
export type Region = (typeof REGIONS)[number];
const REQUEST_TIMEOUT_MS = 3000;

/** A shell command as the README writes it, run from the repository root with `env` added; throws on failure. */
export function sh(command: string, env: NodeJS.ProcessEnv, timeoutMs = 120_000): string {
  const started = Date.now();
  const r = spawnSync('bash', ['-c', command], { cwd: ROOT, env: { ...process.env, ...env }, encoding: 'utf8', timeout: timeoutMs });
  const took = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`$ ${command}   (${took}s, exit ${r.status ?? r.signal})`);
  if (r.status !== 0) throw new Error(`\`${command}\` failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout.trim();
}

/** One recorded write: a document of its own, or a value added to the shared add-wins set. */
export interface AckedWrite {
  region: Region;
  kind: 'doc' | 'set';
  key: string;
}

/** Fetch with a deadline; resolves to null when the region did not answer. */
export async function request(url: string, init: RequestInit = {}): Promise<Response | null> {
  try {
    return await fetch(url, { ...init, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  } catch (err) {
    if (err instanceof Error) return null;
    throw err;
  }
}

/**
 * Writes in a loop at one region until stopped: even steps create their own
 * document, odd ones add a value to `e2e/shared`'s add-wins set (concurrent
 * with every other region). Only writes answered 200 are recorded.
 */
export class Writer {
  readonly acked: AckedWrite[] = [];
  attempts = 0;
  private running = false;
  private loop: Promise<void> = Promise.resolve();

  constructor(
    readonly region: Region,
    private readonly url: () => string,
    private readonly tag: string,
  ) {}

  start(): void {
    this.running = true;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  private async run(): Promise<void> {
    while (this.running) {
      const n = this.attempts++;
      const key = `${this.region}-${this.tag}-${n}`;
      const write = n % 2 === 0
        ? { kind: 'doc' as const, path: `/v1/docs/e2e/${key}`, method: 'PUT', body: { region: this.region, n } }
        : { kind: 'set' as const, path: '/v1/docs/e2e/shared/ops', method: 'POST', body: { ops: [{ op: 'add', path: ['acks'], value: key }] } };
      const res = await request(`${this.url()}${write.path}`, {
        method: write.method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(write.body),
      });
      if (res?.status === 200) this.acked.push({ region: this.region, kind: write.kind, key });
      else await new Promise((r) => setTimeout(r, 200));
      await res?.arrayBuffer();
    }
  }
}

/** `/v1/sync` of a region, or null when it does not answer. */
export async function syncOf(url: string): Promise<SyncStatus | null> {
  const res = await request(`${url}/v1/sync`);
  return res?.status === 200 ? ((await res.json()) as SyncStatus) : null;
}

/** The part of `/v1/sync` the test reads. */
export interface SyncStatus {
  region: string;
  digest: string;
  isolated: boolean;
  pendingDocs: number;
  peers: { region: string; state: string; rttMs: number | null; outbound: { pendingUpdates: number } }[];
}

/** Polls `check` every second until it returns a value, or throws after `timeoutMs` with the last reason. */
export async function until<T>(what: string, timeoutMs: number, check: () => Promise<T | string>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    const result = await check();
    if (typeof result !== 'string') return result;
    last = result;
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}: ${last}`);
}

/**
 * Waits until every region reports the same digest, with every link up, on
 * two polls in a row (a digest equal by chance mid-repair does not count); returns it.
 */
export async function converged(urls: () => Record<Region, string>, timeoutMs = 120_000): Promise<string> {
  let previous = '';
  // `until` takes a string for "not yet", so the digest comes back wrapped.
  const result = await until('equal digests everywhere', timeoutMs, async () => {
    const all = await Promise.all(REGIONS.map((r) => syncOf(urls()[r])));
    if (all.some((s) => s === null)) return 'a region does not answer';
    const statuses = all as SyncStatus[];
    const down = statuses.flatMap((s) => s.peers.filter((p) => p.state !== 'up').map((p) => `${s.region}->${p.region} ${p.state}`));
    const digests = new Set(statuses.map((s) => s.digest));
    const digest = digests.size === 1 && down.length === 0 ? statuses[0]!.digest : '';
    const stable = digest !== '' && digest === previous;
    previous = digest;
    return stable ? { digest } : `digests ${[...digests].map((d) => d.slice(0, 12)).join(' ')}; links not up: ${down.join(', ') || 'none'}`;
  });
  return result.digest;
}

/** The ids of collection `e2e` at a region, page by page. */
async function idsAt(url: string): Promise<Set<string>> {
  const ids = new Set<string>();
  for (let after: string | null = ''; after !== null; ) {
    const res = await request(`${url}/v1/docs/e2e?limit=1000${after ? `&after=${encodeURIComponent(after)}` : ''}`);
    if (res?.status !== 200) throw new Error(`listing e2e at ${url}: ${res?.status ?? 'no answer'}`);
    const page = (await res.json()) as { ids: string[]; next: string | null };
    for (const id of page.ids) ids.add(id);
    after = page.next;
  }
  return ids;
}

/** The acknowledged writes some region lacks, as `region: key` lines (empty when all are there). */
export async function missingWrites(urls: Record<Region, string>, acked: readonly AckedWrite[]): Promise<string[]> {
  const missing: string[] = [];
  for (const region of REGIONS) {
    const ids = await idsAt(urls[region]);
    const shared = await request(`${urls[region]}/v1/docs/e2e/shared`);
    const set = new Set(shared?.status === 200 ? ((await shared.json()) as { acks?: string[] }).acks ?? [] : []);
    for (const w of acked) {
      if (!(w.kind === 'set' ? set : ids).has(w.key)) missing.push(`${region}: ${w.kind} ${w.key}`);
    }
  }
  return missing;
}
