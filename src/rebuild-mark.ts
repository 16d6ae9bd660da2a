/**
 * The mark a region leaves in its data directory while it rebuilds from its
 * peers. Restarted mid-rebuild, a region holds some documents already, so an
 * empty store no longer tells it is rebuilding: without the mark it would
 * take writes at once, concurrent with older values of the documents it does
 * not hold yet, which they could lose to.
 */
import { closeSync, existsSync, fsyncSync, openSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export const REBUILD_MARK_FILE = 'rebuilding';

export interface RebuildMark {
  /** The rebuild is over (this region holds what its peers held): the mark goes; the error when it could not. */
  done(): Error | null;
}

/**
 * Marks `dataDir` as rebuilding when its store is `empty` or the mark is
 * there from before (durably: a rebuild interrupted by a power cut is still
 * one); null when the region is not rebuilding.
 */
export function rebuildMark(dataDir: string, empty: boolean): RebuildMark | null {
  const path = join(dataDir, REBUILD_MARK_FILE);
  if (!empty && !existsSync(path)) return null;
  syncClosed(openSync(path, 'w'));
  syncClosed(openSync(dataDir, 'r'));
  return {
    done: () => {
      try {
        rmSync(path, { force: true });
        return null;
      } catch (err) {
        return err instanceof Error ? err : new Error(String(err));
      }
    },
  };
}

function syncClosed(fd: number): void {
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
