import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashFileContent, hashPath, type StatHash } from '../../lib/caching/file-hash.ts';

const MiB = 1 << 20;

describe('hashFileContent', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'file-hash-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  // around the 1 MiB read size, where an off-by-one in the buffer turns would show
  it.each([0, 1, MiB - 1, MiB, MiB + 1, 2 * MiB, 3.5 * MiB + 7])('agrees with sha256sum on %i bytes', async (size) => {
    const file = path.join(dir, `data-${size}`);
    await writeFile(file, randomBytes(size));
    const expected = execFileSync('sha256sum', [file], { encoding: 'utf8' }).split(' ')[0];
    expect(await hashFileContent(file)).toBe(expected);
  });

  it('tells how far it has got every 64 MiB', async () => {
    const file = path.join(dir, 'large');
    await writeFile(file, '');
    await truncate(file, 130 * MiB);
    const heard: number[] = [];
    const hash = await hashFileContent(file, { onProgress: (bytes) => heard.push(bytes) });
    expect(heard).toEqual([64 * MiB, 128 * MiB]);
    expect(hash).toBe(execFileSync('sha256sum', [file], { encoding: 'utf8' }).split(' ')[0]);
  });

  it('stops between reads when its signal is aborted, instead of reading to the end', async () => {
    const file = path.join(dir, 'stopped');
    await writeFile(file, '');
    await truncate(file, 300 * MiB);
    const controller = new AbortController();
    const heard: number[] = [];
    const hashing = hashFileContent(file, {
      signal: controller.signal,
      onProgress: (bytes) => {
        heard.push(bytes);
        controller.abort();
      },
    });
    await expect(hashing).rejects.toMatchObject({ name: 'AbortError' });
    expect(heard).toEqual([64 * MiB]); // the next report would have come at 128 MiB
    await expect(hashFileContent(file, { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
    await expect(hashPath(dir, { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('names the file when it cannot be read', async () => {
    await expect(hashFileContent(path.join(dir, 'missing'))).rejects.toThrow(/missing/);
  });

  it('sees every change in a folder holding names that are not UTF-8', async () => {
    const tree = path.join(dir, 'latin1');
    await mkdir(tree);
    const bytesPath = (name: Buffer): Buffer => Buffer.concat([Buffer.from(`${tree}/`), name]);
    const bad = Buffer.from([0x6e, 0xe9]); // "né" in Latin-1: not UTF-8
    await writeFile(bytesPath(bad), 'one');
    await writeFile(path.join(tree, 'plain.txt'), 'one');
    const memo = new Map<string, StatHash>();
    const before = await hashPath(tree, { memo });
    await writeFile(path.join(tree, 'plain.txt'), 'two');
    const sibling = await hashPath(tree, { memo });
    expect(sibling).not.toBe(before);
    await writeFile(bytesPath(bad), 'two');
    const own = await hashPath(tree, { memo });
    expect(own).not.toBe(sibling);
    // another name that decodes to the same replacement text is another tree
    await rm(bytesPath(bad));
    await writeFile(bytesPath(Buffer.from([0x6e, 0xe8])), 'two');
    expect(await hashPath(tree, { memo })).not.toBe(own);
    // only paths that are text are remembered (the memo is stored as JSON)
    expect([...memo.keys()]).toEqual([path.join(tree, 'plain.txt')]);
  });

  it('leaves out the ignored names at the top of a folder, and only there', async () => {
    const tree = path.join(dir, 'tree');
    await mkdir(path.join(tree, '.git'), { recursive: true });
    await mkdir(path.join(tree, 'lib/.git'), { recursive: true });
    await writeFile(path.join(tree, '.git/HEAD'), 'one\n');
    await writeFile(path.join(tree, 'lib/.git/HEAD'), 'one\n');
    await writeFile(path.join(tree, 'default.nix'), '{ }\n');
    const before = await hashPath(tree, { ignore: ['.git'] });
    await writeFile(path.join(tree, '.git/HEAD'), 'two\n');
    expect(await hashPath(tree, { ignore: ['.git'] })).toBe(before);
    // without ignore the top .git counts, and a nested .git always does
    expect(await hashPath(tree)).not.toBe(before);
    await writeFile(path.join(tree, 'lib/.git/HEAD'), 'two\n');
    expect(await hashPath(tree, { ignore: ['.git'] })).not.toBe(before);
  });

  it('leaves out ignored absolute paths at any depth, as if they were not there', async () => {
    const tree = path.join(dir, 'project');
    await mkdir(path.join(tree, 'nested/cache/artifacts'), { recursive: true });
    await writeFile(path.join(tree, 'system.nix'), '{ }\n');
    await writeFile(path.join(tree, 'nested/keep.nix'), '1\n');
    const cache = path.join(tree, 'nested/cache');
    const skip = [cache, path.join(tree, 'result')]; // one that does not exist is no error
    const before = await hashPath(tree, { ignore: skip });
    await writeFile(path.join(cache, 'artifacts/disk.raw'), 'changes every build');
    expect(await hashPath(tree, { ignore: skip })).toBe(before);
    await rm(cache, { recursive: true });
    expect(await hashPath(tree, { ignore: skip })).toBe(before);
    expect(await hashPath(tree)).toBe(before); // the same as a tree that never had it
    await writeFile(path.join(tree, 'nested/keep.nix'), '2\n');
    expect(await hashPath(tree, { ignore: skip })).not.toBe(before);
  });
});
