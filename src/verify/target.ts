/**
 * What the verifier drives: a set of regions it can write to, break and heal.
 * {@link LocalCluster} (processes of its own) and {@link ComposeCluster} (a
 * running docker-compose stack) both fit, so the same workload, nemesis and
 * checker run against either.
 */
import type { Fault } from '../faults/proxy.js';

/** The region's process, as far as the verifier can watch it. */
export interface TargetProcess {
  /** Set where /proc can be read for memory and descriptors (local processes). */
  readonly pid?: number | undefined;
  /** An exit nobody asked for is recorded as a crash. */
  once(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): unknown;
}

/** One region: where its clients reach it and whether it can serve. */
export interface TargetRegion {
  readonly name: string;
  readonly url: string;
  /** Null while the region is not running (killed, stopped, being wiped). */
  readonly proc: TargetProcess | null;
  readonly paused: boolean;
}

/** The operations the nemesis, the monitor and the convergence check need. */
export interface VerifyCluster {
  readonly regions: ReadonlyMap<string, TargetRegion>;
  region(name: string): TargetRegion;
  url(name: string): string;
  /** SIGKILL; resolves once the region is down. */
  kill(name: string): Promise<void>;
  /** Starts the region again; resolves once it serves. */
  startRegion(name: string): Promise<void>;
  pause(name: string): void | Promise<void>;
  resume(name: string): void | Promise<void>;
  /** Deletes the region's data and starts it empty; resolves once it serves. */
  wipe(name: string): Promise<void>;
  /** Sets `fault` on the links of `a` (all links when omitted), or on the one link a-b. */
  setFault(fault: Fault, a?: string, b?: string): void | Promise<void>;
  /** Removes every link fault. */
  heal(): void | Promise<void>;
}
