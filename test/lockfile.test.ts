/**
 * The data directory lock against real processes: a live holder keeps it, a
 * pid that now names another process (a container restarted after a crash
 * numbers its processes from 1 again) does not.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCK_FILE, LockHeldError, lockDir, startTimeOf } from '../src/lockfile.js';

let dir: string;
let other: ChildProcess;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'meridian-lock-'));
  other = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
});

afterAll(() => {
  other.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

function lockedBy(pid: number, started: string | null): string {
  const folder = mkdtempSync(join(dir, 'd-'));
  writeFileSync(join(folder, LOCK_FILE), `${pid}\nregion us-east\n${started ?? ''}\n`);
  return folder;
}

describe('data directory lock', () => {
  const pid = () => other.pid!;

  it('is refused while the process that took it runs', () => {
    const started = startTimeOf(pid());
    expect(started).not.toBeNull();
    expect(() => lockDir(lockedBy(pid(), started), 'region us-east')).toThrow(LockHeldError);
    // A lock written before start times were recorded names only the pid.
    expect(() => lockDir(lockedBy(pid(), null), 'region us-east')).toThrow(LockHeldError);
  });

  it('is taken over when its pid now names a process that started at another time', () => {
    const lock = lockDir(lockedBy(pid(), '12345'), 'region us-east');
    lock.release();
  });

  it('is taken over when its pid runs no process, and records this process and its start', () => {
    const folder = lockedBy(2 ** 22 + 7, null);
    const lock = lockDir(folder, 'region us-east');
    try {
      expect(readFileSync(join(folder, LOCK_FILE), 'utf8')).toBe(`${process.pid}\nregion us-east\n${startTimeOf(process.pid)}\n`);
    } finally {
      lock.release();
    }
  });
});
