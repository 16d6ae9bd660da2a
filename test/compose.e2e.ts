/**
 * `npm run test:compose`: the docker-compose stack for real. Builds the image,
 * brings up the three regions with their link proxies, and runs the README's
 * outage toolbox commands verbatim: a region cut off the WAN while both sides
 * keep writing, a SIGKILLed region under writes, a region whose process
 * crashed inside its container (restarted by Docker), 100 ms of latency on one
 * link, 10% packet loss on another; then a short `meridian verify --target
 * compose` run (its workload, faults and checker) against the same stack. After each, every region must hold the same digest and every
 * acknowledged write. Everything it creates (containers, networks, volumes,
 * the image) is removed at the end; the base image stays cached.
 *
 * Needs a running Docker daemon and docker-compose v1 or the v2 plugin
 * (`.ci/run` installs them). Runs in its own compose project on free host ports,
 * so a user's stack on 7101-7103 is not touched.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { converged, missingWrites, REGIONS, ROOT, sh, syncOf, until, Writer, type Region } from './compose-stack.js';
import { runVerify } from '../src/verify/run.js';
import { formatSummary } from '../src/verify/report.js';

const PROJECT = `meridian-e2e-${process.pid}`;
const ENV: NodeJS.ProcessEnv = {
  COMPOSE_PROJECT_NAME: PROJECT,
  MERIDIAN_IMAGE: `${PROJECT}:local`,
  // Empty: docker picks free host ports (see `scripts/compose.sh url R`).
  MERIDIAN_PORT_US_EAST: '',
  MERIDIAN_PORT_EU_WEST: '',
  MERIDIAN_PORT_AP_SOUTH: '',
};

/** The README's commands, run exactly as written there. */
const README_COMMANDS = {
  up: 'scripts/compose.sh up',
  isolate: 'scripts/compose.sh isolate eu-west',
  reconnect: 'scripts/compose.sh reconnect eu-west',
  kill: 'scripts/compose.sh kill ap-south',
  start: 'scripts/compose.sh start ap-south',
  wait: 'scripts/compose.sh wait ap-south',
  crash: 'scripts/compose.sh crash us-east',
  latency: 'scripts/compose.sh link eu-west us-east "latency 100ms"',
  heal: 'scripts/compose.sh link eu-west us-east heal',
  loss: 'scripts/compose.sh link ap-south us-east "loss 10%"',
  lossHeal: 'scripts/compose.sh link ap-south us-east heal',
  sync: 'scripts/compose.sh sync eu-west',
  down: 'scripts/compose.sh down --wipe',
} as const;

let urls = {} as Record<Region, string>;
const refreshUrls = () => {
  urls = Object.fromEntries(REGIONS.map((r) => [r, sh(`scripts/compose.sh url ${r}`, ENV)])) as Record<Region, string>;
};

/** Writers at every region for one phase; returns their acknowledged writes once stopped. */
async function writingDuring(tag: string, phase: () => Promise<void>) {
  const writers = REGIONS.map((r) => new Writer(r, () => urls[r], tag));
  for (const w of writers) w.start();
  try {
    await phase();
  } finally {
    await Promise.all(writers.map((w) => w.stop()));
  }
  for (const w of writers) console.log(`${tag}: ${w.region} ${w.acked.length}/${w.attempts} writes acknowledged`);
  return writers;
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('docker-compose stack', () => {
  beforeAll(() => {
    sh(README_COMMANDS.up, ENV, 420_000);
    refreshUrls();
  }, 450_000);

  afterAll(() => {
    // Everything the test created; `down` failing must not hide the test's own failure, hence no throw.
    const steps = [README_COMMANDS.down, `docker image rm -f ${ENV.MERIDIAN_IMAGE}`, 'docker image prune -f --filter dangling=true'];
    for (const step of steps) {
      try {
        sh(step, ENV, 120_000);
      } catch (err) {
        console.error(`cleanup: ${String(err)}`);
      }
    }
  }, 300_000);

  it('documents in the README every command it runs', () => {
    const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('### With Docker Compose'));
    for (const command of Object.values(README_COMMANDS)) expect(section).toContain(command);
  });

  it('keeps every acknowledged write through a region cut off the WAN', async () => {
    const writers = await writingDuring('partition', async () => {
      await pause(2000);
      sh(README_COMMANDS.isolate, ENV);
      await until('eu-west to see itself isolated', 30_000, async () => ((await syncOf(urls['eu-west']))?.isolated ? true : 'not yet'));
      await pause(5000);
      sh(README_COMMANDS.reconnect, ENV);
      await pause(2000);
    });
    // Both sides of the cut kept taking writes.
    for (const w of writers) expect(w.acked.length).toBeGreaterThan(10);
    await converged(() => urls);
    expect(await missingWrites(urls, writers.flatMap((w) => w.acked))).toEqual([]);
  }, 240_000);

  it('recovers a region SIGKILLed under writes', async () => {
    const writers = await writingDuring('kill', async () => {
      await pause(2000);
      sh(README_COMMANDS.kill, ENV);
      await pause(3000);
      sh(README_COMMANDS.start, ENV);
      sh(README_COMMANDS.wait, ENV, 150_000);
      // A restarted container may get another free host port.
      refreshUrls();
      await pause(2000);
    });
    await converged(() => urls);
    expect(await missingWrites(urls, writers.flatMap((w) => w.acked))).toEqual([]);
  }, 300_000);

  it('restarts a region whose process crashed, by itself, with nothing acknowledged lost', async () => {
    const restarts = () => Number(sh(`docker inspect -f '{{.RestartCount}}' $(docker ps -aq --filter label=com.docker.compose.project=${PROJECT} --filter label=com.docker.compose.service=us-east)`, ENV));
    expect(restarts()).toBe(0);
    const writers = await writingDuring('crash', async () => {
      await pause(2000);
      sh(README_COMMANDS.crash, ENV);
      // No `start`: the restart policy brings it back.
      await until('us-east restarted by docker', 60_000, async () => (restarts() > 0 ? true : 'not restarted'));
      sh('scripts/compose.sh wait us-east', ENV, 150_000);
      refreshUrls();
      await pause(2000);
    });
    expect(restarts()).toBe(1);
    await converged(() => urls);
    expect(await missingWrites(urls, writers.flatMap((w) => w.acked))).toEqual([]);
  }, 300_000);

  it('shows 100 ms of latency on one link in /v1/sync', async () => {
    const rttOf = async (from: Region, to: Region) =>
      (await syncOf(urls[from]))?.peers.find((p) => p.region === to)?.rttMs ?? null;
    // The previous test's restart leaves a catch-up behind: its RTT samples settle first.
    await until('the links to us-east to show RTTs under 100 ms', 60_000, async () => {
      const rtts = await Promise.all([rttOf('eu-west', 'us-east'), rttOf('ap-south', 'us-east')]);
      return rtts.every((r) => r !== null && r < 100) ? true : `rtts ${rtts.join(', ')}`;
    });
    sh(README_COMMANDS.latency, ENV);
    const slow = await until('the eu-west - us-east RTT to reach 100 ms', 30_000, async () => {
      const rtt = await rttOf('eu-west', 'us-east');
      return rtt !== null && rtt >= 100 ? rtt : `rtt ${rtt}`;
    });
    console.log(`eu-west -> us-east rtt with 100 ms latency: ${slow} ms`);
    // The README's view of the same status, from inside the container.
    const status = JSON.parse(sh(README_COMMANDS.sync, ENV)) as { peers: { region: string; rttMs: number }[] };
    expect(status.peers.find((p) => p.region === 'us-east')!.rttMs).toBeGreaterThanOrEqual(100);
    // Only the chosen link is slowed (asked until answered: a status request may fail, e.g. on a keep-alive socket the region just closed).
    const other = await until('the ap-south - us-east RTT', 10_000, async () => {
      const rtt = await rttOf('ap-south', 'us-east');
      return rtt !== null ? rtt : 'no answer';
    });
    expect(other).toBeLessThan(100);
    sh(README_COMMANDS.heal, ENV);
    await until('the RTT to fall back', 30_000, async () => {
      const rtt = await rttOf('eu-west', 'us-east');
      return rtt !== null && rtt < 100 ? rtt : `rtt ${rtt}`;
    });
  }, 120_000);

  it('converges under writes with packet loss on one link', async () => {
    sh(README_COMMANDS.loss, ENV);
    expect(sh('scripts/compose.sh links', ENV)).toMatch(/wan-ap-south-us-east: .*loss 10%/);
    const writers = await writingDuring('loss', async () => {
      await pause(6000);
    });
    // Converged while the loss is still on: retransmission delays slow the link, they do not break it.
    await converged(() => urls);
    expect(await missingWrites(urls, writers.flatMap((w) => w.acked))).toEqual([]);
    sh(README_COMMANDS.lossHeal, ENV);
  }, 180_000);

  it('passes a short meridian verify --target compose run', async () => {
    const report = mkdtempSync(path.join(tmpdir(), 'meridian-e2e-verify-'));
    try {
      const result = await runVerify({
        target: 'compose', env: { ...process.env, ...ENV }, seed: 11, duration: '20s', clients: 2,
        faults: 'isolate,kill,latency,wan', report, convergeTimeoutMs: 90_000, log: (line) => console.log(line),
      });
      console.log(formatSummary(result));
      expect(result.faults.ran.length).toBeGreaterThan(0);
      expect(result.ok).toBe(true);
    } finally {
      rmSync(report, { recursive: true, force: true });
    }
  }, 240_000);
});
