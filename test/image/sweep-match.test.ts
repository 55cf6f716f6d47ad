import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CommandError } from '../../lib/execution/command-error.ts';
import type { Exec } from '../../lib/execution/types.ts';
import { imageSweeper, poolsUsing, statusUsesVdev } from '../../tasks/image/sweep.ts';

// `zpool status` as OpenZFS 2.2 prints it for a pool on a loop device: the short partition name
const OPENZFS = `  pool: nixos-zfs-image-123
 state: ONLINE
config:

\tNAME        STATE     READ WRITE CKSUM
\tnixos-zfs-image-123  ONLINE       0     0     0
\t  loop3p1   ONLINE       0     0     0

errors: No known data errors
`;

// zfs-fuse 0.7 prints the vdev path it was given (a link in the run's own folder)
const ZFS_FUSE = `  pool: tank
 state: ONLINE
 scrub: none requested
config:

\tNAME                                                  STATE     READ WRITE CKSUM
\ttank                                                  ONLINE       0     0     0
\t  /real/cache/work/4242.mount.ab12/vdev.xyz/root.raw  ONLINE       0     0     0

errors: No known data errors
`;

describe('which imported pools a dead run left behind', () => {
  it('matches an OpenZFS pool on the run\'s loop device by its short partition name, or by full path', () => {
    expect(statusUsesVdev(OPENZFS, ['/cache/work/4242.mount.ab12'], ['/dev/loop3'])).toBe(true);
    expect(statusUsesVdev(OPENZFS.replace('loop3p1', '/dev/loop3p1'), [], ['/dev/loop3'])).toBe(true);
  });

  it('does not take another loop device with the same prefix', () => {
    expect(statusUsesVdev(OPENZFS, [], ['/dev/loop31'])).toBe(false);
    expect(statusUsesVdev(OPENZFS.replace('loop3p1', 'loop31p1'), [], ['/dev/loop3'])).toBe(false);
  });

  it('matches a zfs-fuse pool by the folder\'s real path when the cache is reached through a link', () => {
    expect(statusUsesVdev(ZFS_FUSE, ['/link/cache/work/4242.mount.ab12'], [])).toBe(false);
    expect(statusUsesVdev(ZFS_FUSE, ['/link/cache/work/4242.mount.ab12', '/real/cache/work/4242.mount.ab12'], [])).toBe(true);
  });

  it('leaves a pool on a folder beside the run\'s alone', () => {
    expect(statusUsesVdev(ZFS_FUSE, ['/real/cache/work/4242.mount.ab1'], [])).toBe(false);
  });
});

describe('asking zfs which pools a dead run left behind', () => {
  // zpool's answers stand in for a daemon in a given state: what is judged here is what an answer means
  const zpoolThat = (fails: () => CommandError, status = ''): Exec => async (file, args) => {
    if (args[0] === 'list') throw fails();
    return { command: `${file} ${args.join(' ')}`, exitCode: 0, stdout: status, stderr: '' };
  };
  const exited = () => new CommandError({ command: 'zpool list', exitCode: 1, tail: ['connect: No such file or directory'] });
  const timedOut = () => new CommandError({ command: 'zpool list', exitCode: -1, signal: 'SIGTERM', tail: [], timedOutAfterMs: 100 });
  const noProgram = () => new CommandError({ command: 'zpool list', exitCode: -1, tail: [], spawnError: 'spawn zpool ENOENT' });

  it('zpool exiting non-zero (no daemon) means no pools', async () => {
    expect(await poolsUsing(zpoolThat(exited), 'zpool', ['/x'], [])).toEqual({ ok: true, value: [] });
  });

  it('a zpool that did not answer in time, or did not start, leaves it unknown: never "no pools"', async () => {
    for (const fails of [timedOut, noProgram]) {
      const asked = await poolsUsing(zpoolThat(fails), 'zpool', ['/x'], []);
      expect(asked.ok).toBe(false);
    }
  });

  it('the sweeper keeps a dead run\'s folder when zfs cannot say whether a pool uses it', async () => {
    const folder = await mkdtemp(path.join(tmpdir(), 'sweep-unknown-'));
    try {
      const losetupOk: Exec = async (file, args) => {
        if (file.endsWith('zpool')) throw timedOut();
        return { command: `${file} ${args.join(' ')}`, exitCode: 0, stdout: '', stderr: '' };
      };
      const result = await imageSweeper(losetupOk)({ folder, pid: 1 });
      expect(result.keep).toBe('zfs could not say which pools use it (zpool list: no answer within 100 ms, stopped)');
      expect(result.lines).toEqual([]);
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  });
});
