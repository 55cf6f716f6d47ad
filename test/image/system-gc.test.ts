// A cached system whose store paths the host's garbage collector removed is built again, and
// what follows stays cached when it comes back the same (real nix, zfs-fuse, as root).
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nixOptions } from '../../tasks/image/nix-options.ts';
import { DEMO, imageProject, ran, type ImageProject } from '../helpers/image.ts';
import { uniquePool } from '../helpers/reliability.ts';

let project: ImageProject;
beforeAll(async () => {
  project = await imageProject(uniquePool('gtank'));
  // a toplevel of this test's own: deleting it from the store must not touch another test's
  const expression = path.join(project.dir, 'system.nix');
  await writeFile(expression, `import ${DEMO.system} { label = "gc-${randomBytes(4).toString('hex')}"; }\n`);
  await project.configure({ system: { expression } });
});
afterAll(() => project.cleanup());

describe('a system removed by nix-collect-garbage', () => {
  it('is found stale by plan, built again by build, and nothing after it reruns', async () => {
    const first = await project.build();
    expect(first.exitCode, first.stderr).toBe(0);
    const info = JSON.parse(await readFile(path.join(project.out, 'image-info.json'), 'utf8')) as { system: { toplevel: string } };
    const toplevel = info.system.toplevel;
    await execa('nix-store', ['--delete', toplevel, ...nixOptions()]);
    await expect(stat(toplevel)).rejects.toThrow(/ENOENT/);
    const plan = await project.run('plan');
    expect(plan.stdout).toMatch(new RegExp(`^system\\s+run\\s+cache entry stale: ${toplevel} no longer in the Nix store`, 'm'));
    const again = await project.build();
    expect(again.exitCode, again.stderr).toBe(0);
    expect(ran(again.statuses)).toEqual(['system']);
    await stat(toplevel); // built again, at the same path
  });
});
