/**
 * Lints what a real region serves at `/metrics` against the Prometheus
 * naming guide: snake_case names with the `meridian_` prefix (or a stock
 * `process_` / `nodejs_` metric, so standard Node.js dashboards work),
 * counters ending in `_total`, base units only (`_seconds`, `_bytes`), and
 * HELP and TYPE for every metric.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http, startTestCluster, waitFor } from './helpers/cluster.js';

type Cluster = Awaited<ReturnType<typeof startTestCluster>>;

/** One metric family of the exposition, as its HELP, TYPE and sample lines describe it. */
interface Family {
  name: string;
  type?: string;
  help?: string;
  samples: string[];
}

/** Unit words that are not Prometheus base units. */
const NON_BASE_UNITS = new Set([
  'milliseconds', 'millis', 'ms', 'microseconds', 'us', 'nanoseconds', 'ns', 'minutes', 'hours', 'days',
  'kilobytes', 'kb', 'kib', 'megabytes', 'mb', 'mib', 'gigabytes', 'gb', 'gib', 'bits', 'percent',
]);
const SUFFIXES: Record<string, string[]> = { histogram: ['_bucket', '_sum', '_count'], summary: ['_sum', '_count'] };

/** Groups the text format into families; a sample whose family has no TYPE gets a family of its own. */
function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const family = (name: string): Family => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { name, samples: [] }));
    return f;
  };
  for (const line of text.split('\n')) {
    const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
    if (meta) {
      const f = family(meta[2]!);
      if (meta[1] === 'HELP') f.help = meta[3];
      else f.type = meta[3];
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/.exec(line)?.[1];
    if (!sample) continue;
    const owner = [...families.values()].find((f) =>
      f.name === sample || (SUFFIXES[f.type ?? ''] ?? []).some((suffix) => `${f.name}${suffix}` === sample));
    (owner ?? family(sample)).samples.push(line);
  }
  return families;
}

/** Everything wrong with one family's name, type and help, as readable lines. */
function lint(f: Family): string[] {
  const problems: string[] = [];
  if (!/^[a-z][a-z0-9]*(_[a-z0-9]+)*$/.test(f.name)) problems.push(`${f.name}: not snake_case`);
  if (!/^(meridian|process|nodejs)_/.test(f.name)) problems.push(`${f.name}: neither meridian_ nor a default process_/nodejs_ metric`);
  if (/^meridian_(process|nodejs)_/.test(f.name)) problems.push(`${f.name}: default metrics keep their stock names`);
  if (!f.help || f.help.trim().length < 5) problems.push(`${f.name}: no HELP text`);
  if (!f.type) problems.push(`${f.name}: no TYPE`);
  if (f.type === 'counter' && !f.name.endsWith('_total')) problems.push(`${f.name}: a counter must end in _total`);
  // prom-client's stock gauges (nodejs_active_handles_total) keep the names dashboards know.
  const own = f.name.startsWith('meridian_');
  if (own && f.type !== 'counter' && f.name.endsWith('_total')) problems.push(`${f.name}: only counters end in _total`);
  const units = f.name.split('_').filter((word) => NON_BASE_UNITS.has(word));
  if (units.length > 0) problems.push(`${f.name}: unit ${units.join(', ')} is not a base unit (seconds, bytes)`);
  for (const line of f.samples) {
    const labels = /\{(.*)\}/.exec(line)?.[1] ?? '';
    for (const [, label] of labels.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) {
      if (!/^[a-z][a-z0-9_]*$/.test(label!)) problems.push(`${f.name}: label ${label} is not snake_case`);
    }
  }
  return problems;
}

describe('/metrics exposition', () => {
  let cluster: Cluster;
  let families: Map<string, Family>;

  beforeAll(async () => {
    cluster = await startTestCluster(['eu-west', 'us-east']);
    const url = cluster.url('eu-west');
    expect((await http(`${url}/v1/docs/lint/a`, { method: 'PUT', body: { a: 1 } })).status).toBe(200);
    // Wait for a heartbeat, so the per-peer series exist too.
    await waitFor('a heartbeat round trip', async () => (await (await fetch(`${url}/metrics`)).text()).includes('meridian_heartbeat_rtt_seconds{'));
    families = parseExposition(await (await fetch(`${url}/metrics`)).text());
  }, 60_000);

  afterAll(async () => {
    await cluster?.dispose();
  });

  it('names every metric as the Prometheus naming guide asks, with HELP and TYPE', () => {
    expect(families.size).toBeGreaterThan(20);
    expect([...families.values()].flatMap(lint)).toEqual([]);
  });

  it('serves durations in seconds and the stock Node.js process metrics', () => {
    for (const name of [
      'meridian_peer_lag_seconds', 'meridian_heartbeat_rtt_seconds', 'meridian_http_request_duration_seconds',
      'process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes',
    ]) {
      expect(families.get(name)?.samples.length ?? 0, name).toBeGreaterThan(0);
    }
  });
});
