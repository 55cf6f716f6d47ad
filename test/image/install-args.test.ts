import { describe, expect, it } from 'vitest';
import { installTask, nixosInstallArgs } from '../../tasks/image/stages/install.ts';
import { parseImageConfig } from '../../tasks/image/config.ts';

describe('nixos-install command line', () => {
  it('uses the seed flags', () => {
    expect(nixosInstallArgs('/mnt', '/nix/store/abc-system', undefined)).toEqual(['--root', '/mnt', '--no-root-passwd', '--system', '/nix/store/abc-system', '--substituters', '']);
  });
  it('adds the channel when there is one', () => {
    expect(nixosInstallArgs('/mnt', '/nix/store/abc-system', '/nix/store/def-nixos').slice(-2)).toEqual(['--channel', '/nix/store/def-nixos']);
  });
});

describe('install inputs', () => {
  const toplevel = `/nix/store/${'0123456789abcdfghijklmnpqrsvwxyz'}-nixos-system-demo`;
  const configWith = (includeChannel: boolean) => {
    const parsed = parseImageConfig(
      { system: { toplevel }, datasets: { 'tank/root': { mount: '/' } }, includeChannel, channelSource: 'nixpkgs' },
      { baseDir: '/configs', kindOf: () => 'folder' },
    );
    if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
    return parsed.value;
  };

  it('count channelSource only when the channel goes into the image', () => {
    expect(installTask(configWith(true)).inputs).toMatchObject({ includeChannel: true, channelSource: '/configs/nixpkgs' });
    expect(installTask(configWith(false)).inputs).toMatchObject({ includeChannel: false, channelSource: null });
    expect(installTask(configWith(false)).inputFiles).toEqual([]);
  });
});
