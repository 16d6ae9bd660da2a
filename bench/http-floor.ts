/**
 * The floor under a region's local write latency on this machine: the same
 * open-loop PUTs, from this process and its HTTP client, against bare Fastify
 * processes that answer at once (http-floor-server.ts), one per region and at
 * the same rate each. What a region adds to it is the write path itself:
 * the durable commit, replication and applying its peers' writes. The write
 * scenario runs its steps against one such process too.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { HttpClient } from './http.js';
import { openLoop, type LoadResult } from './load.js';
import { cpuMeter } from './machine.js';

const SERVER = fileURLToPath(new URL('./http-floor-server.js', import.meta.url));

export interface HttpFloorRow {
  rate: number;
  /** One per server process. */
  loads: LoadResult[];
  cpu: (number | null)[];
}

/** Bare servers (http-floor-server.ts), each in its own process as a region is, and a client for each. */
export interface BareServers {
  clients: HttpClient[];
  pids: number[];
  stop(): Promise<void>;
}

export async function startBareServers(processes: number): Promise<BareServers> {
  const children: ChildProcess[] = [];
  const stop = (): Promise<void> => Promise.all(children.map(async (child) => {
    if (child.exitCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
  })).then(() => undefined);
  try {
    const clients: HttpClient[] = [];
    for (let i = 0; i < processes; i++) {
      const child = fork(SERVER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      children.push(child);
      const [message] = (await once(child, 'message')) as [{ port: number }];
      clients.push(new HttpClient(`http://127.0.0.1:${message.port}`, 128));
    }
    return { clients, pids: children.map((c) => c.pid ?? -1), stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** For each rate: `processes` bare servers, each taking PUTs at that rate for `durationMs` after `warmUpMs` not counted. */
export async function httpFloor(o: { processes: number; rates: number[]; durationMs: number; warmUpMs: number }): Promise<HttpFloorRow[]> {
  const servers = await startBareServers(o.processes);
  try {
    const run = (rate: number, durationMs: number): Promise<LoadResult[]> => Promise.all(servers.clients.map((client, p) => openLoop({
      rate, durationMs,
      op: async (i) => {
        const r = await client.request(`/v1/docs/bench/d${p}-${i % 500}`, { method: 'PUT', body: { v: i } });
        if (r.status !== 200) throw new Error(`HTTP ${r.status}`);
      },
    })));
    await run(o.rates[0] ?? 100, o.warmUpMs);
    const rows: HttpFloorRow[] = [];
    for (const rate of o.rates) {
      const meters = servers.pids.map((pid) => cpuMeter(pid));
      const loads = await run(rate, o.durationMs);
      rows.push({ rate, loads, cpu: meters.map((m) => m()) });
    }
    return rows;
  } finally {
    await servers.stop();
  }
}
