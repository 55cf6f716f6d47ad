# The demo's configFile: imported by the generated /etc/nixos/configuration.nix
# next to the fileSystems the install stage writes. It only has to be a valid
# NixOS module; the stand-in system (system.nix) is built without evaluating it.
{ ... }:
{
  networking.hostName = "demo";
  # ZFS refuses to import pools without a host id.
  networking.hostId = "8425e349";
  boot.loader.systemd-boot.enable = true;
  boot.loader.efi.canTouchEfiVariables = false;
  system.stateVersion = "25.05";
}
