// The dashboard: polls `/v1/sync` and `/v1/sync/history` once a second and
// redraws. Every figure comes from the region's public API.
import { api, currentToken, NeedsToken, readiness, setToken } from '/ui/api.js';
import { Charts, History } from '/ui/charts.js';
import { drawGraph } from '/ui/graph.js';
import { agreement, drawDoc, drawLinks, drawProblems } from '/ui/panels.js';
import { setupSim } from '/ui/sim.js';

const $ = (id) => document.getElementById(id);
const history = new History();
const charts = new Charts($('charts'));
let simReady = false;
let config = { simControl: false, historyIntervalMs: 1000 };

function showError(message) {
  $('error').hidden = message === null;
  $('error').textContent = message ?? '';
}

function askForToken(message) {
  $('token-form').hidden = false;
  $('token-error').textContent = message;
}

function render(status, ready) {
  $('region').textContent = status.region;
  document.title = `Meridian ${status.region}`;
  $('digest').textContent = status.digest.slice(0, 16);
  $('digest').title = status.digest;
  const { agree, text } = agreement(status);
  $('agreement').textContent = text;
  $('agreement').dataset.agree = agree;
  $('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
  drawGraph($('graph'), status);
  drawLinks($('links').tBodies[0], status);
  drawProblems($('problems'), status, ready);
  charts.update(history, status.peers.map((p) => p.region));
  if (config.simControl && !simReady) {
    simReady = true;
    setupSim($('sim'), [status.region, ...status.peers.map((p) => p.region)]);
  }
}

async function poll() {
  try {
    const [status, past, ready] = await Promise.all([
      api('/v1/sync'),
      api(`/v1/sync/history?since=${history.last}`),
      readiness().catch(() => null),
    ]);
    history.add(past.samples);
    render(status, ready);
    $('token-form').hidden = true;
    showError(null);
  } catch (err) {
    // A poll sent before the operator entered a token may be refused after it: not a reason to ask again.
    if (err instanceof NeedsToken) {
      if (err.sentToken === currentToken()) askForToken(err.message);
    }
    else showError(`cannot reach the region: ${err.message}`);
  }
}

$('token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  setToken($('token').value.trim());
  $('token-form').hidden = true;
  void poll();
});

$('doc-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const c = encodeURIComponent($('doc-collection').value.trim());
  const id = encodeURIComponent($('doc-id').value.trim());
  try {
    drawDoc($('doc-result'), await api(`/v1/docs/${c}/${id}/sync`));
  } catch (err) {
    $('doc-result').textContent = err.message;
  }
});

async function main() {
  try {
    config = await api('/ui/config.json');
  } catch (err) {
    showError(`cannot load the dashboard settings: ${err.message}`);
  }
  // One poll at a time: a slow answer delays the next poll instead of piling up requests.
  for (;;) {
    const started = Date.now();
    await poll();
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, config.historyIntervalMs - (Date.now() - started))));
  }
}

void main();
