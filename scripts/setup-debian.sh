#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian or Ubuntu machine: the disk, ZFS and Nix
# tools from apt, then the npm dependencies. Run as root (or it uses sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# qemu-utils: qemu-img; parted, fdisk: partitioning; dosfstools, mtools: the ESP;
# zfs-fuse: userspace ZFS; nix-bin: nix-build and nix-store; busybox-static: the demo system;
# tmux: the terminal-renderer test.
$sudo apt-get install -y -qq --no-install-recommends \
  qemu-utils parted fdisk dosfstools mtools zfs-fuse nix-bin busybox-static tmux util-linux coreutils >/dev/null
npm ci --no-audit --no-fund
