import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { whichTool } from './which.ts';

/**
 * An exclusive lock shared by every process on the host: flock(2) on `file`, taken
 * by a helper (perl, else a shell running util-linux `flock`) that lives as long as
 * this process, so a hold costs a pipe round trip and the kernel drops the lock if
 * this process dies.
 * Holds within this process are queued, one at a time.
 */
export interface HostLock {
  /** Runs `work` while holding the lock. */
  hold<T>(work: () => Promise<T>): Promise<T>;
}

// Each helper answers each request on its own line.
// Perl (Essential on Debian) has flock built in: no process per hold.
const PERL_HELPER = [
  'use Fcntl qw(:flock); $| = 1;',
  'open(my $fh, ">>", $ARGV[0]) or exit 1;',
  'while (my $op = <STDIN>) {',
  '  chomp $op;',
  '  if ($op eq "lock") { print(flock($fh, LOCK_EX) ? "locked\\n" : "failed\\n") }',
  '  elsif ($op eq "unlock") { flock($fh, LOCK_UN); print "unlocked\\n" }',
  '}',
].join('\n');

// The fallback spawns flock(1) per lock. Unlocking closes fd 9, which drops the flock without
// spawning anything (the flock process that took it has exited and shares nothing).
const SH_HELPER = [
  ': >>"$1" || exit 1',
  'while read -r op; do',
  '  case "$op" in',
  '    lock) if exec 9>>"$1" && flock -x 9; then echo locked; else echo failed; fi ;;',
  '    unlock) exec 9>&-; echo unlocked ;;',
  '  esac',
  'done',
].join('\n');

// the running helper and who waits for its next answers, in order
interface Helper {
  readonly child: ChildProcessWithoutNullStreams;
  readonly answers: ((line: string | Error) => void)[];
}

/** Which helper holds the lock: perl when it is on PATH (the default), else sh with `flock`. */
export interface HostLockOptions {
  readonly helper?: 'perl' | 'sh';
}

/** A host-wide lock on `file` (its folder is created when missing). */
export function createHostLock(file: string, options: HostLockOptions = {}): HostLock {
  let helper: Helper | undefined;
  let queue: Promise<unknown> = Promise.resolve();

  const start = async (): Promise<Helper> => {
    if (helper) return helper;
    await mkdir(path.dirname(file), { recursive: true });
    // detached (own session): a terminal's Ctrl-C goes to our process group and must not kill the
    // helper while we still clean up under the lock; it ends when our end of its stdin closes
    const spawnOptions = { stdio: ['pipe', 'pipe', 'pipe'] as ['pipe', 'pipe', 'pipe'], detached: true };
    const child = (options.helper ?? ((await whichTool('perl')) ? 'perl' : 'sh')) === 'perl'
      ? spawn('perl', ['-e', PERL_HELPER, file], spawnOptions)
      : spawn('sh', ['-c', SH_HELPER, 'host-lock', file], spawnOptions);
    const started: Helper = { child, answers: [] };
    let buffered = '';
    let stderr = '';
    const failAll = (error: Error): void => {
      for (const answer of started.answers.splice(0)) answer(error);
      if (helper === started) helper = undefined;
    };
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      buffered += chunk;
      for (let end = buffered.indexOf('\n'); end >= 0; end = buffered.indexOf('\n')) {
        const line = buffered.slice(0, end);
        buffered = buffered.slice(end + 1);
        started.answers.shift()?.(line);
      }
    });
    child.stderr.on('data', (chunk: Buffer) => void (stderr += chunk.toString()));
    child.on('error', (error) => failAll(new Error(`cannot take the host lock ${file}: ${error.message}`)));
    // a helper that died: the write fails (EPIPE) and the exit below answers everyone waiting
    child.stdin.on('error', () => undefined);
    child.on('exit', () => failAll(new Error(`cannot take the host lock ${file}: ${stderr.trim() || 'its helper exited'}`)));
    // a lock helper never keeps the process alive; it ends when our stdin closes
    child.unref();
    (child.stdout as { unref?: () => void }).unref?.();
    (child.stderr as { unref?: () => void }).unref?.();
    (child.stdin as { unref?: () => void }).unref?.();
    helper = started;
    return started;
  };

  const ask = async (op: 'lock' | 'unlock'): Promise<void> => {
    const { child, answers } = await start();
    // keep the event loop alive while an answer is due
    (child.stdout as { ref?: () => void }).ref?.();
    try {
      const answer = await new Promise<string | Error>((resolve) => {
        answers.push(resolve);
        child.stdin.write(`${op}\n`);
      });
      if (answer instanceof Error) throw answer;
      if (answer === 'failed') throw new Error(`cannot take the host lock ${file}: flock failed`);
    } finally {
      if (answers.length === 0) (child.stdout as { unref?: () => void }).unref?.();
    }
  };

  return {
    hold<T>(work: () => Promise<T>): Promise<T> {
      const run = async (): Promise<T> => {
        await ask('lock');
        try {
          return await work();
        } finally {
          await ask('unlock').catch(() => undefined);
        }
      };
      const result = queue.then(run, run);
      queue = result.catch(() => undefined);
      return result;
    },
  };
}
