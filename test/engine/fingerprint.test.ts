import { chmod, mkdir, mkdtemp, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalJson } from '../../lib/caching/canonical-json.ts';
import { buildManifest, diffManifests, fingerprintOf } from '../../lib/caching/fingerprint.ts';
import { sha256 } from '../../lib/caching/file-hash.ts';
import type { Task } from '../../lib/engine/task.ts';

let dir: string;
let file: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'fp-'));
  file = path.join(dir, 'input.txt');
  await writeFile(file, 'one');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const task = (over: Partial<Task> = {}): Task => ({
  id: 't',
  stage: 't',
  title: 't',
  deps: ['dep'],
  inputs: { size: 1, nested: { a: 1, b: [1, 2] } },
  version: 1,
  artifacts: [],
  run: async () => undefined,
  ...over,
});

const fp = async (over: Partial<Task> = {}, deps: Record<string, string> = { dep: 'x' }) =>
  fingerprintOf(await buildManifest(task({ inputFiles: [file], tools: ['sh'], ...over }), deps));

describe('fingerprints', () => {
  it('do not depend on key order', async () => {
    expect(canonicalJson({ b: 1, a: { d: 2, c: 3 } })).toBe(canonicalJson({ a: { c: 3, d: 2 }, b: 1 }));
    const a = await fp({ inputs: { size: 1, nested: { a: 1, b: [1, 2] } } });
    const b = await fp({ inputs: { nested: { b: [1, 2], a: 1 }, size: 1 } });
    expect(a).toBe(b);
    expect(await fp()).toBe(a); // and are stable across calls
  });

  it('change with each kind of input', async () => {
    const base = await fp();
    expect(await fp({ inputs: { size: 2, nested: { a: 1, b: [1, 2] } } })).not.toBe(base);
    expect(await fp({ inputs: { size: 1, nested: { a: 1, b: [2, 1] } } })).not.toBe(base); // array order matters
    expect(await fp({ version: 2 })).not.toBe(base);
    expect(await fp({ id: 'other' })).not.toBe(base);
    expect(await fp({ tools: ['sh', 'cp'] })).not.toBe(base);
    expect(await fp({}, { dep: 'y' })).not.toBe(base);
    await writeFile(file, 'two');
    expect(await fp()).not.toBe(base);
    await writeFile(file, 'one');
    expect(await fp()).toBe(base); // content, not mtime, decides
    // a file's own mode counts, as a folder's entries' do: cp -a copies it into the image
    await chmod(file, 0o755);
    expect(await fp()).not.toBe(base);
    await chmod(file, 0o644);
    expect(await fp()).toBe(base);
  });

  it('hash a tool found through a link by its binary, so upgrading the binary reruns the task', async () => {
    const bin = path.join(dir, 'bin');
    await mkdir(bin);
    await writeFile(path.join(bin, 'tool-1.0'), '#!/bin/sh\necho 1.0\n', { mode: 0o755 });
    await symlink('tool-1.0', path.join(bin, 'tool'));
    const saved = process.env.PATH;
    process.env.PATH = bin;
    try {
      const before = await buildManifest(task({ tools: ['tool'] }), {});
      await writeFile(path.join(bin, 'tool-1.0'), '#!/bin/sh\necho 1.1\n');
      const after = await buildManifest(task({ tools: ['tool'] }), {});
      expect(before.tools['tool']).toMatch(/^[0-9a-f]{64}$/);
      expect(diffManifests(before, after).map((change) => change.field)).toEqual(['tools.tool']);
    } finally {
      process.env.PATH = saved;
    }
  });

  it('uses the size+mtime fast path but notices a changed file', async () => {
    const memo = new Map<string, { size: number; mtimeMs: number; ino: number; hash: string }>();
    const m = { get: (f: string) => memo.get(f), set: (f: string, e: { size: number; mtimeMs: number; ino: number; hash: string }) => void memo.set(f, e) };
    const first = fingerprintOf(await buildManifest(task({ inputFiles: [file] }), { dep: 'x' }, m));
    expect(memo.get(file)?.hash).toMatch(/^[0-9a-f]{64}$/);
    // same size, mtime and inode: the remembered hash is used and the file is not read again
    const remembered = memo.get(file)!;
    memo.set(file, { ...remembered, hash: 'f'.repeat(64) });
    const mode = ((await stat(file)).mode & 0o7777).toString(8);
    expect((await buildManifest(task({ inputFiles: [file] }), { dep: 'x' }, m)).files[file]).toBe(sha256(`mode ${mode}\0${'f'.repeat(64)}`));
    memo.set(file, remembered);
    await writeFile(file, 'three!');
    const second = fingerprintOf(await buildManifest(task({ inputFiles: [file] }), { dep: 'x' }, m));
    expect(second).not.toBe(first);
    await writeFile(file, 'one');
  });

  it('hashes a symlink as its target path, or with follow what it points to', async () => {
    const target = path.join(dir, 'configuration.nix');
    const link = path.join(dir, 'linked.nix');
    await writeFile(target, '{ }\n');
    await symlink(target, link);
    const files = async () => (await buildManifest(task({ inputFiles: [{ path: link, follow: true }] }), { dep: 'x' })).files[link];
    const plain = async () => (await buildManifest(task({ inputFiles: [link] }), { dep: 'x' })).files[link];
    const followed = await files();
    const asLink = await plain();
    expect(followed).not.toBe(asLink);
    await writeFile(target, '{ boot.loader.timeout = 1; }\n');
    expect(await plain()).toBe(asLink); // the link did not change
    expect(await files()).not.toBe(followed); // what it points to did
  });

  it('hash a folder holding a FIFO and a socket without opening them, and still see a file beside them change', async () => {
    const tree = path.join(dir, 'specials');
    await mkdir(tree);
    await writeFile(path.join(tree, 'data.txt'), 'v1');
    execFileSync('mkfifo', [path.join(tree, 'pipe')]);
    const server = createServer();
    await new Promise<void>((listening) => server.listen(path.join(tree, 'sock'), listening));
    try {
      const hashOf = async () => (await buildManifest(task({ inputFiles: [tree] }), { dep: 'x' })).files[tree];
      // a FIFO opened for reading would wait for a writer forever
      const first = await hashOf();
      expect(first).toMatch(/^[0-9a-f]{64}$/);
      expect(await hashOf()).toBe(first);
      await writeFile(path.join(tree, 'data.txt'), 'v2');
      expect(await hashOf()).not.toBe(first);
    } finally {
      server.close();
    }
  });

  it('never give an input that cannot be read a value that stays the same', async () => {
    const tree = path.join(dir, 'unreadable');
    await mkdir(tree);
    await writeFile(path.join(tree, 'secret'), 'x');
    const hashOf = async () => (await buildManifest(task({ inputFiles: [tree] }), { dep: 'x' })).files[tree];
    // a file that is not a folder, in the path: ENOTDIR is as good as missing
    const file = path.join(tree, 'secret/below');
    expect((await buildManifest(task({ inputFiles: [file] }), { dep: 'x' })).files[file]).toBe('missing');
    // root reads anything; a folder that loops on itself cannot be hashed by anyone
    await symlink('loop', path.join(tree, 'loop'));
    const loop = path.join(tree, 'loop/x');
    const once = (await buildManifest(task({ inputFiles: [loop] }), { dep: 'x' })).files[loop];
    const twice = (await buildManifest(task({ inputFiles: [loop] }), { dep: 'x' })).files[loop];
    expect(once).toMatch(/^unreadable \(ELOOP\)/);
    expect(twice).not.toBe(once);
    expect(await hashOf()).toMatch(/^[0-9a-f]{64}$/);
  });

  it('diffs name the changed fields', async () => {
    const before = await buildManifest(task(), { dep: 'x' });
    const after = await buildManifest(task({ inputs: { size: 9, nested: { a: 1, b: [1, 2] } } }), { dep: 'y' });
    expect(diffManifests(before, after).map((c) => c.field)).toEqual(['deps.dep', 'inputs.size']);
  });
});
