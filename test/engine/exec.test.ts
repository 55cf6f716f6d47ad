import { execFileSync } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { CommandError } from '../../lib/execution/command-error.ts';
import { createExec } from '../../lib/execution/exec.ts';

/** Pids of live processes whose command line contains `marker`. */
function processesWith(marker: string): number[] {
  const out = execFileSync('ps', ['-eo', 'pid=,stat=,args='], { encoding: 'utf8' });
  return out
    .split('\n')
    .filter((line) => line.includes(marker) && !line.includes('ps -eo') && !/^\s*\d+\s+Z/.test(line))
    .map((line) => Number(line.trim().split(/\s+/)[0]));
}

async function failureOf(promise: Promise<unknown>): Promise<CommandError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof CommandError) return error;
    throw error;
  }
  throw new Error('the command succeeded');
}

describe('exec endGroupOnExit', () => {
  it('stops a background job the command left holding its output, says so, and returns its status', async () => {
    // the sleep's own argv carries the marker (a shell may exec its last command)
    const marker = `sleep 29.${process.pid}`;
    const lines: string[] = [];
    const exec = createExec({ killGraceMs: 200, onLine: (line) => lines.push(line) });
    try {
      // without the option, exec would wait the 30 s for the sleep that holds stdout open
      const result = await exec('bash', ['-e', '-c', `${marker} &\necho started`], { endGroupOnExit: true });
      expect(result.exitCode).toBe(0);
      expect(lines[0]).toBe('started');
      expect(lines[1]).toMatch(/^\(the command exited but left processes running in its process group \d+; stopping them\)$/);
      expect(processesWith(marker)).toEqual([]);
      // a command that leaves nothing behind gets no such line
      lines.length = 0;
      await exec('bash', ['-c', 'echo alone'], { endGroupOnExit: true });
      expect(lines).toEqual(['alone']);
    } finally {
      for (const pid of processesWith(marker)) process.kill(pid, 'SIGKILL');
    }
  });
});

describe('exec timeouts', () => {
  it('stops a command that runs past its timeout and says so', async () => {
    const exec = createExec({ killGraceMs: 200 });
    const error = await failureOf(exec('sleep', ['30'], { timeoutMs: 300 }));
    expect(error.failure.timedOutAfterMs).toBe(300);
    expect(error.failure.aborted).toBeUndefined();
    expect(error.message).toBe('sleep 30: no answer within 300 ms, stopped');
  });

  it('kills one that ignores SIGTERM, with its children', async () => {
    const marker = `exec-test-ignores-term-${process.pid}`;
    const lines: string[] = [];
    const exec = createExec({ killGraceMs: 200, onLine: (line) => lines.push(line) });
    // `ready` once the trap is set: a limit that struck before it would test nothing
    const error = await failureOf(exec('sh', ['-c', `trap '' TERM; sleep 30 & echo ready; wait # ${marker}`], { timeoutMs: 1000 }));
    expect(lines).toEqual(['ready']);
    expect(error.failure.timedOutAfterMs).toBe(1000);
    expect(error.failure.signal).toBe('SIGKILL');
    expect(error.failure.leftRunning).toBeUndefined();
    expect(processesWith(marker)).toEqual([]);
  });

  it('gives up waiting for a command that does not go away, and names what it left', async () => {
    // a grandchild in its own session keeps the output pipe open: the command never finishes for us
    const marker = `exec-test-left-behind-${process.pid}`;
    const lines: string[] = [];
    const exec = createExec({ killGraceMs: 200, onLine: (line) => lines.push(line) });
    try {
      const error = await failureOf(exec('sh', ['-c', `setsid sh -c 'echo ready; sleep 30 # ${marker}' & wait`], { timeoutMs: 1000 }));
      expect(lines).toEqual(['ready']); // the grandchild was there before the limit struck
      expect(error.failure.leftRunning).toBeGreaterThan(0);
      expect(error.message).toMatch(/no answer within 1 s, stopped \(pid \d+ did not exit even after SIGKILL and was left behind\)/);
    } finally {
      for (const pid of processesWith(marker)) process.kill(pid, 'SIGKILL');
    }
  });

  it('kills what the command left in its group once it exits after a timeout', async () => {
    // the grandchild ignores SIGTERM and holds no output pipe, so the command itself ends on SIGTERM
    const marker = `exec-test-leftover-${process.pid}`;
    const ready = `/tmp/exec-test-leftover-${process.pid}.ready`;
    const lines: string[] = [];
    const exec = createExec({ killGraceMs: 5_000, onLine: (line) => lines.push(line) });
    try {
      // the grandchild has set its trap (its ready file exists) before the command says ready
      const script = `rm -f ${ready}; sh -c 'trap "" TERM; : > ${ready}; while :; do sleep 1; done' ${marker} >/dev/null 2>&1 & while [ ! -e ${ready} ]; do sleep 0.01; done; echo ready; sleep 30`;
      const error = await failureOf(exec('sh', ['-c', script], { timeoutMs: 1000 }));
      expect(lines).toEqual(['ready']);
      expect(error.failure.timedOutAfterMs).toBe(1000);
      expect(processesWith(marker)).toEqual([]);
    } finally {
      for (const pid of processesWith(marker)) process.kill(pid, 'SIGKILL');
      await rm(ready, { force: true });
    }
  });

  it('an abort while the time limit runs out is reported as an abort, not as a timeout', async () => {
    const controller = new AbortController();
    // aborted as soon as the trap is set; it ignores SIGTERM, so it is still being stopped when the 1 s limit passes
    const exec = createExec({ killGraceMs: 2_000, signal: controller.signal, onLine: (line) => line === 'ready' && controller.abort() });
    const error = await failureOf(exec('sh', ['-c', `trap '' TERM; sleep 30 & echo ready; wait`], { timeoutMs: 1000 }));
    expect(controller.signal.aborted).toBe(true);
    expect(error.failure.aborted).toBe(true);
    expect(error.failure.timedOutAfterMs).toBeUndefined();
  });

  it('leaves a command that answers in time alone', async () => {
    const exec = createExec({ killGraceMs: 200 });
    const result = await exec('sh', ['-c', 'sleep 0.1; echo done'], { timeoutMs: 5_000 });
    expect(result.stdout).toBe('done\n');
  });

  it('Ctrl-C does not hang on a command that never goes away either', async () => {
    const marker = `exec-test-abort-${process.pid}`;
    const controller = new AbortController();
    // Ctrl-C once the grandchild that holds the output is there
    const exec = createExec({ killGraceMs: 200, signal: controller.signal, onLine: (line) => line === 'ready' && controller.abort() });
    try {
      const error = await failureOf(exec('sh', ['-c', `setsid sh -c 'echo ready; sleep 30 # ${marker}' & wait`]));
      expect(error.failure.aborted).toBe(true);
      expect(error.failure.leftRunning).toBeGreaterThan(0);
    } finally {
      for (const pid of processesWith(marker)) process.kill(pid, 'SIGKILL');
    }
  });
});

describe('commands that undo a half-done step', () => {
  it('run after an abort, and an abort while they run does not stop them', async () => {
    const controller = new AbortController();
    const exec = createExec({ killGraceMs: 200, signal: controller.signal });
    controller.abort();
    await expect(exec('true', [])).rejects.toThrow(/abort/i);
    const pending = exec('sh', ['-c', 'sleep 0.3; echo undone'], { ignoreAbort: true });
    const result = await pending;
    expect(result.stdout).toBe('undone\n');
    // a second abort event while one runs is ignored as well
    const again = new AbortController();
    const exec2 = createExec({ killGraceMs: 200, signal: again.signal });
    setTimeout(() => again.abort(), 50);
    expect((await exec2('sh', ['-c', 'sleep 0.3; echo kept'], { ignoreAbort: true })).stdout).toBe('kept\n');
  });
});

describe('exec output lines', () => {
  it('keeps a UTF-8 character whole when it falls across two pipe reads', async () => {
    const lines: string[] = [];
    const exec = createExec({ onLine: (line) => lines.push(line) });
    // 2-byte characters after one ASCII byte: a 64 KiB pipe read ends mid-character
    const script = "import sys; sys.stdout.write('x' + 'é' * 70000 + '\\n' + 'ünïcode path /tmp/ä.nix\\n')";
    const result = await exec('python3', ['-c', script]);
    expect(lines).toEqual([`x${'é'.repeat(70000)}`, 'ünïcode path /tmp/ä.nix']);
    expect(result.stdout).not.toContain('\uFFFD');
  });
});
