// NIX_PATH read the way Nix reads it.

/** Whether a NIX_PATH value is a URL to Nix rather than a path (its EvalSettings::isPseudoUrl, and flake:). */
export function isNixUrl(value: string): boolean {
  if (value.startsWith('channel:') || value.startsWith('flake:')) return true;
  const scheme = value.indexOf('://');
  return scheme >= 0 && ['http', 'https', 'file', 'channel', 'git', 's3', 'ssh'].includes(value.slice(0, scheme));
}

/**
 * NIX_PATH's entries as Nix splits them: at each ':', except that a value that is a URL
 * (`https://…`, `channel:…`, `flake:…`) keeps its own colons up to the next ':' after the scheme's.
 */
export function parseNixPath(nixPath: string): string[] {
  const entries: string[] = [];
  let p = 0;
  while (p < nixPath.length) {
    const start = p;
    let value = p;
    while (p < nixPath.length && nixPath[p] !== ':') {
      if (nixPath[p] === '=') value = p + 1;
      p++;
    }
    // like Nix, the test looks at everything from the value on
    if (p < nixPath.length && isNixUrl(nixPath.slice(value))) {
      p++;
      while (p < nixPath.length && nixPath[p] !== ':') p++;
    }
    if (p > start) entries.push(nixPath.slice(start, p));
    p++;
  }
  return entries;
}

/** The first `nixpkgs=PATH` of NIX_PATH, else its first `nixpkgs=URL` (which is not used), else nothing. */
export function nixpkgsInNixPath(nixPath: string | undefined): { path: string } | { url: string } | undefined {
  let url: string | undefined;
  for (const entry of parseNixPath(nixPath ?? '')) {
    if (!entry.startsWith('nixpkgs=') || entry.length === 'nixpkgs='.length) continue;
    const value = entry.slice('nixpkgs='.length);
    if (!isNixUrl(value)) return { path: value };
    url ??= value;
  }
  return url === undefined ? undefined : { url };
}
