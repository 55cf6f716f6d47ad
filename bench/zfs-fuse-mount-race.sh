#!/usr/bin/env bash
# Reproduces the zfs-fuse deadlock that the zfs-fuse driver's host lock prevents.
#
#   sudo bench/zfs-fuse-mount-race.sh ITERATIONS [--lock]
#
# Two "builds" (A and B) run a build's pool commands side by side on one zfs-fuse daemon:
# create a pool with four datasets, export, import a copy, set the mountpoints (which mounts),
# write a few files, unmount, set the mountpoints back, export; a third process lists pools
# meanwhile. With --lock every zpool and zfs command of A and B takes the same flock as the
# driver. An iteration that takes over 30 s is a hang: the script prints the stuck commands,
# kills the daemon, detaches its mounts and exits 1. Needs root, zfs-fuse, and no other zfs-fuse.
# The hang is rare. On a 2-vCPU VM an earlier form of this script (more files copied) hung at
# iteration 38 without --lock and passed 150 iterations with it; this form then passed 120
# iterations without --lock. Run a few hundred iterations to see it.
set -uo pipefail
iterations=${1:?usage: zfs-fuse-mount-race.sh ITERATIONS [--lock]}
locked=${2:-}
lockfile=/run/nixos-zfs-image/zfs-fuse.lock
work=$(mktemp -d /tmp/zfs-fuse-race-XXXXXX)
mkdir -p "$(dirname "$lockfile")"
if pgrep -x zfs-fuse >/dev/null; then echo "a zfs-fuse daemon is running already; stop it first" >&2; exit 2; fi

z() { if [ "$locked" = --lock ]; then flock "$lockfile" "$@"; else "$@"; fi; }

teardown() {
  kill "$poller" 2>/dev/null; wait "$poller" 2>/dev/null
  [ -e "$work/pid" ] && kill -KILL "$(cat "$work/pid")" 2>/dev/null
  sleep 0.5
  grep ' fuse.zfs ' /proc/mounts | awk '{print $2}' | grep "^$work/" | sort -r | while read -r m; do umount -l "$m"; done
  rm -rf "$work"
}

# One build's pool commands, on pool race$1, iteration $2.
build() {
  local pool=race$1 root=$work/$1-root-$2 stage=$work/$1-stage
  rm -rf "$stage" "$work/$1-vdev" && mkdir -p "$stage" "$root" "$work/$1-vdev"
  truncate -s 256M "$stage/root.raw"
  z zpool create -R "$stage/alt" -m legacy -o autoexpand=on -O atime=off -O compression=on "$pool" "$stage/root.raw" || return 1
  for dataset in home nix root root/var; do z zfs create -p "$pool/$dataset"; done
  z zpool export "$pool"
  cp --sparse=always "$stage/root.raw" "$work/$1-vdev/root.raw"
  z zpool import -R "$root" -d "$work/$1-vdev" "$pool" || return 1
  z zfs set mountpoint=/ "$pool/root"; z zfs set mountpoint=/nix "$pool/nix"
  z zfs set mountpoint=/var "$pool/root/var"; z zfs set mountpoint=/home "$pool/home"
  mkdir -p "$root/etc/nixos" "$root/nix/store" && echo x > "$root/etc/nixos/x" && cp -a /etc/hostname "$root/nix/store/"
  for dataset in home root/var nix root; do z zfs umount "$pool/$dataset"; done
  for dataset in root nix root/var home; do z zfs inherit mountpoint "$pool/$dataset"; done
  z zpool export "$pool"
}

zfs-fuse --pidfile "$work/pid" --no-kstat-mount || exit 2
until zpool list >/dev/null 2>&1; do sleep 0.1; done
(while [ -e "$work/pid" ]; do zpool list -H -o name >/dev/null 2>&1; zfs list -H >/dev/null 2>&1; done) 2>/dev/null &
poller=$!
for i in $(seq 1 "$iterations"); do
  build A "$i" >"$work/A.log" 2>&1 & a=$!
  build B "$i" >"$work/B.log" 2>&1 & b=$!
  for _ in $(seq 1 300); do kill -0 $a 2>/dev/null || kill -0 $b 2>/dev/null || break; sleep 0.1; done
  if kill -0 $a 2>/dev/null || kill -0 $b 2>/dev/null; then
    echo "hang at iteration $i${locked:+ (with the lock)}; stuck commands:"
    ps -eo pid,stat,wchan:20,args | grep -E ' (zfs|zpool|umount) ' | grep -v grep
    teardown
    exit 1
  fi
done
echo "$iterations iterations without a hang${locked:+ (with the lock)}"
kill "$poller" 2>/dev/null; wait "$poller" 2>/dev/null
kill -TERM "$(cat "$work/pid")"
for _ in $(seq 1 150); do pgrep -x zfs-fuse >/dev/null || break; sleep 0.2; done
teardown
