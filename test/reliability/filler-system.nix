# A stand-in NixOS toplevel whose closure carries incompressible filler, for the disk-full tests:
# the demo system (tasks/image/demo/system.nix) plus a store path of `files` files of `fileBytes`
# random bytes each (as bench/image/big-system.nix does, with the shape as a parameter).
#
#   nix-build test/reliability/filler-system.nix --arg files 4 --arg fileBytes 26214400 \
#     --option substituters '' --option sandbox false --no-out-link
#
# 4 x 25 MiB is 100 MiB of closure. Files of 128 KiB + 1 byte are the other shape: without
# compression, ZFS stores each in two full 128 KiB records, so they take about twice the
# space their NAR size (what the install stage's free-space check counts) says.
{
  files ? 4,
  fileBytes ? 26214400,
  # Goes into the store paths' names, to get another filler with the same shape.
  label ? "filler",
  # The static busybox to build on (Debian: package busybox-static).
  busyboxBinary ? /bin/busybox,
}:

let
  system = builtins.currentSystem;
  demo = import ../../tasks/image/demo/system.nix { inherit label busyboxBinary; };
  # The host's busybox runs these steps (sandbox off), as the demo's first step does.
  sh = toString busyboxBinary;
  shape = "${toString files}x${toString fileBytes}";

  data = builtins.derivation {
    name = "${label}-data-${shape}";
    inherit system;
    builder = sh;
    args = [ "sh" "-ec" ''
      ${sh} mkdir -p "$out"
      i=0
      while [ "$i" -lt ${toString files} ]; do
        ${sh} dd if=/dev/urandom of="$out/blob-$i" bs=${toString fileBytes} count=1 iflag=fullblock 2>/dev/null
        i=$((i + 1))
      done
    '' ];
  };
in
builtins.derivation {
  name = "nixos-system-${label}-${shape}";
  inherit system;
  builder = sh;
  args = [ "sh" "-ec" ''
    ${sh} mkdir -p "$out"
    for entry in ${demo}/*; do ${sh} ln -s "$entry" "$out/"; done
    ${sh} ln -s ${data} "$out/filler-data"
  '' ];
}
