// Per peer, a live chart of outbound lag (ms, left axis) and pending updates
// (right axis) over the last 15 minutes, from `/v1/sync/history` samples.
import uPlot from '/ui/uPlot.esm.js';

const WINDOW_MS = 15 * 60 * 1000;

/** The samples seen so far, fetched incrementally with `since`. */
export class History {
  constructor() {
    this.samples = [];
  }

  get last() {
    return this.samples.at(-1)?.t ?? 0;
  }

  add(samples) {
    this.samples.push(...samples);
    const from = Date.now() - WINDOW_MS;
    const first = this.samples.findIndex((s) => s.t >= from);
    if (first > 0) this.samples.splice(0, first);
  }

  /** uPlot data of one peer: times (s), lag (ms), pending. Gaps where the peer is absent. */
  series(peer) {
    const t = [];
    const lag = [];
    const pending = [];
    for (const s of this.samples) {
      const p = s.peers.find((x) => x.region === peer);
      t.push(s.t / 1000);
      lag.push(p ? p.lagMs : null);
      pending.push(p ? p.pendingUpdates : null);
    }
    return [t, lag, pending];
  }
}

function options(peer, width) {
  return {
    title: `to ${peer}`,
    width,
    height: 180,
    scales: { x: { time: true }, lag: { auto: true }, n: { auto: true } },
    series: [
      {},
      { label: 'lag ms', scale: 'lag', stroke: '#d9480f', width: 2 },
      { label: 'pending', scale: 'n', stroke: '#1c7ed6', width: 2 },
    ],
    axes: [
      {},
      { scale: 'lag', label: 'lag ms' },
      { scale: 'n', side: 1, label: 'pending', grid: { show: false } },
    ],
  };
}

/** One chart per peer, created on first sight and updated in place. */
export class Charts {
  constructor(container) {
    this.container = container;
    this.plots = new Map();
  }

  update(history, peers) {
    for (const peer of peers) {
      let plot = this.plots.get(peer);
      if (!plot) {
        const box = document.createElement('div');
        box.className = 'chart';
        box.dataset.chart = peer;
        this.container.append(box);
        const width = Math.max(320, Math.min(600, this.container.clientWidth / 2 - 16));
        plot = new uPlot(options(peer, width), history.series(peer), box);
        this.plots.set(peer, plot);
      } else {
        plot.setData(history.series(peer));
      }
    }
  }
}
