import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nixOptions } from '../../tasks/image/nix-options.ts';

const dir = await mkdtemp(path.join(tmpdir(), 'nix-options-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

async function groupFile(content: string): Promise<string> {
  const file = path.join(dir, `group-${Math.random().toString(36).slice(2)}`);
  await writeFile(file, content);
  return file;
}

describe('nixOptions', () => {
  it('never asks a binary cache and turns the sandbox off', async () => {
    const options = nixOptions(await groupFile('root:x:0:\nnixbld:x:30000:nixbld1\n'));
    expect(options).toEqual(['--option', 'substituters', '', '--option', 'sandbox', 'false']);
  });

  it('builds without build users when the nixbld group is missing', async () => {
    const options = nixOptions(await groupFile('root:x:0:\nnixbldx:x:1:\n'));
    expect(options.slice(-3)).toEqual(['--option', 'build-users-group', '']);
  });

  it('treats an unreadable group file as a missing group', () => {
    expect(nixOptions(path.join(dir, 'absent')).slice(-3)).toEqual(['--option', 'build-users-group', '']);
  });
});
