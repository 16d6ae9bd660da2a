// The tables and lists of the page: link rows, what needs attention, and one
// document's per-region sync status. Text goes in through textContent only.

function row(cells, attrs = {}) {
  const tr = document.createElement('tr');
  for (const [k, v] of Object.entries(attrs)) tr.setAttribute(k, v);
  for (const cell of cells) {
    const td = document.createElement('td');
    td.textContent = cell === null || cell === undefined ? '–' : String(cell);
    tr.append(td);
  }
  return tr;
}

const round = (v) => (v === null || v === undefined ? null : Math.round(v));

/** A peer's digest beside this region's: `same` or its first characters, with the report's age. */
function peerDigest(status, p) {
  if (p.digest === null || p.digest === undefined) return null;
  const which = p.digest === status.digest ? 'same' : p.digest.slice(0, 8);
  return p.reportAgeMs !== null && p.reportAgeMs >= 1000 ? `${which} (${Math.round(p.reportAgeMs / 1000)} s ago)` : which;
}

/** The links table: one row per peer. */
export function drawLinks(tbody, status) {
  tbody.replaceChildren(...status.peers.map((p) => row([
    p.region, p.state, p.route, p.rttMs === null ? null : p.rttMs.toFixed(1),
    round(p.outbound.lagMs), p.outbound.pendingUpdates, round(p.inbound.lagMs), p.inbound.pendingUpdates,
    peerDigest(status, p), p.lastError,
  ], {
    'data-peer': p.region, 'data-state': p.state, 'data-out-lag': String(p.outbound.lagMs),
    'data-digest': p.digest === status.digest ? 'same' : 'differs', class: p.state,
  })));
}

/**
 * Whether the regions agree, from `agree` of `/v1/sync` (every peer up with
 * this region's digest in its last heartbeat, nothing pending), with the
 * reasons when they do not.
 */
export function agreement(status) {
  if (status.agree) return { agree: 'yes', text: 'regions agree: same digest, nothing pending' };
  const parts = [];
  const down = status.peers.filter((p) => p.state !== 'up').length;
  const differ = status.peers.filter((p) => p.digest !== status.digest).map((p) => p.region);
  const pending = status.peers.reduce((n, p) => n + p.outbound.pendingUpdates + p.inbound.pendingUpdates, 0) + status.pendingDocs;
  if (differ.length > 0) parts.push(`digest differs at ${differ.join(', ')}`);
  if (down > 0) parts.push(`${down} link(s) not up`);
  if (pending > 0) parts.push(`${pending} update(s) pending`);
  return { agree: 'no', text: `regions differ: ${parts.join(', ') || 'not yet reported'}` };
}

/** Held writes, held updates, quarantined entries and conflicts, when there are any. */
export function drawProblems(list, status, ready) {
  const items = [];
  if (ready && ready.ready === false) items.push(`writes held: ${ready.reason ?? 'the region is not ready'}`);
  if (status.isolated) items.push('isolated: no peer is up (reads and writes are still served here)');
  if (status.pendingDocs > 0) items.push(`${status.pendingDocs} document(s) hold updates whose dependencies have not arrived`);
  for (const p of status.peers) {
    if (p.inbound.quarantined > 0) items.push(`${p.inbound.quarantined} entr(y/ies) from ${p.region} quarantined`);
  }
  if (status.conflicts > 0) items.push(`${status.conflicts} content conflict(s) recorded (GET /v1/docs/{c}/{id}/conflicts)`);
  if (items.length === 0) items.push('nothing held, quarantined or in conflict');
  list.replaceChildren(...items.map((text) => {
    const li = document.createElement('li');
    li.textContent = text;
    return li;
  }));
}

/** One document's per-region sync status. */
export function drawDoc(container, doc) {
  const table = document.createElement('table');
  table.className = 'grid';
  const head = row(['region', 'has latest', 'missing updates', 'lag ms']);
  table.append(head, ...doc.regions.map((r) => row(
    [r.region, r.hasLatest ? 'yes' : 'no', r.missingUpdates, round(r.lagMs)],
    { 'data-doc-region': r.region, class: r.hasLatest ? 'up' : 'down' },
  )));
  const caption = document.createElement('p');
  caption.textContent = `${doc.doc}${doc.deleted ? ' (deleted)' : ''}`;
  container.replaceChildren(caption, table);
}
