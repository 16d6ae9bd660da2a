/**
 * The dashboard: static files shipped in the package's `ui/` folder (plain
 * HTML, JavaScript modules and CSS; uPlot from its npm package), the recent
 * status history its charts draw, and, under `meridian sim`, a way to send
 * the simulator its commands.
 *
 * Threat model. The static files hold no data and are public, like
 * `/healthz`; every figure the page shows comes from the API with the
 * caller's own token (`/v1/sync`, `/v1/sync/history` and the per-document
 * status need the same scopes as ever). The files are read once at start
 * from fixed folders and served by name from that set: no request path
 * reaches the file system. A strict Content-Security-Policy allows scripts,
 * styles and requests from this origin only. The simulator route exists only
 * when `ui.simControl` is configured (by `meridian sim`), forwards one short
 * command line to that one URL, and needs a `read-write` token when tokens
 * are configured (it is a `/v1` write).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
// Adds `summary` and `tags` to the route schema types (the OpenAPI document is built from them).
import type {} from '@fastify/swagger';
import type { Logger } from 'pino';
import type { UiConfig } from '../config.js';
import { MeridianError } from '../errors.js';
import { errorResponses } from './openapi.js';
import { HISTORY_SAMPLES, SAMPLE_INTERVAL_MS, type StatusHistory } from './status-history.js';

/** Folders the dashboard's files are read from. */
export interface UiAssets {
  /** The package's `ui/` folder. */
  uiDir: string;
  /** The folder of uPlot's `uPlot.esm.js` and `uPlot.min.css`. */
  uplotDir: string;
}

/** The package's own `ui/` and the installed uPlot, wherever this module runs from (src/ or dist/src/). */
export function packagedUiAssets(): UiAssets {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  const require = createRequire(import.meta.url);
  return { uiDir: path.join(dir, 'ui'), uplotDir: path.dirname(require.resolve('uplot/dist/uPlot.esm.js')) };
}

/** Scripts, styles, images and requests from this origin only; nothing inline, no frames. */
export const UI_CSP = [
  "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:", "connect-src 'self'",
  "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
].join('; ');

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};
const VENDOR_FILES = ['uPlot.esm.js', 'uPlot.min.css'];

interface Asset {
  type: string;
  body: Buffer;
}

/** Every servable file by its name under `/ui/`, read once. */
function loadAssets(assets: UiAssets): Map<string, Asset> {
  const files = new Map<string, Asset>();
  const add = (name: string, dir: string) => {
    const type = TYPES[path.extname(name)];
    if (type !== undefined) files.set(name, { type, body: readFileSync(path.join(dir, name)) });
  };
  for (const name of readdirSync(assets.uiDir)) add(name, assets.uiDir);
  for (const name of VENDOR_FILES) add(name, assets.uplotDir);
  return files;
}

const FileParams = Type.Object({ file: Type.String({ maxLength: 64 }) });
type FileParams = Static<typeof FileParams>;
const FileResponse = Type.String({ description: 'the file (HTML, JavaScript module or CSS)' });
const UiSettings = Type.Object({
  region: Type.String(),
  simControl: Type.Boolean({ description: 'whether `POST /v1/sim/command` reaches a simulator' }),
  historyIntervalMs: Type.Integer(),
  historySamples: Type.Integer(),
});

export interface UiRouteDeps {
  region: string;
  ui: UiConfig;
  assets: UiAssets;
  logger: Logger;
}

/**
 * Registers `GET /ui`, `GET /ui/{file}` and `GET /ui/config.json`, and
 * `POST /v1/sim/command` when a simulator is configured. Without a `ui/`
 * folder (a trimmed install) the dashboard is left out with a warning; the
 * region serves on.
 */
export async function uiRoutes(app: FastifyInstance, deps: UiRouteDeps): Promise<void> {
  if (deps.ui.simControl !== null) simRoute(app, deps.ui.simControl);
  if (!existsSync(path.join(deps.assets.uiDir, 'index.html'))) {
    deps.logger.warn({ uiDir: deps.assets.uiDir }, 'dashboard files not found; /ui is not served');
    return;
  }
  const files = loadAssets(deps.assets);
  const index = files.get('index.html');
  app.addHook('onSend', async (request, reply) => {
    if (!request.url.startsWith('/ui')) return;
    void reply.header('content-security-policy', UI_CSP).header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer').header('cache-control', 'no-cache');
  });
  const schema = { summary: 'The dashboard page', tags: ['dashboard'], response: { 200: FileResponse } };
  for (const url of ['/ui', '/ui/']) {
    app.get(url, { schema }, async (_request, reply) => reply.type(index?.type ?? 'text/html').send(index?.body));
  }
  app.get('/ui/config.json', {
    schema: { summary: 'What the dashboard needs to know about this region', tags: ['dashboard'], response: { 200: UiSettings } },
  }, async (): Promise<Static<typeof UiSettings>> => ({
    region: deps.region, simControl: deps.ui.simControl !== null,
    historyIntervalMs: SAMPLE_INTERVAL_MS, historySamples: HISTORY_SAMPLES,
  }));
  app.get<{ Params: FileParams }>('/ui/:file', {
    schema: { summary: 'A file of the dashboard', tags: ['dashboard'], params: FileParams, response: { 200: FileResponse, ...errorResponses('not_found') } },
  }, async (request, reply) => {
    const file = files.get(request.params.file);
    if (file === undefined) throw new MeridianError('not_found', `no dashboard file '${request.params.file}'`);
    return reply.type(file.type).send(file.body);
  });
}

const HistoryQuery = Type.Object({
  since: Type.Optional(Type.Number({ description: 'only samples taken after this time (ms since the epoch)' })),
});
type HistoryQuery = Static<typeof HistoryQuery>;
const HistoryResponse = Type.Object({
  region: Type.String(),
  intervalMs: Type.Integer(),
  capacity: Type.Integer(),
  samples: Type.Array(Type.Object({
    t: Type.Number(),
    peers: Type.Array(Type.Object({
      region: Type.String(),
      state: Type.String(),
      lagMs: Type.Number(),
      pendingUpdates: Type.Number(),
    })),
  })),
});

/** Registers `GET /v1/sync/history` (same access as `/v1/sync`). */
export async function historyRoutes(app: FastifyInstance, deps: { region: string; history: StatusHistory }): Promise<void> {
  app.get<{ Querystring: HistoryQuery }>('/v1/sync/history', {
    schema: {
      summary: 'Recent replication status samples (one a second, the last 15 minutes) for charts',
      tags: ['sync'], querystring: HistoryQuery, response: { 200: HistoryResponse },
    },
  }, async (request): Promise<Static<typeof HistoryResponse>> => ({
    region: deps.region, intervalMs: SAMPLE_INTERVAL_MS, capacity: deps.history.capacity,
    samples: deps.history.since(request.query.since),
  }));
}

const SimCommandBody = Type.Object({ command: Type.String({ minLength: 1, maxLength: 200 }) }, { additionalProperties: false });
type SimCommandBody = Static<typeof SimCommandBody>;
const SimCommandResponse = Type.Object({ output: Type.String() });
/** Restarting or wiping a region waits for it to come back. */
const SIM_TIMEOUT_MS = 60_000;

function simRoute(app: FastifyInstance, control: string): void {
  app.post<{ Body: SimCommandBody }>('/v1/sim/command', {
    schema: {
      summary: 'Send a command to the simulator this region runs under (only under `meridian sim`)',
      tags: ['dashboard'], body: SimCommandBody,
      response: { 200: SimCommandResponse, ...errorResponses('invalid_command', 'unavailable') },
    },
  }, async (request): Promise<Static<typeof SimCommandResponse>> => {
    let res: Response;
    try {
      res = await fetch(`${control}/command`, {
        method: 'POST', body: request.body.command, signal: AbortSignal.timeout(SIM_TIMEOUT_MS),
      });
    } catch (err) {
      throw new MeridianError('unavailable', 'the simulator does not answer; is `meridian sim` still running?', undefined, { cause: err });
    }
    const output = (await res.text()).trimEnd();
    if (res.status === 400) throw new MeridianError('invalid_command', output);
    if (!res.ok) throw new MeridianError('unavailable', `the simulator answered ${res.status}: ${output}`);
    return { output };
  });
}
