import { describe, expect, it } from 'vitest';
import { statusUsesVdev } from '../../tasks/image/sweep.ts';

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
