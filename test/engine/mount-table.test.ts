import { execa } from 'execa';
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { mountHolding, mountsAtOrBelow, mountsUnder, parseMountInfo, readMountTable } from '../../lib/execution/mount-table.ts';

// lines as Linux 6.x writes them: optional fields (shared:, master:) before the '-'
const SAMPLE = [
  '22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw',
  '43 22 0:40 / /tmp/w/root rw,relatime shared:30 master:2 - fuse.zfs tank/root rw,user_id=0,group_id=0',
  '44 43 0:41 / /tmp/w/root/my\\040files rw,relatime - fuse.zfs tank/home rw,user_id=0',
  '45 43 0:42 / /tmp/w/root/back\\134slash rw - fuse.zfs tank/x rw',
  '46 22 0:43 / /tmp/w/rootless rw - tmpfs tmpfs rw',
  'garbage',
  '',
].join('\n');

describe('mount table', () => {
  it('reads source, mount point and type past any optional fields, unescaping octal escapes', () => {
    expect(parseMountInfo(SAMPLE)).toEqual([
      { source: '/dev/vda', target: '/', fsType: 'ext4', options: 'rw' },
      { source: 'tank/root', target: '/tmp/w/root', fsType: 'fuse.zfs', options: 'rw,user_id=0,group_id=0' },
      { source: 'tank/home', target: '/tmp/w/root/my files', fsType: 'fuse.zfs', options: 'rw,user_id=0' },
      { source: 'tank/x', target: '/tmp/w/root/back\\slash', fsType: 'fuse.zfs', options: 'rw' },
      { source: 'tmpfs', target: '/tmp/w/rootless', fsType: 'tmpfs', options: 'rw' },
    ]);
  });

  it('finds the mount holding a file: the longest mount point above it, not a sibling with the same prefix', () => {
    const table = parseMountInfo(SAMPLE);
    expect(mountHolding(table, '/tmp/w/root/my files/a')?.source).toBe('tank/home');
    expect(mountHolding(table, '/tmp/w/root/etc/fstab')?.source).toBe('tank/root');
    expect(mountHolding(table, '/tmp/w/rootless')?.source).toBe('tmpfs');
    expect(mountHolding(table, '/tmp/w/roots/x')?.source).toBe('/dev/vda');
  });

  it('finds mounts at or below a folder, not beside it with the same prefix', () => {
    const table = parseMountInfo(SAMPLE);
    expect(mountsAtOrBelow(table, '/tmp/w/root/').map((entry) => entry.target)).toEqual([
      '/tmp/w/root',
      '/tmp/w/root/my files',
      '/tmp/w/root/back\\slash',
    ]);
    expect(mountsAtOrBelow(table, '/').length).toBe(5);
    expect(mountsAtOrBelow(table, '/tmp/w/roo')).toEqual([]);
  });

  it('reads this process\'s real table, which always has /', async () => {
    const table = await readMountTable();
    expect(table.some((entry) => entry.target === '/')).toBe(true);
  });

  // A cache folder reached through a link (a symlinked /home, a cache on a bigger disk) must
  // still see what is mounted in it, or a sweep would `rm -r` through a bound /dev.
  it('finds a mount under a folder named through a symbolic link', async () => {
    const base = await mkdtemp(path.join(tmpdir(), 'mount-table-'));
    const real = path.join(base, 'real');
    const mountPoint = path.join(real, 'work', 'root');
    await mkdir(mountPoint, { recursive: true });
    await symlink(real, path.join(base, 'link'));
    await execa('mount', ['-t', 'tmpfs', 'tmpfs', mountPoint]);
    try {
      expect(await mountsUnder(path.join(base, 'link', 'work'))).toEqual([mountPoint]);
      expect(await mountsUnder(path.join(base, 'link', 'work', 'root'))).toEqual([mountPoint]);
    } finally {
      await execa('umount', [mountPoint]);
      await rm(base, { recursive: true, force: true });
    }
  });
});
