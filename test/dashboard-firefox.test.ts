/**
 * The dashboard in Firefox: the page is plain JavaScript modules, which must
 * work in a current Firefox as well as in Chromium (test/dashboard.test.ts
 * covers the behaviour; this file that the page runs at all). Headless
 * Firefox ESR, the system's (`.ci/run` installs the Debian package when
 * missing), driven by puppeteer-core over WebDriver BiDi, against a 3-region
 * cluster of real processes. Without Firefox the test fails: a skipped
 * browser test would look like a passing one.
 */
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer, { type Browser } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestCluster } from './helpers/cluster.js';

const FIREFOX = process.env.MERIDIAN_FIREFOX ?? '/usr/bin/firefox-esr';
const OUTPUT = path.join(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..'), 'test-output');

describe('dashboard in Firefox', () => {
  let cluster: Awaited<ReturnType<typeof startTestCluster>> | undefined;
  let browser: Browser | undefined;

  beforeAll(async () => {
    if (!existsSync(FIREFOX)) {
      throw new Error(`Firefox not found at ${FIREFOX}: install the Debian package (apt-get install firefox-esr) or set MERIDIAN_FIREFOX`);
    }
    mkdirSync(OUTPUT, { recursive: true });
    cluster = await startTestCluster(undefined, { ui: { enabled: true } });
    browser = await puppeteer.launch({ browser: 'firefox', executablePath: FIREFOX, headless: true });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await cluster?.dispose();
  });

  test('renders every region, every link, agreement and a chart, without console errors', async () => {
    const page = await browser!.newPage();
    const consoleErrors: string[] = [];
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
    page.on('pageerror', (e) => consoleErrors.push(String(e)));
    await page.setViewport({ width: 1280, height: 1100 });
    await page.goto(`${cluster!.url('ap-south')}/ui`);
    await page.waitForFunction(() => document.getElementById('region')?.textContent === 'ap-south', { timeout: 30_000 });
    await page.waitForSelector('#graph [data-link="eu-west"][data-state="up"]', { timeout: 30_000 });
    await page.waitForSelector('#graph [data-link="us-east"][data-state="up"]');
    await page.waitForSelector('#graph g.reported[data-pair="eu-west|us-east"][data-state="up"]', { timeout: 30_000 });
    await page.waitForSelector('#agreement[data-agree="yes"]', { timeout: 30_000 });
    await page.waitForSelector('[data-chart="eu-west"] canvas');
    await page.waitForSelector('[data-chart="us-east"] canvas');
    const names = await page.$$eval('#graph .node .name', (nodes) => nodes.map((n) => n.textContent).sort());
    expect(names).toEqual(['ap-south', 'eu-west', 'us-east']);
    await page.screenshot({ path: path.join(OUTPUT, 'dashboard-firefox.png'), fullPage: true });
    expect(consoleErrors).toEqual([]);
    await page.close();
  }, 90_000);
});
