// The regions as a graph: every region and every link, coloured by its
// state. This region's links are labelled with RTT and lag both ways (a link
// down but routed through another region is drawn through it); links
// between two other regions are drawn thinner, as the peers reported them.
import { allLinks } from '/ui/links.js';

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
const age = (v) => (v < 1000 ? 'just now' : `${Math.round(v / 1000)} s ago`);

/** Label lines of one link. */
function labels(link) {
  if (!link.own) return [`${link.state} · reported by ${link.by}, ${age(link.ageMs)}`];
  const p = link.peer;
  return [
    `${p.state} · ${p.route} · RTT ${ms(p.rttMs)} ms`,
    `→ lag ${ms(p.outbound.lagMs)} ms (${p.outbound.pendingUpdates})  ← lag ${ms(p.inbound.lagMs)} ms (${p.inbound.pendingUpdates})`,
  ];
}

function drawLink(pos, link) {
  const from = pos.get(link.a);
  const to = pos.get(link.b);
  const attrs = { class: `link ${link.state}${link.own ? '' : ' reported'}`, 'data-pair': link.pair, 'data-state': link.state };
  if (link.own) attrs['data-link'] = link.b;
  else attrs['data-reported-by'] = link.by;
  const g = el('g', attrs);
  g.append(el('line', { x1: from.x, y1: from.y, x2: to.x, y2: to.y }));
  const via = link.own ? /^via (.+)$/.exec(link.peer.route)?.[1] : undefined;
  if (via && pos.has(via)) {
    const hop = pos.get(via);
    g.append(el('polyline', { class: 'via', points: `${from.x},${from.y} ${hop.x},${hop.y} ${to.x},${to.y}` }));
  }
  const lines = labels(link);
  const mx = (from.x + to.x) / 2;
  const my = (from.y + to.y) / 2 - 8 * (lines.length - 1);
  lines.forEach((text, i) => g.append(el('text', { x: mx, y: my + 16 * i, class: 'label' }, text)));
  return g;
}

/** Redraws the graph from a `/v1/sync` status. */
export function drawGraph(svg, status) {
  svg.replaceChildren();
  const { regions, links } = allLinks(status);
  const pos = layout(regions);
  // Reported links first, so this region's own (with more to say) are drawn over them.
  for (const link of [...links.filter((l) => !l.own), ...links.filter((l) => l.own)]) svg.append(drawLink(pos, link));
  for (const [name, { x, y }] of pos) {
    const g = el('g', { class: name === status.region ? 'node self' : 'node' });
    g.append(el('circle', { cx: x, cy: y, r: 26 }));
    g.append(el('text', { x, y: y + 44, class: 'name' }, name));
    svg.append(g);
  }
}
