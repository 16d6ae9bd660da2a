/**
 * One process per data directory. A second region (or simulator) on the same
 * folder would share its SQLite files and configs, and quietly cut the first
 * one off; it is refused instead, with the holder's pid in the message.
 *
 * The lock is a file created exclusively (`O_EXCL`) holding the owner's pid.
 * A lock whose pid no longer runs, or is this very process (a container
 * restarted as pid 1 again), is stale and taken over. It is removed when the
 * holder releases it or exits; a SIGKILLed holder leaves it behind, stale.
 */
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** The lock's file name inside the folder it guards. */
export const LOCK_FILE = 'meridian.lock';

/** Another running process holds the folder. */
export class LockHeldError extends Error {
  constructor(
    readonly dir: string,
    readonly pid: number,
    readonly holder: string,
  ) {
    super(
      `${dir} is in use by ${holder} (pid ${pid}); stop it first, or choose another folder. ` +
        `If no such process runs, delete ${join(dir, LOCK_FILE)}.`,
    );
    this.name = 'LockHeldError';
  }
}

/** A held lock; `release` is idempotent. */
export interface DirLock {
  readonly path: string;
  release(): void;
}

/**
 * Takes the lock of `dir` (created if missing) for `holder` (e.g.
 * `region eu-west`). Throws {@link LockHeldError} when a live process holds it.
 */
export function lockDir(dir: string, holder: string): DirLock {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, LOCK_FILE);
  for (let attempt = 0; ; attempt++) {
    const fd = tryCreate(path);
    if (fd !== null) {
      writeSync(fd, `${process.pid}\n${holder}\n`);
      closeSync(fd);
      return held(path);
    }
    const owner = readOwner(path);
    if (owner !== null && isRunning(owner.pid) && owner.pid !== process.pid) throw new LockHeldError(dir, owner.pid, owner.holder);
    // Stale (or unreadable, half-written by a holder that died): take it over, once.
    if (attempt > 0) throw new LockHeldError(dir, owner?.pid ?? 0, owner?.holder ?? 'another process');
    rmSync(path, { force: true });
  }
}

function held(path: string): DirLock {
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    process.off('exit', release);
    rmSync(path, { force: true });
  };
  // An exit without release (process.exit after a fatal error) still frees the folder.
  process.on('exit', release);
  return { path, release };
}

function tryCreate(path: string): number | null {
  try {
    return openSync(path, 'wx');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return null;
    throw err;
  }
}

function readOwner(path: string): { pid: number; holder: string } | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const [pidText, holder] = text.split('\n');
  const pid = Number(pidText);
  return Number.isSafeInteger(pid) && pid > 0 ? { pid, holder: holder || 'another process' } : null;
}

/** Signal 0 checks existence; EPERM means it runs under another user. */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
