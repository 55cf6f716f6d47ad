# A stand-in NixOS system toplevel, built offline with no nixpkgs: the only
# input is the host's static busybox, copied into the store. It has the entry
# points the install stage calls (`activate`, `bin/switch-to-configuration`),
# plus `init`, `nixos-version`, `kernel`, `initrd` and `sw/bin/{sh,bash}` like
# a real toplevel. Every script runs on the store busybox, so it works chrooted
# in an image that holds nothing but this closure.
#
#   nix-build tasks/image/demo/system.nix --option substituters '' --no-out-link
#   nix-build ... --argstr label other          # another toplevel path
#   nix-build ... --arg failSwitch true         # switch-to-configuration exits 1
{
  # Goes into the version, the boot entry's title and the store path.
  label ? "demo",
  # Makes `switch-to-configuration` fail, to test how a failing install is handled.
  failSwitch ? false,
  # The static busybox to build on (Debian: package busybox-static).
  busyboxBinary ? /bin/busybox,
  # Flakes evaluate purely and have no builtins.currentSystem: they pass it.
  system ? builtins.currentSystem,
}:

let

  # The path literal copies the binary into the store, so its content is an input.
  busyboxFile = builtins.path { path = busyboxBinary; name = "busybox-static-binary"; };

  # busybox picks its applet from argv[0], so it needs a file named `busybox`
  # (the store file is `<hash>-busybox-static-binary`); the host's busybox runs
  # this one step (sandbox is off), every later step uses the store copy.
  busybox = builtins.derivation {
    name = "busybox-static";
    inherit system;
    builder = "/bin/busybox";
    args = [ "sh" "-ec" ''
      /bin/busybox mkdir -p "$out/bin"
      /bin/busybox cp "$src" "$out/bin/busybox"
      /bin/busybox chmod 0555 "$out/bin/busybox"
      /bin/busybox ln -s busybox "$out/bin/sh"
    '' ];
    src = busyboxFile;
  };

  sh = "${busybox}/bin/busybox";
  out = builtins.placeholder "out";
  version = "25.05.demo";

  # Refuses to run outside a NixOS root, so a stray call on a build host is harmless.
  guard = ''
    if [ ! -e /etc/NIXOS ]; then
      echo "$0: /etc/NIXOS is missing: run this chrooted in a NixOS image" >&2
      exit 1
    fi
  '';

  activate = ''
    #!${sh} sh
    # Demo activation: records the running system, as NixOS's activate does.
    set -e
    ${guard}
    mkdir -p /run /etc /nix/var/nix/gcroots
    ln -sfn ${out} /run/current-system
    ln -sfn /run/current-system /nix/var/nix/gcroots/current-system
    printf '%s\n' "${out}" > /etc/NIXOS-ACTIVATED
    echo "activated ${out}"
  '';

  switchToConfiguration = ''
    #!${sh} sh
    # Demo switch-to-configuration: only `boot` (install a systemd-boot entry) is supported.
    set -e
    action="$1"
    case "$action" in
      boot) ;;
      switch|test|dry-activate)
        echo "switch-to-configuration: '$action' is not supported by the demo system; use 'boot'" >&2
        exit 1 ;;
      *)
        echo "Usage: switch-to-configuration boot" >&2
        exit 1 ;;
    esac
    ${guard}${if failSwitch then ''
      echo "switch-to-configuration: failing on purpose (demo system built with failSwitch)" >&2
      exit 1
    '' else ""}
    # As `bootctl install` does, before writing anything: the loader goes only onto a mounted ESP,
    # unless SYSTEMD_RELAX_ESP_CHECKS=1.
    if [ "$NIXOS_INSTALL_BOOTLOADER" = 1 ] && [ "$SYSTEMD_RELAX_ESP_CHECKS" != 1 ] \
      && ! ${sh} awk '$5 == "/boot" { found = 1 } END { exit !found }' /proc/self/mountinfo; then
      echo "switch-to-configuration: /boot is not a mounted ESP; bootctl would refuse it (SYSTEMD_RELAX_ESP_CHECKS=1 relaxes that)" >&2
      exit 1
    fi
    mkdir -p /boot/loader/entries /boot/EFI/nixos
    cp ${out}/kernel /boot/EFI/nixos/demo-kernel.efi
    cp ${out}/initrd /boot/EFI/nixos/demo-initrd.efi
    # Store files are read-only; FAT would keep that as the R/O attribute.
    chmod 0644 /boot/EFI/nixos/demo-kernel.efi /boot/EFI/nixos/demo-initrd.efi
    printf '%s\n' \
      "title NixOS (${label})" \
      "version ${version}" \
      "linux /EFI/nixos/demo-kernel.efi" \
      "initrd /EFI/nixos/demo-initrd.efi" \
      "options init=${out}/init" \
      > /boot/loader/entries/nixos-demo.conf.tmp
    mv /boot/loader/entries/nixos-demo.conf.tmp /boot/loader/entries/nixos-demo.conf
    # Like systemd-boot-builder: the loader itself is (re)installed only when asked.
    if [ "$NIXOS_INSTALL_BOOTLOADER" = 1 ]; then
      printf '%s\n' "# boot loader installed (NIXOS_INSTALL_BOOTLOADER=1)" "timeout 3" "default nixos-demo.conf" > /boot/loader/loader.conf
    elif [ ! -e /boot/loader/loader.conf ]; then
      printf '%s\n' "timeout 3" "default nixos-demo.conf" > /boot/loader/loader.conf
    fi
    echo "installed boot entry for ${out}"
  '';

  init = ''
    #!${sh} sh
    # Demo stage-2 init: activates, then gives a shell (there is no service manager).
    ${out}/activate
    exec ${sh} sh
  '';

  bash = ''
    #!${sh} sh
    # busybox has no `bash` applet, so bash is busybox's sh under another name.
    exec ${sh} sh "$@"
  '';
in
builtins.derivation {
  name = "nixos-system-${label}-${version}";
  inherit system version activate switchToConfiguration init bash;
  builder = sh;
  passAsFile = [ "activate" "switchToConfiguration" "init" "bash" ];
  args = [ "sh" "-ec" ''
    mkdir -p "$out/bin" "$out/sw/bin"
    # Strips the indentation Nix leaves before the shebang line.
    install_script() { sed '1s/^[[:space:]]*//' "$1" > "$2"; chmod 0555 "$2"; }
    install_script "$activatePath" "$out/activate"
    install_script "$switchToConfigurationPath" "$out/bin/switch-to-configuration"
    install_script "$initPath" "$out/init"
    install_script "$bashPath" "$out/sw/bin/bash"
    ln -s ${sh} "$out/sw/bin/sh"
    ln -s ${sh} "$out/sw/bin/busybox"
    printf '%s' "$version" > "$out/nixos-version"
    printf '%s' "$system" > "$out/system"
    printf 'demo kernel for %s\n' "$out" > "$out/kernel"
    printf 'demo initrd for %s\n' "$out" > "$out/initrd"
  '' ];
}
