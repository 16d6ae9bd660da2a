/**
 * `npm run fuzz -- [--cases N] [--seed S] [--kinds http,yjs,frames,converge] [--regions 2|3]`
 *
 * The long fuzz campaign over the three inputs a region takes from outside
 * (the properties of test/fuzz.test.ts, run for many more cases). It keeps
 * going after a failure: each chunk of cases runs under its own seed, a
 * failing chunk is shrunk (in-process kinds) and recorded with its seed, and
 * a cluster that a failure may have damaged is started afresh. Prints a
 * summary: cases per input kind, answers and refusals by code, the slowest
 * /healthz, and every distinct failure with its seed and counterexample.
 * `--cases` is the total, shared out: http 50 %, yjs 35 %, frames 10 %,
 * converge 5 % (one converge case is a run of up to 8 inputs spread over
 * `--regions` regions, three unless told otherwise, some of them made while
 * a region is cut off from its peers).
 */
import { parseArgs } from 'node:util';
import fc from 'fast-check';
import { startApiNode } from '../test/helpers/api-node.js';
import { startTestCluster } from '../test/helpers/cluster.js';
import { convergeStepArb, convergence, runConvergeSteps, syncOf } from '../test/helpers/fuzz-converge.js';
import { frameSpecArb } from '../test/helpers/fuzz-frames.js';
import { httpCaseArb } from '../test/helpers/fuzz-http-cases.js';
import { FUZZ_TOKENS, runHttpCase } from '../test/helpers/fuzz-http.js';
import { FuzzStats, assertNone } from '../test/helpers/fuzz-oracle.js';
import { runFrameCase } from '../test/helpers/fuzz-peer.js';
import { injectTarget, socketTarget, startHealthPoller, type FuzzTarget } from '../test/helpers/fuzz-target.js';
import { runYjsCase, yjsCaseArb } from '../test/helpers/fuzz-yjs.js';

const KINDS = { http: 0.5, yjs: 0.35, frames: 0.1, converge: 0.05 } as const;
type Kind = keyof typeof KINDS;
const SHORT_WAITS = { defaultWaitMs: 50, maxWaitMs: 100 };
const YJS_UPDATE_BYTES = 1024 * 1024;
const HEALTH_MS = 100;

let counter = 0;
const unique = (): string => `${Date.now().toString(36)}${(counter++).toString(36)}`;

/** A property over one kind, with how to set it up and tear it down. */
interface Campaign {
  chunk: number;
  /** Shrinking needs cases that do not depend on the region's history: only in-process kinds shrink. */
  shrink: boolean;
  start(): Promise<fc.IAsyncProperty<[unknown]>>;
  stop(): Promise<number>;
}

function httpCampaign(stats: FuzzStats): Campaign {
  let node: Awaited<ReturnType<typeof startApiNode>> | null = null;
  let poller: ReturnType<typeof startHealthPoller> | null = null;
  return {
    chunk: 500, shrink: true,
    async start() {
      node = await startApiNode({ region: 'fuzz', tokens: FUZZ_TOKENS, limits: SHORT_WAITS });
      const target = injectTarget(node.app, 'fuzz');
      poller = startHealthPoller(target);
      const ctx = { target, tokens: true, yjsUpdateBytes: YJS_UPDATE_BYTES, unique, stats };
      return fc.asyncProperty(httpCaseArb(), async (c) => {
        stats.countCase(`http:${c.route}`);
        assertNone((await runHttpCase(ctx, c)).violations);
      }) as fc.IAsyncProperty<[unknown]>;
    },
    async stop() {
      const max = (await poller?.stop())?.maxMs ?? 0;
      await node?.close();
      return max;
    },
  };
}

function yjsCampaign(stats: FuzzStats): Campaign {
  let node: Awaited<ReturnType<typeof startApiNode>> | null = null;
  return {
    chunk: 300, shrink: true,
    async start() {
      node = await startApiNode({ region: 'fuzz', tokens: FUZZ_TOKENS, limits: SHORT_WAITS });
      const ctx = { targets: [injectTarget(node.app, 'fuzz')], stats };
      return fc.asyncProperty(yjsCaseArb(), async (c) => {
        assertNone(await runYjsCase(ctx, c, { collection: 'fz-yjs', id: `d-${unique()}` }));
      }) as fc.IAsyncProperty<[unknown]>;
    },
    async stop() {
      await node?.close();
      return 0;
    },
  };
}

type Cluster = Awaited<ReturnType<typeof startTestCluster>>;

function framesCampaign(stats: FuzzStats): Campaign {
  let cluster: Cluster | null = null;
  let poller: ReturnType<typeof startHealthPoller> | null = null;
  return {
    chunk: 50, shrink: false,
    async start() {
      cluster = await startTestCluster(['ap-south', 'eu-west'], { limits: SHORT_WAITS });
      const target = socketTarget(cluster.url('eu-west'), 'eu-west');
      await target.send({ method: 'PUT', path: '/v1/docs/fz-guard/one', headers: { 'content-type': 'application/json' }, body: Buffer.from('{"keep":true}') });
      const peerWriter = (await syncOf(socketTarget(cluster.url('ap-south'), 'ap-south'))).writer;
      await cluster.kill('ap-south');
      const ctx = {
        target, url: cluster.url('eu-west'), self: 'ap-south', peer: 'eu-west', secret: cluster.secret, cluster: 'meridian-local',
        frames: { receiverWriter: (await syncOf(target)).writer, peerWriter, doc: 'fz-guard/one' }, probes: 0, stats,
      };
      const health = startHealthPoller(target);
      poller = health;
      const frames = fc.array(frameSpecArb({ mutated: true }), { minLength: 1, maxLength: 3 });
      return fc.asyncProperty(frames, async (specs) => {
        const violations = await runFrameCase(ctx, specs);
        if (health.report().maxMs > HEALTH_MS) violations.push(`/healthz took ${health.report().maxMs.toFixed(0)} ms`);
        assertNone(violations);
      }) as fc.IAsyncProperty<[unknown]>;
    },
    async stop() {
      const max = (await poller?.stop())?.maxMs ?? 0;
      await cluster?.dispose();
      return max;
    },
  };
}

const CONVERGE_REGIONS = ['ap-south', 'eu-west', 'us-east'];

interface CampaignOptions {
  /** Regions of the converge kind's cluster. */
  regions: number;
}

function convergeCampaign(stats: FuzzStats, { regions }: CampaignOptions): Campaign {
  let cluster: Cluster | null = null;
  let pollers: ReturnType<typeof startHealthPoller>[] = [];
  return {
    chunk: 10, shrink: false,
    async start() {
      const names = CONVERGE_REGIONS.slice(0, regions);
      const c = await startTestCluster(names, { limits: SHORT_WAITS });
      cluster = c;
      const targets: FuzzTarget[] = names.map((r) => socketTarget(c.url(r), r));
      pollers = targets.map((t) => startHealthPoller(t));
      return fc.asyncProperty(fc.array(convergeStepArb(regions, true), { minLength: 1, maxLength: 8 }), async (steps) => {
        const doc = { collection: 'fz-conv', id: `d-${unique()}` };
        const violations = await runConvergeSteps({ targets, stats, faults: c }, doc, steps);
        violations.push(...(await convergence(targets, [doc])));
        assertNone(violations);
      }) as fc.IAsyncProperty<[unknown]>;
    },
    async stop() {
      const reports = await Promise.all(pollers.map((p) => p.stop()));
      await cluster?.dispose();
      return Math.max(0, ...reports.map((r) => r.maxMs));
    },
  };
}

const CAMPAIGNS: Record<Kind, (stats: FuzzStats, options: CampaignOptions) => Campaign> = {
  http: httpCampaign, yjs: yjsCampaign, frames: framesCampaign, converge: convergeCampaign,
};

/** Runs `cases` cases of one kind in chunks, each under its own seed; a failure restarts the target. */
async function runKind(kind: Kind, cases: number, seed: number, stats: FuzzStats, options: CampaignOptions): Promise<void> {
  const campaign = CAMPAIGNS[kind](stats, options);
  let done = 0;
  let chunkSeed = seed;
  let property = await campaign.start();
  while (done < cases) {
    const numRuns = Math.min(campaign.chunk, cases - done);
    const details = await fc.check(property, { seed: chunkSeed, numRuns, endOnFailure: !campaign.shrink });
    done += details.numRuns;
    if (details.failed) {
      const error = 'errorInstance' in details && details.errorInstance instanceof Error ? details.errorInstance.message : 'failed';
      stats.failures.push({ kind, seed: chunkSeed, detail: `${error}\ncounterexample: ${fc.stringify(details.counterexample)}` });
      console.log(`[${kind}] failure under seed ${chunkSeed}: ${error.split('\n')[0]}`);
      stats.healthMs(await campaign.stop());
      property = await campaign.start();
    }
    if (details.numRuns === 0) done += numRuns;
    chunkSeed++;
    console.log(`[${kind}] ${done}/${cases} cases`);
  }
  stats.healthMs(await campaign.stop());
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      cases: { type: 'string', default: '2000' }, seed: { type: 'string' }, kinds: { type: 'string' },
      regions: { type: 'string', default: '3' },
    },
  });
  const regions = Number(values.regions);
  if (!Number.isInteger(regions) || regions < 2 || regions > CONVERGE_REGIONS.length) {
    throw new Error(`--regions takes 2 to ${CONVERGE_REGIONS.length}, not "${values.regions}"`);
  }
  const total = Number(values.cases);
  const seed = values.seed === undefined ? Date.now() % 2 ** 31 : Number(values.seed);
  const kinds = (values.kinds?.split(',') ?? Object.keys(KINDS)) as Kind[];
  for (const k of kinds) if (!(k in KINDS)) throw new Error(`unknown kind "${k}"; kinds: ${Object.keys(KINDS).join(', ')}`);
  const share = kinds.reduce((s, k) => s + KINDS[k], 0);
  console.log(`fuzz campaign: ${total} cases, seed ${seed}, kinds ${kinds.join(', ')}`);
  const stats = new FuzzStats();
  const started = performance.now();
  for (const kind of kinds) await runKind(kind, Math.max(1, Math.round((total * KINDS[kind]) / share)), seed, stats, { regions });
  console.log(`\nfuzz campaign done in ${((performance.now() - started) / 1000).toFixed(0)} s (seed ${seed})\n${stats.format()}`);
  process.exitCode = stats.failures.length > 0 ? 1 : 0;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(2);
});
