/**
 * One process per data directory. A second region (or simulator) on the same
 * folder would share its SQLite files and configs, and quietly cut the first
 * one off; it is refused instead, with the holder's pid in the message.
 *
 * The lock is a file created exclusively (`O_EXCL`) holding the owner's pid
 * and, where the system tells (Linux), when that process started. A lock
 * whose pid no longer runs, runs a process that started at another time (the
 * pid was reused: a container restarted after a crash numbers its processes
 * from 1 again), or is this very process, is stale and taken over. It is
 * removed when the holder releases it or exits; a SIGKILLed holder leaves
 * it behind, stale.
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
      writeSync(fd, `${process.pid}\n${holder}\n${startTimeOf(process.pid) ?? ''}\n`);
      closeSync(fd);
      return held(path);
    }
    const owner = readOwner(path);
    if (owner !== null && isRunning(owner) && owner.pid !== process.pid) throw new LockHeldError(dir, owner.pid, owner.holder);
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

interface Owner {
  pid: number;
  holder: string;
  /** When the holder started (clock ticks since boot), if the lock says. */
  started: string | null;
}

function readOwner(path: string): Owner | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const [pidText, holder, started] = text.split('\n');
  const pid = Number(pidText);
  return Number.isSafeInteger(pid) && pid > 0 ? { pid, holder: holder || 'another process', started: started || null } : null;
}

/** Signal 0 checks existence (EPERM: it runs under another user); the start time, that it is the same process. */
function isRunning(owner: Owner): boolean {
  try {
    process.kill(owner.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const started = startTimeOf(owner.pid);
  return owner.started === null || started === null || started === owner.started;
}

/** Field 22 of `/proc/<pid>/stat` (after the command name, which may hold spaces); null where there is no procfs. */
export function startTimeOf(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}
