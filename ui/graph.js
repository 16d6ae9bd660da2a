// The regions as a graph, seen from this region: one edge per peer link,
// coloured by its state, labelled with RTT and lag both ways; a link that is
// down but routed through another region is drawn through that region.

const SVG = 'http://www.w3.org/2000/svg';
const W = 640;
const H = 360;

function el(name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Positions on a circle, this region first (on the left). */
function layout(names) {
  const r = Math.min(W, H) / 2 - 50;
  return new Map(names.map((name, i) => {
    const a = Math.PI + (2 * Math.PI * i) / names.length;
    return [name, { x: W / 2 + r * 1.5 * Math.cos(a), y: H / 2 + r * Math.sin(a) }];
  }));
}

const ms = (v) => (v === null || v === undefined ? '–' : `${Math.round(v)}`);

/** Redraws the graph from a `/v1/sync` status. */
export function drawGraph(svg, status) {
  svg.replaceChildren();
  const pos = layout([status.region, ...status.peers.map((p) => p.region)]);
  const self = pos.get(status.region);
  for (const p of status.peers) {
    const at = pos.get(p.region);
    const via = /^via (.+)$/.exec(p.route)?.[1];
    const g = el('g', { class: `link ${p.state}`, 'data-link': p.region, 'data-state': p.state });
    g.append(el('line', { x1: self.x, y1: self.y, x2: at.x, y2: at.y }));
    if (via && pos.has(via)) {
      const hop = pos.get(via);
      g.append(el('polyline', { class: 'via', points: `${self.x},${self.y} ${hop.x},${hop.y} ${at.x},${at.y}` }));
    }
    const mx = (self.x + at.x) / 2;
    const my = (self.y + at.y) / 2;
    g.append(el('text', { x: mx, y: my - 8, class: 'label' }, `${p.state} · ${p.route} · RTT ${ms(p.rttMs)} ms`));
    g.append(el('text', { x: mx, y: my + 8, class: 'label' },
      `→ lag ${ms(p.outbound.lagMs)} ms (${p.outbound.pendingUpdates})  ← lag ${ms(p.inbound.lagMs)} ms (${p.inbound.pendingUpdates})`));
    svg.append(g);
  }
  for (const [name, { x, y }] of pos) {
    const g = el('g', { class: name === status.region ? 'node self' : 'node' });
    g.append(el('circle', { cx: x, cy: y, r: 26 }));
    g.append(el('text', { x, y: y + 44, class: 'name' }, name));
    svg.append(g);
  }
}
