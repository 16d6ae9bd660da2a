/** What every scenario is given by the runner. */
import { mkdirSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';

export interface BenchContext {
  quick: boolean;
  /** Folder for CPU profiles of region processes, or null when not profiling. */
  profileDir: string | null;
  /** Prints a progress line. */
  log(message: string): void;
  /** A fresh, empty folder under the run's scratch folder. */
  dir(name: string): string;
}

export function createContext(o: { quick: boolean; scratch: string; profileDir: string | null; started: number }): BenchContext {
  mkdirSync(o.scratch, { recursive: true });
  return {
    quick: o.quick,
    profileDir: o.profileDir,
    log: (message) => {
      const t = ((performance.now() - o.started) / 1000).toFixed(1).padStart(6);
      process.stdout.write(`[${t}s] ${message}\n`);
    },
    dir: (name) => mkdtempSync(join(o.scratch, `${name}-`)),
  };
}

/** Region names of the three-region scenarios (the first dials the others). */
export const REGIONS = ['ap-south', 'eu-west', 'us-east'];
