/**
 * Runs one frame case as a peer holding the cluster secret: dial, send the
 * frames, let the region answer or close, then check that it still takes a
 * write promptly, that a refused lone frame changed nothing, and that no frame
 * set a version beyond the bound or raised the region's own sequence.
 */
import { decodeVersion } from '../../src/docs/token.js';
import { syncOf } from './fuzz-converge.js';
import { dialAsPeer, frameBytes, type FrameContext, type FrameSpec } from './fuzz-frames.js';
import type { FuzzStats } from './fuzz-oracle.js';
import type { FuzzTarget } from './fuzz-target.js';

/** Close code of a link the region refused for a protocol error. */
const PROTOCOL_ERROR = 4400;
/** Sequence numbers at or beyond this are refused. */
const SEQ_BOUND = 2 ** 48;
/** How long the region gets to answer or close after the last frame. */
const SETTLE_MS = 150;
/** A region that does not take a write in this long counts as hung. */
const PROBE_TIMEOUT_MS = 3_000;

export interface PeerRunContext {
  /** The region under fuzz, as an HTTP target, and its base URL for the link. */
  target: FuzzTarget;
  url: string;
  /** The configured peer we pose as (it must be stopped), and the cluster's secret and name. */
  self: string;
  peer: string;
  secret: string;
  cluster: string;
  /** Writer ids of the receiver and of the real peer, and a document that exists. */
  frames: FrameContext;
  stats?: FuzzStats;
  probes: number;
}

interface RegionState {
  writer: string;
  digest: string;
  version: string;
}

async function regionState(ctx: PeerRunContext): Promise<RegionState> {
  const sync = await withTimeout(syncOf(ctx.target), `${ctx.target.name} /v1/sync`);
  // Any read carries the region's whole version vector in meridian-version.
  const [collection, id] = ctx.frames.doc.split('/') as [string, string];
  const read = await withTimeout(ctx.target.send({ method: 'GET', path: `/v1/docs/${collection}/${id}/yjs`, headers: {} }), 'read');
  return { writer: sync.writer, digest: sync.digest, version: read.headers['meridian-version'] ?? '' };
}

/** Sends the frames of one case on a fresh link and returns what they broke. */
export async function runFrameCase(ctx: PeerRunContext, specs: FrameSpec[]): Promise<string[]> {
  const before = await regionState(ctx);
  ctx.frames.receiverWriter = before.writer;
  const link = await dialAsPeer(ctx);
  for (const spec of specs) {
    ctx.stats?.countCase(`frames:${spec.kind === 'frame' ? `${spec.frame.type}${spec.mutation ? ':mutated' : ''}` : spec.kind}`);
    if (link.ws.readyState === link.ws.OPEN) link.ws.send(frameBytes(spec, ctx.frames));
  }
  let code = await Promise.race([link.closed, sleep(SETTLE_MS).then(() => null)]);
  if (code === null) {
    link.ws.close(1000);
    code = await Promise.race([link.closed, sleep(2_000).then(() => -1)]);
    if (code === -1) link.ws.terminate();
  }
  ctx.stats?.countOutcome(code === PROTOCOL_ERROR ? 'link closed 4400' : `link ended ${code}`);
  const violations: string[] = [];
  let after: RegionState;
  try {
    after = await regionState(ctx);
  } catch (err) {
    return [`the region stopped answering after the frames (items 12/13): ${String(err)}`];
  }
  // With several frames the first may be applied before a later one is refused; only a lone frame's refusal must change nothing.
  if (code === PROTOCOL_ERROR && specs.length === 1 && (after.digest !== before.digest || after.version !== before.version)) {
    violations.push(`a refused link changed the region: digest ${before.digest.slice(0, 12)} -> ${after.digest.slice(0, 12)}, version ${before.version} -> ${after.version}`);
  }
  violations.push(...versionProblems(before, after));
  violations.push(...(await probeWrite(ctx)));
  return violations;
}

/** No version beyond the bound; the region's own sequence is raised only by its own writes. */
function versionProblems(before: RegionState, after: RegionState): string[] {
  const problems: string[] = [];
  const vv = decodeVersion(after.version);
  for (const [writer, seq] of vv) {
    if (seq >= SEQ_BOUND) problems.push(`a peer frame set ${writer} to ${seq}, beyond 2^48 (items 12/13)`);
  }
  if (after.writer === before.writer) {
    const was = decodeVersion(before.version).get(before.writer as never) ?? 0;
    const now = vv.get(after.writer as never) ?? 0;
    if (now > was) problems.push(`a peer frame raised the region's own writer ${after.writer} from ${was} to ${now}`);
  }
  return problems;
}

async function probeWrite(ctx: PeerRunContext): Promise<string[]> {
  const n = ctx.probes++;
  try {
    const res = await withTimeout(ctx.target.send({
      method: 'PUT', path: `/v1/docs/fz-probe/p${n}`, headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify({ n })),
    }), 'probe write');
    return res.status === 200 ? [] : [`a write after the frames answered ${res.status}: ${res.body.toString('utf8').slice(0, 160)}`];
  } catch (err) {
    return [`a write after the frames did not complete (items 12/13: region hung): ${String(err)}`];
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${PROBE_TIMEOUT_MS} ms`)), PROBE_TIMEOUT_MS);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
