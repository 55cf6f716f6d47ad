// Host paths of paths inside the mounted image. The build writes into the image from the host,
// where an absolute link in the image (/etc/foo -> /etc/static/foo, or one that `contents` put
// there) would point at the build host's own files: these helpers keep every write inside.
import { lstat, readlink } from 'node:fs/promises';
import path from 'node:path';

/** Links followed in one path before giving up, as the kernel does (ELOOP). */
const MAX_LINKS = 40;

/**
 * Where `target` (an absolute path in the image) lies on the host, with the links in its folders
 * resolved as the booted image would resolve them: an absolute link from the image's root, `..`
 * never above it. The last component is not followed: a copy replaces it.
 */
export async function hostPathInImage(root: string, target: string): Promise<string> {
  const pending = target.split('/').filter(Boolean);
  const last = pending.pop();
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '.') continue;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const here = path.join(root, ...resolved, part);
    const info = await lstat(here).catch(() => undefined);
    if (!info?.isSymbolicLink()) {
      resolved.push(part);
      continue;
    }
    if (++links > MAX_LINKS) throw new Error(`${target} in the image passes through more than ${MAX_LINKS} symbolic links`);
    const link = await readlink(here);
    if (link.startsWith('/')) resolved.length = 0;
    pending.unshift(...link.split('/').filter(Boolean));
  }
  return last === undefined ? root : path.join(root, ...resolved, last);
}

/**
 * Fails when a folder on one of `paths` (absolute image paths), or the path itself, is a symbolic
 * link in the image: install writes these from the host, through tools (nix-store --store, cp)
 * that would follow the link out of the image.
 */
export async function refuseLinksOn(root: string, paths: readonly string[], cause: string): Promise<void> {
  for (const target of paths) {
    const parts = target.split('/').filter(Boolean);
    for (let depth = 1; depth <= parts.length; depth++) {
      const inImage = '/' + parts.slice(0, depth).join('/');
      const info = await lstat(path.join(root, inImage)).catch(() => undefined);
      if (info === undefined) break;
      if (info.isSymbolicLink()) {
        throw new Error(`${cause} put a symbolic link at ${inImage} (to ${await readlink(path.join(root, inImage))}) in the image; install writes ${target} from the build host and would follow it out of the image: make ${inImage} a folder`);
      }
    }
  }
}
