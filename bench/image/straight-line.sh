#!/usr/bin/env bash
# The image build as one straight-line script: the same commands the staged build runs
# (tasks/image/stages/*), with no stages, no cache, no copies but the one working copy of
# the root disk the staged build also makes. The benchmark's baseline.
#
#   bench/image/straight-line.sh TOPLEVEL WORKDIR FORMAT POOL
#
# Writes WORKDIR/nixos.{boot,root}.<ext> with what image-info.json records of them (qemu-img
# info, sha256 by openssl, the same OpenSSL code Node hashes with). Prints `phase <name> <ms>` lines (and `daemon
# started|reused`) on stdout; command output goes to WORKDIR/script.log.
# zfs-fuse is started if it does not answer and stopped at the end only if this script
# started it (and no other pool or registered ZFS user is left). On every exit, failure
# included, the trap unbinds /dev /proc /sys, exports the pool and stops what it started.
set -euo pipefail

toplevel=$1
work=$2
format=$3
pool=$4

case "$format" in
  raw) ext=img; convert_args=(-O raw) ;;
  qcow2) ext=qcow2; convert_args=(-O qcow2) ;;
  qcow2-compressed) ext=qcow2; convert_args=(-O qcow2 -c) ;;
  vdi) ext=vdi; convert_args=(-O vdi) ;;
  vpc) ext=vhd; convert_args=(-O vpc) ;;
  *) echo "unknown format $format" >&2; exit 2 ;;
esac

boot_size_mib=64
root_size_mib=1024
root="$work/root"
links="$work/vdevs"
users_dir=/run/nixos-zfs-image/zfs-users
mkdir -p "$work" "$root" "$links" "$users_dir"
exec 3>&1 >>"$work/script.log" 2>&1

daemon_pid=""
imported=0
bound=()

now_ms() { echo $(($(date +%s%N) / 1000000)); }
phase_start=$(now_ms)
# Ends the current phase: prints its name and duration, starts the next one.
phase() {
  local t
  t=$(now_ms)
  echo "phase $1 $((t - phase_start))" >&3
  phase_start=$t
}

answers() { zpool list -H -o name >/dev/null 2>&1; }

# Live pids other than ours registered as ZFS users (the project's convention, see zfs-session.ts).
other_users() {
  local f
  for f in "$users_dir"/*; do
    [ -e "$f" ] || continue
    f=${f##*/}
    [ "$f" = "$$" ] && continue
    kill -0 "$f" 2>/dev/null && echo "$f"
  done
  return 0
}

start_daemon() {
  echo "$(date -Is)" >"$users_dir/$$"
  if answers; then
    echo "daemon reused" >&3
    return
  fi
  local deadline=$(($(date +%s) + 30))
  # another build's daemon may still be stopping and hold its lock: retry
  until zfs-fuse --pidfile "$work/zfs-fuse.pid" --no-kstat-mount; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "zfs-fuse did not start" >&2; exit 1; }
    sleep 0.5
  done
  daemon_pid=$(cat "$work/zfs-fuse.pid")
  until answers; do sleep 0.05; done
  echo "daemon started" >&3
}

alive() { # not gone and not a zombie
  local state
  state=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  state=${state##*) }
  [ "${state:0:1}" != Z ]
}

stop_daemon() {
  rm -f "$users_dir/$$"
  [ -n "$daemon_pid" ] || return 0
  if [ -n "$(other_users)" ] || [ -n "$(zpool list -H -o name 2>/dev/null)" ]; then
    echo "left zfs-fuse $daemon_pid running: another user or pool" >&3
    daemon_pid=""
    return 0
  fi
  kill -TERM "$daemon_pid" 2>/dev/null || true
  local i
  for ((i = 0; i < 300; i++)); do
    alive "$daemon_pid" || break
    sleep 0.1
  done
  alive "$daemon_pid" && kill -KILL "$daemon_pid"
  daemon_pid=""
}

cleanup() {
  local status=$?
  set +e
  for ((i = ${#bound[@]} - 1; i >= 0; i--)); do umount --lazy "${bound[$i]}"; done
  if [ "$imported" = 1 ]; then
    # only this pool's datasets, deepest first (never `zfs umount -a`: the daemon is shared)
    zfs list -H -o name -r "$pool" 2>/dev/null | sort -r | while read -r d; do zfs umount "$d" 2>/dev/null; done
    zpool export -f "$pool"
  fi
  stop_daemon
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# create-disks
qemu-img create -f raw "$work/boot.raw" "${boot_size_mib}M"
qemu-img create -f raw "$work/root.raw" "${root_size_mib}M"
phase create-disks

# partition (same parted argv as boot-disk.ts), then the FAT32 ESP at its offset
parted --script "$work/boot.raw" -- mklabel gpt mkpart no-fs 1MiB 2MiB set 1 bios_grub on \
  align-check optimal 1 mkpart ESP fat32 2MiB -1MiB set 2 esp on align-check optimal 2 print
read -r esp_start esp_size < <(sfdisk --dump "$work/boot.raw" | awk -F'[=,]' '/boot.raw2/ { print $2 + 0, $4 + 0 }')
mkfs.vfat -F 32 -n ESP -S 512 -h "$esp_start" --offset="$esp_start" "$work/boot.raw" $((esp_size / 2))
esp_offset=$((esp_start * 512))
phase partition

# create-pool: the daemon, the pool on the whole file, the datasets parents first, export
start_daemon
phase daemon-start
imported=1
zpool create -R "$work/pool-root" -m legacy -o autoexpand=on -O atime=off -O compression=on "$pool" "$work/root.raw"
zfs create -p -o com.example:backup=yes "$pool/home"
zfs create -p -o atime=off "$pool/nix"
zfs create -p "$pool/root"
zfs create -p "$pool/root/var"
zpool export "$pool"
imported=0
phase create-pool

# mount: a working copy of the disk, imported, the datasets mounted shortest path first
cp --reflink=auto --sparse=always -- "$work/root.raw" "$work/root.work.raw"
ln -s "$work/root.work.raw" "$links/root.work.raw"
imported=1
zpool import -R "$root" -d "$links" "$pool"
zfs set mountpoint=/ "$pool/root"
zfs set mountpoint=/nix "$pool/nix"
zfs set mountpoint=/var "$pool/root/var"
zfs set mountpoint=/home "$pool/home"
phase mount

# install: configuration, closure copied and registered, profile, /etc/NIXOS, boot loader chrooted
mkdir -p "$root/etc/nixos"
{
  echo '{ ... }:'
  echo '{'
  for m in "/ $pool/root" "/home $pool/home" "/nix $pool/nix" "/var $pool/root/var"; do
    set -- $m
    echo "  fileSystems.\"$1\" = { device = \"$2\"; fsType = \"zfs\"; };"
  done
  echo '}'
} >"$root/etc/nixos/generated-filesystems.nix"
echo '{ imports = [ ./generated-filesystems.nix ]; }' >"$root/etc/nixos/configuration.nix"
mapfile -t closure < <(nix-store --query --requisites "$toplevel")
mkdir -p "$root/nix/store"
cp -a -- "${closure[@]}" "$root/nix/store/"
phase copy-closure
nix-store --dump-db "${closure[@]}" |
  nix-store --store "local?root=$root" --load-db --option substituters '' --option sandbox false
mkdir -p "$root/nix/var/nix/profiles"
nix-env --store "local?root=$root" -p "$root/nix/var/nix/profiles/system" --set "$toplevel" \
  --option substituters '' --option sandbox false
mkdir -p "$root/etc" "$root/boot"
: >"$root/etc/NIXOS"
phase register
for target in dev proc sys; do
  mkdir -p "$root/$target"
  if [ "$target" = proc ]; then
    mount -t proc proc "$root/proc"
  else
    mount --rbind --make-rslave "/$target" "$root/$target"
  fi
  bound+=("$root/$target")
done
chroot_bin=$(command -v chroot)
chroot_env=(env NIXOS_INSTALL_BOOTLOADER=1 IN_NIXOS_ENTER=1 SYSTEMD_RELAX_ESP_CHECKS=1 PATH=/run/current-system/sw/bin:/usr/bin:/bin)
"${chroot_env[@]}" "$chroot_bin" "$root" "$toplevel/activate"
"${chroot_env[@]}" "$chroot_bin" "$root" "$toplevel/bin/switch-to-configuration" boot
for ((i = ${#bound[@]} - 1; i >= 0; i--)); do umount --recursive "${bound[$i]}"; done
bound=()
phase activate

# the ESP's content: /boot into the FAT with mcopy, then /boot emptied (it is the ESP's mount point)
MTOOLS_SKIP_CHECK=1 mcopy -s -m -D o -i "$work/boot.raw@@$esp_offset" "$root"/boot/* ::/
rm -rf "${root:?}"/boot/*
phase esp

# export-pool: unmount deepest first, mountpoints back to inherited (legacy), export
for dataset in "$pool/root/var" "$pool/nix" "$pool/home" "$pool/root"; do zfs umount "$dataset"; done
for dataset in "$pool/home" "$pool/nix" "$pool/root" "$pool/root/var"; do zfs inherit mountpoint "$dataset"; done
zpool export "$pool"
imported=0
phase export-pool

# convert
qemu-img convert -f raw "${convert_args[@]}" "$work/boot.raw" "$work/nixos.boot.$ext"
qemu-img convert -f raw "${convert_args[@]}" "$work/root.work.raw" "$work/nixos.root.$ext"
phase convert

# post-vm: what image-info.json records of each output (virtual size, file size, sha256)
for disk in boot root; do
  qemu-img info --output=json "$work/nixos.$disk.$ext" >"$work/info.$disk.json"
  openssl dgst -sha256 -r "$work/nixos.$disk.$ext" >"$work/sha256.$disk"
done
phase post-vm

stop_daemon
phase daemon-stop
