/**
 * The dashboard at `/ui`: its files and headers (fastify inject), the
 * simulator route, and, in a real headless Chromium against a 3-region
 * cluster of real processes, a link cut by the fault proxy shown down with
 * its lag rising, then recovery after the heal; and a link between two other
 * regions shown down from their heartbeats' reports.
 *
 * Chromium is the system's (/usr/bin/chromium; `.ci/run` installs the Debian
 * package when it is missing). Without it the browser test fails: a skipped
 * browser test would look like a passing one.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify, { type FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { DEFAULTS, parseConfig } from '../src/config.js';
import { applyEnv } from '../src/config-env.js';
import { packagedUiAssets, uiRoutes, UI_CSP } from '../src/api/routes-ui.js';
import { installErrorHandling } from '../src/api/errors.js';
import { startRegion } from '../src/region.js';
import { http, startTestCluster, waitFor } from './helpers/cluster.js';

const CHROMIUM = process.env.MERIDIAN_CHROMIUM ?? '/usr/bin/chromium';
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const OUTPUT = path.join(ROOT, 'test-output');
const STATUS_TOKEN = 'status-token-0123456789abcdef';

/** A stand-in for `meridian sim`'s control endpoint that records the commands it gets. */
async function fakeSimControl(): Promise<{ server: Server; url: string; commands: string[] }> {
  const commands: string[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const line = Buffer.concat(chunks).toString('utf8');
      commands.push(line);
      const ok = !line.startsWith('bogus');
      res.writeHead(ok ? 200 : 400, { 'content-type': 'text/plain' });
      res.end(ok ? `done: ${line}\n` : `unknown command 'bogus'; type 'help'\n`);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { server, url: `http://127.0.0.1:${port}`, commands };
}

async function uiApp(simControl: string | null): Promise<FastifyInstance> {
  const app = Fastify();
  installErrorHandling(app);
  await app.register(uiRoutes, {
    region: 'ap-south', ui: { enabled: true, simControl }, assets: packagedUiAssets(), logger: pino({ level: 'silent' }),
  });
  return app;
}

describe('dashboard files and routes', () => {
  let app: FastifyInstance | undefined;
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  test('serves the page, its modules and uPlot with a strict Content-Security-Policy', async () => {
    app = await uiApp(null);
    const page = await app.inject({ url: '/ui' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.headers['content-security-policy']).toBe(UI_CSP);
    expect(UI_CSP).toContain("script-src 'self'");
    // No inline script: every <script> names a file of this origin.
    expect(page.body).not.toMatch(/<script(?![^>]*\ssrc=)[^>]*>/);
    for (const file of ['app.js', 'uPlot.esm.js', 'uPlot.min.css', 'style.css']) {
      const res = await app.inject({ url: `/ui/${file}` });
      expect(res.statusCode, file).toBe(200);
      expect(res.headers['content-security-policy']).toBe(UI_CSP);
    }
    expect((await app.inject({ url: '/ui/config.json' })).json()).toEqual({
      region: 'ap-south', simControl: false, historyIntervalMs: 1000, historySamples: 900,
    });
  });

  test('serves only its own files: other names and paths are 404', async () => {
    app = await uiApp(null);
    for (const url of ['/ui/package.json', '/ui/..%2Fpackage.json', '/ui/%2e%2e/package.json', '/ui/uPlot.cjs.js', '/ui/nope.js']) {
      const res = await app.inject({ url });
      expect(res.statusCode, url).toBe(404);
      expect(res.json()).toMatchObject({ error: 'not_found' });
    }
  });

  test('POST /v1/sim/command exists only under a simulator, and forwards the command', async () => {
    app = await uiApp(null);
    expect((await app.inject({ method: 'POST', url: '/v1/sim/command', payload: { command: 'heal' } })).statusCode).toBe(404);
    await app.close();
    const sim = await fakeSimControl();
    try {
      app = await uiApp(sim.url);
      const ok = await app.inject({ method: 'POST', url: '/v1/sim/command', payload: { command: 'cut ap-south eu-west' } });
      expect(ok.statusCode).toBe(200);
      expect(ok.json()).toEqual({ output: 'done: cut ap-south eu-west' });
      const bad = await app.inject({ method: 'POST', url: '/v1/sim/command', payload: { command: 'bogus' } });
      expect(bad.statusCode).toBe(400);
      expect(bad.json()).toMatchObject({ error: 'invalid_command' });
      expect(sim.commands).toEqual(['cut ap-south eu-west', 'bogus']);
    } finally {
      sim.server.close();
    }
  });

  test('an unreachable simulator is 503 unavailable', async () => {
    app = await uiApp('http://127.0.0.1:1');
    const res = await app.inject({ method: 'POST', url: '/v1/sim/command', payload: { command: 'heal' } });
    expect(res.statusCode).toBe(503);
    expect(res.json()).toMatchObject({ error: 'unavailable' });
  });

  test('the switch defaults to on; MERIDIAN_UI and ui.simControl are checked', () => {
    expect(DEFAULTS.ui).toEqual({ enabled: true, simControl: null });
    const base = { region: 'ap-south', listen: { port: 1 }, dataDir: 'd', secret: 'secret-secret' };
    expect(parseConfig(applyEnv(base, { MERIDIAN_UI: 'false' }).config, '/tmp').ui.enabled).toBe(false);
    expect(() => applyEnv(base, { MERIDIAN_UI: 'off' })).toThrow(/MERIDIAN_UI: must be true or false/);
    expect(() => parseConfig({ ...base, ui: { simControl: 'ftp://x' } }, '/tmp')).toThrow(/ui\.simControl: must be an http/);
  });
});

describe('dashboard in a real browser', () => {
  let cluster: Awaited<ReturnType<typeof startTestCluster>> | undefined;
  let browser: Browser | undefined;
  let sim: Awaited<ReturnType<typeof fakeSimControl>> | undefined;

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`Chromium not found at ${CHROMIUM}: install the Debian package (apt-get install chromium) or set MERIDIAN_CHROMIUM`);
    }
    mkdirSync(OUTPUT, { recursive: true });
    sim = await fakeSimControl();
    cluster = await startTestCluster(undefined, { ui: { enabled: true, simControl: sim.url } });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await cluster?.dispose();
    sim?.server.close();
  });

  /** The outbound lag the page shows for a peer, from its row in the links table. */
  const shownLag = async (page: Page, peer: string): Promise<number> =>
    Number(await page.getAttribute(`#links tr[data-peer="${peer}"]`, 'data-out-lag'));

  test('shows a cut link down with its lag rising, then recovery after the heal', async () => {
    const c = cluster!;
    const page = await browser!.newPage({ viewport: { width: 1280, height: 1100 } });
    const consoleErrors: string[] = [];
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
    page.on('pageerror', (e) => consoleErrors.push(e.message));
    await page.goto(`${c.url('ap-south')}/ui`);
    await page.waitForSelector('#links tr[data-peer="eu-west"][data-state="up"]', { timeout: 30_000 });
    await page.waitForSelector('#graph [data-link="eu-west"][data-state="up"]');
    await page.waitForSelector('#agreement[data-agree="yes"]', { timeout: 30_000 });
    await page.screenshot({ path: path.join(OUTPUT, 'dashboard-up.png'), fullPage: true });

    c.setFault({ kind: 'down' }, 'ap-south', 'eu-west');
    let n = 0;
    const writer = setInterval(() => {
      void http(`${c.url('ap-south')}/v1/docs/notes/cut-${n++ % 5}`, { method: 'PUT', body: { n } }).catch(() => undefined);
    }, 100);
    try {
      await page.waitForSelector('#links tr[data-peer="eu-west"][data-state="down"]', { timeout: 30_000 });
      await page.waitForSelector('#graph [data-link="eu-west"][data-state="down"]');
      await waitFor('lag shown', async () => (await shownLag(page, 'eu-west')) > 0, 20_000);
      const first = await shownLag(page, 'eu-west');
      await waitFor('lag rising', async () => (await shownLag(page, 'eu-west')) > first, 20_000);
      await page.waitForSelector('#agreement[data-agree="no"]');
      await page.waitForSelector('[data-chart="eu-west"] canvas');
      await page.screenshot({ path: path.join(OUTPUT, 'dashboard-down.png'), fullPage: true });
      // The README's picture is refreshed on request only, so that test runs leave the tree as it was.
      if (process.env.MERIDIAN_UPDATE_SCREENSHOT === '1') {
        copyFileSync(path.join(OUTPUT, 'dashboard-down.png'), path.join(ROOT, 'docs', 'dashboard.png'));
      }
    } finally {
      clearInterval(writer);
    }

    c.heal();
    await page.waitForSelector('#links tr[data-peer="eu-west"][data-state="up"]', { timeout: 30_000 });
    await waitFor('lag back to 0', async () => (await shownLag(page, 'eu-west')) === 0, 30_000);
    await page.waitForSelector('#agreement[data-agree="yes"]', { timeout: 30_000 });
    await page.screenshot({ path: path.join(OUTPUT, 'dashboard-healed.png'), fullPage: true });

    // A link between two other regions, as their heartbeats report it.
    const between = '#graph g.reported[data-pair="eu-west|us-east"]';
    await page.waitForSelector(`${between}[data-state="up"]`, { timeout: 30_000 });
    c.setFault({ kind: 'down' }, 'eu-west', 'us-east');
    try {
      await page.waitForSelector(`${between}[data-state="down"]`, { timeout: 30_000 });
      expect(await page.textContent(between)).toMatch(/down · reported by (eu-west|us-east)/);
      // This region's own links are untouched by it.
      await page.waitForSelector('#graph [data-link="eu-west"][data-state="up"]');
      await page.screenshot({ path: path.join(OUTPUT, 'dashboard-others-cut.png'), fullPage: true });
    } finally {
      c.heal();
    }
    await page.waitForSelector(`${between}[data-state="up"]`, { timeout: 30_000 });

    // One document's per-region status, from the search box.
    await page.fill('#doc-collection', 'notes');
    await page.fill('#doc-id', 'cut-0');
    await page.click('#doc-form button');
    await page.waitForSelector('#doc-result tr[data-doc-region="eu-west"]');

    // The simulator panel sends the prompt's commands through the region.
    await page.waitForSelector('#sim:not([hidden])');
    await page.selectOption('#sim-a', 'ap-south');
    await page.selectOption('#sim-b', 'eu-west');
    await page.click('button[data-sim="cut"]');
    await page.waitForFunction(() => document.getElementById('sim-output')?.textContent?.includes('done: cut ap-south eu-west'));
    expect(sim!.commands).toContain('cut ap-south eu-west');
    expect(consoleErrors).toEqual([]);
    await page.close();
  }, 180_000);

  test('asks for a token when the API needs one, keeps it for the tab and sends it', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'meridian-ui-auth-'));
    const config = parseConfig({
      region: 'solo', listen: { port: 0 }, dataDir: dir, secret: 'solo-secret-123',
      auth: { tokens: [{ token: STATUS_TOKEN, scope: 'status' }] }, log: { level: 'silent' },
    }, dir);
    const region = await startRegion(config, { logger: pino({ level: 'silent' }) });
    const page = await browser!.newPage();
    try {
      const sent: (string | undefined)[] = [];
      page.on('request', (r) => { if (r.url().includes('/v1/sync')) sent.push(r.headers()['authorization']); });
      // Answers to requests without the right token come late, so one is still on its way when the right token
      // is entered: its refusal must not ask for a token again.
      await page.route('**/v1/sync**', async (route) => {
        if (route.request().headers()['authorization'] !== `Bearer ${STATUS_TOKEN}`) await sleep(2000);
        await route.continue();
      });
      await page.goto(`${region.url}/ui`);
      await page.waitForSelector('#token-form:not([hidden])');
      await page.fill('#token', 'wrong-token-0123456789');
      await page.click('#token-form button');
      await page.waitForFunction(() => document.getElementById('token-error')?.textContent?.includes('valid bearer token'));
      await page.fill('#token', STATUS_TOKEN);
      await page.click('#token-form button');
      await page.waitForFunction(() => document.getElementById('region')?.textContent === 'solo');
      await page.waitForSelector('#token-form[hidden]', { state: 'attached' });
      await sleep(2500);
      expect(await page.isHidden('#token-form')).toBe(true);
      expect(await page.evaluate(() => sessionStorage.getItem('meridian-token'))).toBe('status-token-0123456789abcdef');
      expect(sent).toContain(`Bearer ${STATUS_TOKEN}`);
    } finally {
      await page.close();
      await region.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
