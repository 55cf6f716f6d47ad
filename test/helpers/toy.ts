import { execa, type ResultPromise } from 'execa';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** Repository root. */
export const ROOT = path.resolve(import.meta.dirname, '../..');
const TOY = path.join(ROOT, 'test/fixtures/toy-taskfile.ts');

/** A scratch project for the toy Taskfile: a config, a cache folder and a marker folder. */
export interface ToyProject {
  readonly dir: string;
  readonly cache: string;
  readonly markers: string;
  /** Writes the config (markers filled in). */
  configure(config: Record<string, unknown>): Promise<void>;
  /** Runs the toy Taskfile to completion with CI line output. */
  run(...args: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }>;
  /** Starts the toy Taskfile without waiting. */
  start(...args: string[]): ResultPromise<{ reject: false; cwd: string; env: Record<string, string> }>;
  /** Task ids in the order they ran, over all runs. */
  runs(): Promise<string[]>;
  cleanup(): Promise<void>;
}

/** Makes a toy project in a temporary folder. */
export async function toyProject(): Promise<ToyProject> {
  const dir = await mkdtemp(path.join(tmpdir(), 'toy-'));
  const cache = path.join(dir, 'cache');
  const markers = dir;
  const configFile = path.join(dir, 'config.json');
  await writeFile(configFile, JSON.stringify({ markers }));
  // One process (node with tsx's loader), so signals and kill -9 reach the runner itself.
  const argv = (args: string[]): string[] => ['--import', 'tsx', TOY, ...args, '--config', configFile, '--cache-dir', cache];
  const options = { reject: false as const, cwd: ROOT, env: { CI: '1' } };
  // builds a failed test may have left running, ended by cleanup
  const started: ResultPromise[] = [];
  const launch = (args: string[]) => {
    const child = execa(process.execPath, argv(args), options);
    started.push(child);
    return child;
  };
  return {
    dir,
    cache,
    markers,
    async configure(config) {
      await writeFile(configFile, JSON.stringify({ markers, ...config }));
    },
    async run(...args) {
      const result = await launch(args);
      return { exitCode: result.exitCode ?? -1, stdout: result.stdout, stderr: result.stderr };
    },
    start(...args) {
      return launch(args);
    },
    async runs() {
      const text = await readFile(path.join(markers, 'runs.log'), 'utf8').catch(() => '');
      return text.split('\n').filter(Boolean);
    },
    async cleanup() {
      for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await Promise.allSettled(started);
      // a hang task's child and background grandchild outlive a killed runner; the environment tells them from a reused pid
      for (const name of ['child.pid', 'grandchild.pid']) {
        const pid = Number(await readFile(path.join(markers, name), 'utf8').catch(() => ''));
        const environ = pid > 0 ? await readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '') : '';
        try {
          if (environ.split('\0').includes(`MARKERS=${markers}`)) process.kill(pid, 'SIGKILL');
        } catch {
          // exited since
        }
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
