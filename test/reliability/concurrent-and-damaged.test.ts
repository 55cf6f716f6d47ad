// Builds at the same time, and a damaged cache: nothing corrupted, every damage a reported miss.
import { execa } from 'execa';
import { readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { imageProject, ran, type ImageProject } from '../helpers/image.ts';
import { toyProject, type ToyProject } from '../helpers/toy.ts';

describe('two builds at the same time', () => {
  let one: ImageProject;
  let two: ImageProject;
  beforeAll(async () => {
    one = await imageProject('ctank1');
    two = await imageProject('ctank2');
  });
  afterAll(async () => {
    await one.cleanup();
    await two.cleanup();
  });

  it('on different cache folders both succeed, each with its own pool and working folders', async () => {
    const [a, b] = await Promise.all([one.build(), two.build()]);
    expect(a.exitCode, a.stderr).toBe(0);
    expect(b.exitCode, b.stderr).toBe(0);
    for (const project of [one, two]) {
      expect((await readdir(project.out)).sort()).toEqual(['image-info.json', 'nixos.boot.img', 'nixos.root.img']);
      expect(await readdir(path.join(project.cache, 'work'))).toEqual([]);
    }
    expect((await execa('zpool', ['list', '-H', '-o', 'name'], { reject: false })).stdout).not.toMatch(/ctank/);
  });

  it('on one cache folder the second waits for the first, and neither corrupts it', async () => {
    await one.configure({ format: 'vdi' });
    const first = one.start('build');
    const second = one.start('build');
    const [a, b] = await Promise.all([first, second]);
    expect(a.exitCode).toBe(0);
    expect(b.exitCode).toBe(0);
    expect(`${a.stderr}${b.stderr}`).toMatch(/waiting for another run \(pid \d+, build\)/);
    const verified = await one.run('verify');
    expect(verified.exitCode, verified.stdout).toBe(0);
    const again = await one.build();
    expect(ran(again.statuses)).toEqual([]);
  });
});

describe('a damaged cache', () => {
  let toy: ToyProject;
  beforeAll(async () => {
    toy = await toyProject();
  });
  afterAll(() => toy.cleanup());

  it('a corrupt index entry is reported and is a miss', async () => {
    expect((await toy.run('build')).exitCode).toBe(0);
    // cacache keeps entries' data under content-v2 by hash; garbage there fails its integrity check
    const content = path.join(toy.cache, 'index/content-v2');
    const files = (await execa('find', [content, '-type', 'f'])).stdout.split('\n').filter(Boolean);
    for (const file of files) await writeFile(file, 'garbage');
    const rebuilt = await toy.run('build');
    expect(rebuilt.exitCode).toBe(0);
    expect(rebuilt.stdout).toMatch(/cache entry damaged \(index entry unreadable/);
    expect(await toy.runs()).toHaveLength(8); // all four ran again
  });

  it('a deleted checkpoint is a miss, and a missing log is said plainly', async () => {
    await rm(path.join(toy.cache, 'artifacts'), { recursive: true, force: true });
    const rebuilt = await toy.run('build');
    expect(rebuilt.exitCode).toBe(0);
    expect(rebuilt.stdout).toMatch(/a: cache entry damaged \(artifact "out\.txt": .*missing\)/);
    await rm(path.join(toy.cache, 'logs'), { recursive: true, force: true });
    const logs = await toy.run('logs', 'a');
    expect(logs.exitCode).toBe(1);
    expect(logs.stderr).toMatch(/a: no log yet/);
  });
});
