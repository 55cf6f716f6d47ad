import { readdir, readlink } from 'node:fs/promises';
import path from 'node:path';

/**
 * Pids of the processes (this one excepted) whose working directory, root, or an open file lies
 * in `dir`: what keeps a mount under it busy. Read from /proc; processes that end meanwhile, or
 * whose links cannot be read, are left out.
 */
export async function processesUsing(dir: string): Promise<number[]> {
  const inside = (target: string): boolean => target === dir || target.startsWith(`${dir}${path.sep}`);
  const pids = (await readdir('/proc').catch(() => [] as string[])).filter((name) => /^\d+$/.test(name)).map(Number);
  const found: number[] = [];
  for (const pid of pids) {
    if (pid === process.pid) continue;
    const base = `/proc/${pid}`;
    const fds = (await readdir(`${base}/fd`).catch(() => [] as string[])).map((fd) => `${base}/fd/${fd}`);
    const links = await Promise.all([`${base}/cwd`, `${base}/root`, ...fds].map((link) => readlink(link).catch(() => '')));
    if (links.some(inside)) found.push(pid);
  }
  return found;
}
