import { execa } from 'execa';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { findProgram } from '../../lib/execution/which.ts';

/**
 * Wrappers put first on PATH so a test can stop a real build inside a chosen command:
 * `<tool> <verb>` sleeps (in the tool's process group) while `<control>/pause-<tool>-<verb>`
 * (or `pause-<tool>-ANY`) exists, after writing its pid to `<control>/paused`. The wrappers never change between runs,
 * so fingerprints (which hash tool binaries) stay the same with or without a pause.
 */
export interface Shims {
  readonly bin: string;
  /** PATH with the wrappers first. */
  readonly path: string;
  pause(tool: string, verb: string): Promise<void>;
  unpause(): Promise<void>;
  /** Waits until a wrapper is sleeping; returns its pid. */
  waitPaused(ms?: number): Promise<number>;
}

/** Writes wrappers for `tools` under `dir`. */
export async function makeShims(dir: string, tools: readonly string[]): Promise<Shims> {
  const bin = path.join(dir, 'shim-bin');
  const control = path.join(dir, 'shim-control');
  await mkdir(bin, { recursive: true });
  await mkdir(control, { recursive: true });
  for (const tool of tools) {
    const real = findProgram(tool);
    if (!real) throw new Error(`${tool} is not installed`);
    const script = [
      '#!/bin/sh',
      `paused() { [ -e "${control}/pause-${tool}-$1" ] || [ -e "${control}/pause-${tool}-ANY" ]; }`,
      'if paused "$1"; then',
      `  echo $$ > "${control}/paused"`,
      '  while paused "$1"; do sleep 0.2; done',
      'fi',
      `exec "${real}" "$@"`,
      '',
    ].join('\n');
    await writeFile(path.join(bin, tool), script);
    await chmod(path.join(bin, tool), 0o755);
  }
  return {
    bin,
    path: `${bin}:${process.env['PATH'] ?? ''}:/usr/sbin:/sbin`,
    async pause(tool, verb) {
      await rm(path.join(control, 'paused'), { force: true });
      await writeFile(path.join(control, `pause-${tool}-${verb}`), '');
    },
    async unpause() {
      await execa('sh', ['-c', `rm -f "${control}"/pause-*`]);
    },
    async waitPaused(ms = 60_000) {
      const end = Date.now() + ms;
      while (Date.now() < end) {
        const text = await readFile(path.join(control, 'paused'), 'utf8').catch(() => '');
        if (text.trim()) return Number(text.trim());
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error('the build never reached the paused command');
    },
  };
}
