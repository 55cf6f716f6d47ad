#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian or Ubuntu machine: the disk, ZFS and Nix
# tools from apt, then the npm dependencies. Run as root (or it uses sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
# Node is not installed here: Debian 12's nodejs is 18, and the project needs 20.17 or newer.
if ! command -v node >/dev/null 2>&1 || ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 17) ? 0 : 1)'; then
  echo "error: Node.js 20.17 or newer (with npm) must be on PATH first; found: $(node --version 2>/dev/null || echo none)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# qemu-utils: qemu-img; parted, fdisk: partitioning; dosfstools, mtools: the ESP;
# zfs-fuse: userspace ZFS; nix-bin: nix-build and nix-store; busybox-static: the demo system;
# tmux: the terminal-renderer test; btrfs-progs: the test of an export to a compressing file system.
$sudo apt-get install -y -qq --no-install-recommends \
  qemu-utils parted fdisk dosfstools mtools zfs-fuse nix-bin busybox-static tmux util-linux coreutils btrfs-progs >/dev/null
npm ci --no-audit --no-fund
