# A stand-in NixOS toplevel with a big closure, for the image benchmark: the demo system
# (tasks/image/demo/system.nix) plus a store path of incompressible data, so that the
# closure the install stage copies is about `dataMiB` MiB.
#
#   nix-build bench/image/big-system.nix --option substituters '' --option sandbox false --no-out-link
#
# The data comes from /dev/urandom while the derivation builds (sandbox off, as for the demo),
# so each build of it has other bytes; once built it stays in the store and nix-build reuses it.
{
  # Size of the data store path, in MiB (in 32 MiB files).
  dataMiB ? 256,
  # The static busybox to build on (Debian: package busybox-static).
  busyboxBinary ? /bin/busybox,
}:

let
  system = builtins.currentSystem;
  demo = import ../../tasks/image/demo/system.nix { label = "bench"; inherit busyboxBinary; };
  # The host's busybox runs these two steps (sandbox off), as the demo's first step does:
  # busybox picks its applet from argv[0], which a store file name would not match.
  sh = toString busyboxBinary;

  # `dataMiB` MiB of random bytes (incompressible: lzjb and qcow2 can shrink none of it).
  data = builtins.derivation {
    name = "bench-data-${toString dataMiB}MiB";
    inherit system;
    builder = sh;
    args = [ "sh" "-ec" ''
      ${sh} mkdir -p "$out"
      i=0
      left=${toString dataMiB}
      while [ "$left" -gt 0 ]; do
        n=32; [ "$left" -lt 32 ] && n=$left
        ${sh} dd if=/dev/urandom of="$out/blob-$i" bs=1048576 count=$n 2>/dev/null
        i=$((i + 1)); left=$((left - n))
      done
    '' ];
  };
in
# The toplevel: every entry of the demo system, linked, plus a link that pulls the data into the closure.
builtins.derivation {
  name = "nixos-system-bench-${toString dataMiB}MiB";
  inherit system;
  builder = sh;
  args = [ "sh" "-ec" ''
    ${sh} mkdir -p "$out"
    for entry in ${demo}/*; do ${sh} ln -s "$entry" "$out/"; done
    ${sh} ln -s ${data} "$out/bench-data"
  '' ];
}
