import { describe, expect, it } from 'vitest';
import { nixosInstallArgs } from '../../tasks/image/stages/install.ts';

describe('nixos-install command line', () => {
  it('uses the seed flags', () => {
    expect(nixosInstallArgs('/mnt', '/nix/store/abc-system', undefined)).toEqual(['--root', '/mnt', '--no-root-passwd', '--system', '/nix/store/abc-system', '--substituters', '']);
  });
  it('adds the channel when there is one', () => {
    expect(nixosInstallArgs('/mnt', '/nix/store/abc-system', '/nix/store/def-nixos').slice(-2)).toEqual(['--channel', '/nix/store/def-nixos']);
  });
});
