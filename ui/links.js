// Every link of the cluster from one `/v1/sync` status: this region's own
// links as it sees them, and each link between two other regions as the
// peers' last heartbeats reported it.

/** How much older than the freshest report of a link another report may be and still count, ms. */
const SAME_TIME_MS = 3000;
const SEVERITY = { up: 0, suspect: 1, down: 2 };

/** The name of the link between regions `a` and `b`, the same from either end. */
export const pairOf = (a, b) => (a < b ? `${a}|${b}` : `${b}|${a}`);

/**
 * The state of a link between two other regions, from what the peers at its
 * ends reported: the freshest report wins, and of reports about as fresh
 * (a link cut both ways is seen by each end a moment apart) the worst,
 * and of those the freshest.
 */
function decide(reports) {
  const freshest = Math.min(...reports.map((r) => r.ageMs));
  const recent = reports.filter((r) => r.ageMs - freshest <= SAME_TIME_MS);
  const worse = (r, than) => SEVERITY[r.state] > SEVERITY[than.state] || (r.state === than.state && r.ageMs < than.ageMs);
  return recent.reduce((chosen, r) => (worse(r, chosen) ? r : chosen));
}

/**
 * Every region named and every link: own links `{a, b, pair, state, own: true, peer}`
 * (`peer` the peer's status), reported ones `{a, b, pair, state, own: false, by, ageMs}`.
 */
export function allLinks(status) {
  const regions = new Set([status.region, ...status.peers.map((p) => p.region)]);
  const links = status.peers.map((p) => ({ a: status.region, b: p.region, pair: pairOf(status.region, p.region), state: p.state, own: true, peer: p }));
  const reported = new Map();
  for (const p of status.peers) {
    for (const l of p.links ?? []) {
      regions.add(l.region);
      if (l.region === status.region) continue;
      const pair = pairOf(p.region, l.region);
      const list = reported.get(pair) ?? [];
      list.push({ a: p.region, b: l.region, pair, state: l.state, own: false, by: p.region, ageMs: p.reportAgeMs ?? 0 });
      reported.set(pair, list);
    }
  }
  for (const list of reported.values()) links.push(decide(list));
  return { regions: [...regions], links };
}
