import path from 'node:path';

/** The folder the demo config's relative paths are taken from (the project root). */
export const demoConfigDir = path.resolve(import.meta.dirname, '../../..');

/**
 * The embedded demo config: a small image whose system is a stand-in NixOS toplevel
 * built offline from tasks/image/demo/system.nix (static busybox, no nixpkgs).
 */
export const demoConfig = {
  name: 'nixos-zfs-demo',
  format: 'qcow2',
  bootSize: 64,
  rootSize: 256,
  rootPoolName: 'tank',
  datasets: {
    'tank/root': { mount: '/' },
    'tank/root/var': { mount: '/var' },
    'tank/nix': { mount: '/nix', properties: { atime: 'off' } },
    'tank/home': { mount: '/home', properties: { 'com.example:backup': 'yes' } },
  },
  contents: [{ source: 'tasks/image/demo/motd', target: '/etc/motd', mode: '0644', user: '0', group: '0' }],
  configFile: 'tasks/image/demo/configuration.nix',
  includeChannel: false,
  system: { expression: 'tasks/image/demo/system.nix' },
};
