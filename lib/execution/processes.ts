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
    const parent = Number((await statFields(pid))?.[1]);
    if (Number.isInteger(parent)) children.set(parent, [...(children.get(parent) ?? []), pid]);
  }
  const tree = new Set([root]);
  for (const pid of tree) for (const child of children.get(pid) ?? []) tree.add(child);
  return tree;
}

/** Whether a process exists and is not a zombie (a dead child nobody reaped yet counts as gone). */
export async function processAlive(pid: number): Promise<boolean> {
  const state = (await statFields(pid))?.[0];
  return state !== undefined && state !== 'Z';
}

/** A process's command name (/proc/<pid>/comm, at most 15 characters), or '' for one that is gone. */
export async function processName(pid: number): Promise<string> {
  return (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim();
}

/** Sends a signal to a process that may have exited since it was looked at. */
export function signalProcess(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // gone already
  }
}

/**
 * The fields of /proc/<pid>/stat after the command name (state, parent pid, …), or undefined for a
 * process that is gone. The name is in parentheses and may itself hold spaces and parentheses.
 */
async function statFields(pid: number): Promise<string[] | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return stat === '' ? undefined : stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

async function allPids(): Promise<number[]> {
  return (await readdir('/proc').catch(() => [] as string[])).filter((name) => /^\d+$/.test(name)).map(Number);
}
