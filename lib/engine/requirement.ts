/** A program a task set needs, with where to get it. */
export interface Requirement {
  /** The program looked up on PATH (and the sbin folders). */
  readonly program: string;
  /** Programs that do the same job where `program` is missing, in order of preference. */
  readonly alternatives?: readonly string[];
  /** What it is for, in a few words. */
  readonly purpose: string;
  /** Arguments that make it print its version on the first line (else the Debian package's version is shown). */
  readonly versionArgs?: readonly string[];
  /** The Debian/Ubuntu package that provides it. */
  readonly debian: string;
  /** How to get it on NixOS (a package attribute or an option). */
  readonly nixos: string;
}
