/**
 * The outage simulator's command language, parsed into actions and run
 * against a {@link LocalCluster}. Shared by the interactive prompt and the
 * HTTP control endpoint, so both accept exactly the same commands.
 */
import { formatFault, parseFault, type Fault } from './proxy.js';
import type { LocalCluster } from './cluster.js';
import type { SyncStatus } from '../contract.js';

export type SimCommand =
  | { kind: 'partition'; region: string }
  | { kind: 'fault'; fault: Fault; a?: string; b?: string }
  | { kind: 'process'; action: 'kill' | 'restart' | 'pause' | 'resume' | 'wipe' | 'start' | 'stop'; region: string }
  | { kind: 'heal' }
  | { kind: 'status' }
  | { kind: 'help' };

/** Syntax and meaning of the link faults; the help text and the usage errors both come from here. */
const LINK_FAULTS: Readonly<Record<string, { syntax: string; text: string }>> = {
  blackhole: { syntax: 'blackhole [DIR] [A [B]]', text: 'swallow every byte on the links of A (or A-B, or all)' },
  stall: { syntax: 'stall [DIR] [A [B]]', text: 'stop reading on those links (the senders\' buffers fill)' },
  latency: { syntax: 'latency 80ms [±20ms] [DIR] [A [B]]', text: 'delay every chunk on those links' },
  loss: { syntax: 'loss 5% [DIR] [A [B]]', text: 'hold that share of chunks for a TCP retransmission timeout' },
  slicer: { syntax: 'slicer BYTES [DELAY] [DIR] [A [B]]', text: 'deliver in pieces of at most BYTES bytes, DELAY (e.g. 5ms) apart' },
  bandwidth: { syntax: 'bandwidth 64kb/s [DIR] [A [B]]', text: 'limit throughput on those links' },
};

const HELP_ROWS: readonly (readonly [string, string])[] = [
  ['partition REGION', 'isolate a region from every peer (it keeps serving its clients)'],
  ['cut A B', 'cut the link between two regions (connections reset)'],
  ...Object.values(LINK_FAULTS).map((f) => [f.syntax, f.text] as const),
  ['kill REGION', 'SIGKILL the region\'s process'],
  ['restart REGION', 'SIGKILL and start again'],
  ['stop REGION / start REGION', 'SIGTERM (clean shutdown) / start'],
  ['pause REGION / resume REGION', 'SIGSTOP / SIGCONT'],
  ['wipe REGION', 'kill, delete its data directory, start empty (it rebuilds from its peers)'],
  ['heal', 'remove every link fault'],
  ['status', 'links, lag, pending updates and digests of every region'],
  ['help', 'this text'],
];

export const SIM_HELP = [
  'commands:',
  ...HELP_ROWS.map(([syntax, text]) => `  ${syntax.padEnd(36)}${text}`),
  '  latency, loss and bandwidth combine, separated by commas: latency 80ms ±20ms, loss 1%, bandwidth 1mb/s [DIR] [A [B]]',
  '  DIR is upstream, downstream or both (default); A and B are region names.',
].join('\n');

const PROCESS_ACTIONS = new Set(['kill', 'restart', 'pause', 'resume', 'wipe', 'start', 'stop']);

/** Parses one command line; throws an Error with a usage hint when it is not one. */
export function parseSimCommand(line: string, regions: readonly string[]): SimCommand {
  const words = line.trim().split(/\s+/).filter(Boolean);
  const [verb, ...rest] = words;
  if (!verb) return { kind: 'help' };
  const region = (name: string | undefined): string => {
    if (!name) throw new Error(`'${verb}' needs a region: one of ${regions.join(', ')}`);
    if (!regions.includes(name)) throw new Error(`unknown region '${name}': one of ${regions.join(', ')}`);
    return name;
  };
  if (verb === 'help' || verb === '?') return { kind: 'help' };
  if (verb === 'status') return { kind: 'status' };
  if (verb === 'heal') return { kind: 'heal' };
  if (verb === 'partition' || verb === 'isolate') return { kind: 'partition', region: region(rest[0]) };
  if (verb === 'cut') return cutCommand(rest, region);
  if (PROCESS_ACTIONS.has(verb)) {
    return { kind: 'process', action: verb as Extract<SimCommand, { kind: 'process' }>['action'], region: region(rest[0]) };
  }
  const linkFault = LINK_FAULTS[verb];
  if (linkFault) {
    // Trailing region names select the links; everything before them describes the fault.
    const names: string[] = [];
    while (rest.length > 0 && regions.includes(rest[rest.length - 1]!)) names.unshift(rest.pop()!);
    if (names.length > 2 || (names.length === 2 && names[0] === names[1])) throw new Error(`usage: ${linkFault.syntax}: at most two different regions`);
    const fault = faultOrUsage([verb, ...rest].join(' '), linkFault.syntax);
    return { kind: 'fault', fault, ...(names[0] ? { a: names[0] } : {}), ...(names[1] ? { b: names[1] } : {}) };
  }
  throw new Error(`unknown command '${verb}'; type 'help'`);
}

/** `cut A B`: one link needs its two ends. */
function cutCommand(rest: string[], region: (name: string | undefined) => string): SimCommand {
  if (rest.length !== 2 || rest[0] === rest[1]) {
    throw new Error(`'cut' needs two different regions: cut A B (to cut one region off from every peer: partition ${rest[0] ?? 'REGION'})`);
  }
  return { kind: 'fault', fault: { kind: 'down' }, a: region(rest[0]), b: region(rest[1]) };
}

/** The fault, or an error that gives the simulator's syntax (with its region arguments). */
function faultOrUsage(text: string, syntax: string): Fault {
  try {
    return parseFault(text);
  } catch (err) {
    throw new Error(`usage: ${syntax}; got '${text}' (${err instanceof Error ? err.message : String(err)})`, { cause: err });
  }
}

/** Runs a parsed command; returns what to print. */
export async function runSimCommand(cluster: LocalCluster, cmd: SimCommand): Promise<string> {
  switch (cmd.kind) {
    case 'help':
      return SIM_HELP;
    case 'status':
      return formatStatus(await clusterStatus(cluster));
    case 'heal':
      cluster.heal();
      return 'all links healed';
    case 'partition':
      cluster.isolate(cmd.region);
      return `${cmd.region} is cut off from every peer; its clients can still write to ${cluster.url(cmd.region)}`;
    case 'fault': {
      cluster.setFault(cmd.fault, cmd.a, cmd.b);
      const where = cmd.a && cmd.b ? `${cmd.a} <-> ${cmd.b}` : cmd.a ? `links of ${cmd.a}` : 'all links';
      return `${where}: ${formatFault(cmd.fault)}`;
    }
    case 'process':
      switch (cmd.action) {
        case 'kill': await cluster.kill(cmd.region); return `${cmd.region} killed (SIGKILL)`;
        case 'restart': await cluster.restart(cmd.region); return `${cmd.region} restarted`;
        case 'pause': cluster.pause(cmd.region); return `${cmd.region} paused (SIGSTOP)`;
        case 'resume': cluster.resume(cmd.region); return `${cmd.region} resumed (SIGCONT)`;
        case 'wipe': await cluster.wipe(cmd.region); return `${cmd.region} wiped and restarted; it rebuilds from its peers`;
        case 'start': await cluster.startRegion(cmd.region); return `${cmd.region} started`;
        case 'stop': await cluster.stopRegion(cmd.region); return `${cmd.region} stopped (SIGTERM)`;
      }
  }
}

export interface RegionStatusRow {
  region: string;
  url: string;
  process: 'running' | 'paused' | 'stopped';
  reachable: boolean;
  digest: string | null;
  pendingDocs: number;
  peers: { region: string; state: string; route: string; outboundPending: number; outboundLagMs: number; inboundPending: number }[];
}

/** What {@link clusterStatus} reads of a cluster: local processes or the verifier's compose stack. */
export interface StatusSource {
  readonly regions: ReadonlyMap<string, { readonly name: string; readonly url: string; readonly proc: object | null; readonly paused: boolean }>;
}

/** Asks every region for its sync status (an unreachable region gets a row too). */
export async function clusterStatus(cluster: StatusSource): Promise<{ rows: RegionStatusRow[]; converged: boolean }> {
  const rows = await Promise.all([...cluster.regions.values()].map(async (r): Promise<RegionStatusRow> => {
    const base: RegionStatusRow = {
      region: r.name, url: r.url, process: r.proc ? (r.paused ? 'paused' : 'running') : 'stopped',
      reachable: false, digest: null, pendingDocs: 0, peers: [],
    };
    if (!r.proc || r.paused) return base;
    try {
      const res = await fetch(`${r.url}/v1/sync`, { signal: AbortSignal.timeout(1500) });
      const body = (await res.json()) as SyncStatus;
      return {
        ...base, reachable: true, digest: body.digest, pendingDocs: body.pendingDocs,
        peers: body.peers.map((p) => ({
          region: p.region, state: p.state, route: p.route,
          outboundPending: p.outbound.pendingUpdates, outboundLagMs: p.outbound.lagMs, inboundPending: p.inbound.pendingUpdates,
        })),
      };
    } catch {
      return base;
    }
  }));
  const digests = new Set(rows.map((r) => r.digest));
  const converged = rows.every((r) => r.reachable) && digests.size === 1 &&
    rows.every((r) => r.pendingDocs === 0 && r.peers.every((p) => p.outboundPending === 0));
  return { rows, converged };
}

export function formatStatus(status: { rows: RegionStatusRow[]; converged: boolean }): string {
  const table: string[][] = [['region', 'process', 'peer', 'link', 'route', 'out pending', 'out lag ms', 'in pending', 'digest']];
  for (const r of status.rows) {
    const digest = r.digest ? r.digest.slice(0, 12) : '-';
    // A paused or stopped region answers nothing: its peer columns say so instead of shifting.
    if (r.peers.length === 0) table.push([r.region, r.process, '-', r.reachable ? '-' : 'no answer', '-', '-', '-', '-', digest]);
    r.peers.forEach((p, i) => {
      table.push([
        i === 0 ? r.region : '', i === 0 ? r.process : '', p.region, p.state, p.route,
        String(p.outboundPending), String(Math.round(p.outboundLagMs)), String(p.inboundPending), i === 0 ? digest : '',
      ]);
    });
  }
  const lines = alignColumns(table);
  lines.push(status.converged ? 'digests agree: yes (converged)' : 'digests agree: no');
  return lines.join('\n');
}

/** Pads every cell to its column's widest, so no value can push the next column out of line. */
function alignColumns(table: string[][]): string[] {
  const widths = table[0]!.map((_, col) => Math.max(...table.map((row) => (row[col] ?? '').length)));
  return table.map((row) => row.map((cell, col) => cell.padEnd(widths[col] ?? 0)).join('  ').trimEnd());
}
