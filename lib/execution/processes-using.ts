import { readdir, readFile, readlink, realpath } from 'node:fs/promises';
import path from 'node:path';

/**
 * Pids of the processes (this one excepted) whose working directory, root, or an open file lies
 * in `dir`: what keeps a mount under it busy. Read from /proc, where links are real paths, so
 * `dir` is resolved first; processes that end meanwhile, or whose links cannot be read, are left out.
 */
export async function processesUsing(dir: string): Promise<number[]> {
  const real = await realpath(dir).catch(() => dir);
  const inside = (target: string): boolean => target === real || target.startsWith(`${real}${path.sep}`);
  const found: number[] = [];
  for (const pid of await allPids()) {
    if (pid === process.pid) continue;
    const base = `/proc/${pid}`;
    const fds = (await readdir(`${base}/fd`).catch(() => [] as string[])).map((fd) => `${base}/fd/${fd}`);
    const links = await Promise.all([`${base}/cwd`, `${base}/root`, ...fds].map((link) => readlink(link).catch(() => '')));
    if (links.some(inside)) found.push(pid);
  }
  return found;
}

/** `root` and every process below it (children, their children, …), from the parent pids in /proc. */
export async function processTree(root: number): Promise<Set<number>> {
  const children = new Map<number, number[]>();
  for (const pid of await allPids()) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    // the command name in parentheses may hold spaces: the parent pid is the second field after it
    const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (Number.isInteger(parent)) children.set(parent, [...(children.get(parent) ?? []), pid]);
  }
  const tree = new Set([root]);
  for (const pid of tree) for (const child of children.get(pid) ?? []) tree.add(child);
  return tree;
}

async function allPids(): Promise<number[]> {
  return (await readdir('/proc').catch(() => [] as string[])).filter((name) => /^\d+$/.test(name)).map(Number);
}
