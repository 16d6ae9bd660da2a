/**
 * The timeline of a run as one self-contained SVG: fault intervals as bars
 * per kind and target, process outages per region, each region's
 * acknowledged write rate and its replication lag over time.
 */
import type { FaultSpan, Interval } from './analysis.js';
import type { SyncSample } from './monitor.js';

export interface TimelineInput {
  title: string;
  regions: readonly string[];
  endMs: number;
  /** The final heal, and the moment the regions agreed (null: never). */
  healMs: number | null;
  convergedMs: number | null;
  faults: readonly FaultSpan[];
  /** Intervals during which each region's process could not serve. */
  down: ReadonlyMap<string, readonly Interval[]>;
  /** Acknowledged writes per second, per region. */
  rates: ReadonlyMap<string, readonly number[]>;
  lag: readonly SyncSample[];
}

const WIDTH = 1100;
const LEFT = 190;
const RIGHT = 20;
const LANE = 16;
const CHART = 110;
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];
const KIND_COLORS: Record<string, string> = {
  isolate: '#d62728', bridge: '#ff7f0e', oneway: '#e377c2', blackhole: '#7f7f7f', stall: '#8c564b', latency: '#1f77b4',
  slicer: '#17becf', bandwidth: '#bcbd22', kill: '#000000', pause: '#9467bd', wipe: '#a0522d', flap: '#2ca02c',
};

export function renderTimeline(t: TimelineInput): string {
  const x = (ms: number) => LEFT + (Math.max(0, Math.min(ms, t.endMs)) / Math.max(1, t.endMs)) * (WIDTH - LEFT - RIGHT);
  const parts: string[] = [];
  let y = 40;
  parts.push(text(10, 22, t.title, 'font-size="15" font-weight="bold"'));
  const lanes = [...new Set(t.faults.map(laneOf))].sort();
  parts.push(text(10, y + 4, 'faults', 'font-weight="bold"'));
  y += 12;
  for (const lane of lanes) {
    parts.push(text(10, y + 11, lane));
    for (const f of t.faults.filter((s) => laneOf(s) === lane)) {
      const color = KIND_COLORS[lane.split(' ')[0] ?? ''] ?? '#555';
      parts.push(bar(x(f.fromMs), y + 2, x(f.toMs) - x(f.fromMs), LANE - 4, color, `${f.label}: ${secs(f.fromMs)}-${secs(f.toMs)}`));
    }
    y += LANE;
  }
  if (lanes.length === 0) parts.push(text(LEFT, (y += LANE) - 4, 'no faults'));
  y += 10;
  for (const region of t.regions) {
    parts.push(text(10, y + 11, `${region} process down`));
    for (const d of t.down.get(region) ?? []) {
      const to = d.toMs;
      parts.push(bar(x(d.fromMs), y + 2, x(to) - x(d.fromMs), LANE - 4, '#444', `${region} down ${secs(d.fromMs)}-${secs(to)}`));
    }
    y += LANE;
  }
  y += 20;
  const rateSeries = t.regions.map((r) => (t.rates.get(r) ?? []).map((v, i) => [i * 1000 + 500, v] as [number, number]));
  y = chart(parts, 'acknowledged writes/s', rateSeries, t, x, y);
  const lagSeries = t.regions.map((r) => t.lag.filter((s) => s.region === r).map((s) => [s.atMs, s.lagMs] as [number, number]));
  y = chart(parts, 'outbound lag (ms)', lagSeries, t, x, y);
  y = axis(parts, t, x, y);
  const markers = [
    ...(t.healMs === null ? [] : [marker(x(t.healMs), 34, y, 'final heal', '#2ca02c')]),
    ...(t.convergedMs === null ? [] : [marker(x(t.convergedMs), 46, y, 'converged', '#1f77b4')]),
  ];
  const legend = t.regions.map((r, i) => text(LEFT + i * 140, y + 30, `■ ${r}`, `fill="${COLORS[i % COLORS.length]}"`));
  const height = y + 45;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    ...parts,
    ...markers,
    ...legend,
    '</svg>',
    '',
  ].join('\n');
}

/** `kind target`: faults of the same kind on the same region or link share a lane. */
function laneOf(f: FaultSpan): string {
  return f.label.split(' ').slice(0, 2).join(' ');
}

function chart(
  parts: string[],
  title: string,
  series: [number, number][][],
  t: TimelineInput,
  x: (ms: number) => number,
  top: number,
): number {
  const max = Math.max(1, ...series.flat().map(([, v]) => v));
  const y = (v: number) => top + CHART - (v / max) * CHART;
  parts.push(text(10, top + 12, title, 'font-weight="bold"'));
  parts.push(text(10, top + 28, `max ${Math.round(max)}`));
  parts.push(`<rect x="${LEFT}" y="${top}" width="${WIDTH - LEFT - RIGHT}" height="${CHART}" fill="none" stroke="#ccc"/>`);
  series.forEach((points, i) => {
    if (points.length === 0) return;
    const d = points.map(([ms, v]) => `${x(ms).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    parts.push(`<polyline fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="1.5" points="${d}"><title>${esc(t.regions[i] ?? '')}</title></polyline>`);
  });
  return top + CHART + 20;
}

function axis(parts: string[], t: TimelineInput, x: (ms: number) => number, top: number): number {
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600].map((s) => s * 1000);
  const step = steps.find((s) => t.endMs / s <= 12) ?? 1_200_000;
  parts.push(`<line x1="${LEFT}" y1="${top}" x2="${WIDTH - RIGHT}" y2="${top}" stroke="#000"/>`);
  for (let ms = 0; ms <= t.endMs; ms += step) {
    parts.push(`<line x1="${x(ms)}" y1="${top}" x2="${x(ms)}" y2="${top + 5}" stroke="#000"/>`);
    parts.push(text(x(ms) - 8, top + 17, secs(ms)));
  }
  return top;
}

/** A dashed vertical line with its label to the right, or to the left near the right edge. */
function marker(x: number, labelY: number, bottom: number, label: string, color: string): string {
  const nearEdge = x > WIDTH - RIGHT - 80;
  const anchor = nearEdge ? `text-anchor="end" fill="${color}"` : `fill="${color}"`;
  return `<line x1="${x}" y1="26" x2="${x}" y2="${bottom}" stroke="${color}" stroke-dasharray="4 3"/>` +
    text(nearEdge ? x - 3 : x + 3, labelY, label, anchor);
}

function bar(x: number, y: number, w: number, h: number, color: string, title: string): string {
  return `<rect x="${x.toFixed(1)}" y="${y}" width="${Math.max(1, w).toFixed(1)}" height="${h}" fill="${color}" opacity="0.8"><title>${esc(title)}</title></rect>`;
}

function text(x: number, y: number, s: string, attrs = ''): string {
  return `<text x="${x.toFixed(1)}" y="${y}" ${attrs}>${esc(s)}</text>`;
}

function secs(ms: number): string {
  return `${(ms / 1000).toFixed(ms % 1000 === 0 ? 0 : 1)}s`;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}
