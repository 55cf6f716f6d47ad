// The default renderer in a real terminal: tmux gives the build a TTY, capture-pane reads the screen.
import { execa } from 'execa';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ROOT, toyProject, type ToyProject } from '../helpers/toy.ts';
import { until } from '../helpers/wait.ts';

let toy: ToyProject;
let session: string;
beforeEach(async () => {
  toy = await toyProject();
  session = `render-${process.pid}-${Date.now()}`;
});
afterEach(async () => {
  await tmux(['kill-session', '-t', session], { reject: false });
  await toy.cleanup();
});

/** tmux on a private server whose socket lies in the toy folder: removed with it, no server shared. */
const tmux = (args: string[], options: { reject?: boolean } = {}) => execa('tmux', ['-S', path.join(toy.dir, 'tmux.sock'), ...args], options);

const screen = async (): Promise<string> => (await tmux(['capture-pane', '-p', '-t', session])).stdout;

describe('a terminal without a size', () => {
  it('gets the plain line output, one line per event, instead of a display drawn in 0 columns', async () => {
    // script(1) with no terminal on its input makes a pseudo-terminal of 0 x 0
    const build = `env -u CI ${process.execPath} --import tsx test/fixtures/toy-taskfile.ts build --config ${path.join(toy.dir, 'config.json')} --cache-dir ${toy.cache}`;
    const result = await execa('script', ['-qec', build, '/dev/null'], { cwd: ROOT, stdin: 'ignore', reject: false });
    expect(result.exitCode, result.stdout).toBe(0);
    const lines = result.stdout.split(/\r?\n/);
    for (const id of ['a', 'b', 'c', 'd']) expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^✔ ${id}: ran in `)));
    expect(result.stdout).toMatch(/^done in .*: 4 ran, 0 cached/m);
  });
});

describe('listr2 renderer on a TTY', () => {
  it('draws every task while it runs, then the summary, and ends cleanly', async () => {
    await toy.configure({ sleep: 2 });
    const exitFile = path.join(toy.dir, 'exit');
    const command = [
      `cd ${ROOT}`,
      // no CI variable: a TTY without CI gets the listr2 renderer
      `env -u CI ${process.execPath} --import tsx test/fixtures/toy-taskfile.ts build --config ${path.join(toy.dir, 'config.json')} --cache-dir ${toy.cache}`,
      `echo $? > ${exitFile}`,
      'sleep 60',
    ].join('; ');
    await tmux(['new-session', '-d', '-s', session, '-x', '120', '-y', '40', command]);
    // mid-run: a is done, b and c sleep, d waits for them (the first frame shows all four waiting)
    let during = '';
    await until(async () => /✔ a: toy a \[\d+/.test((during = await screen())), 'a finished with its time', 20_000);
    expect(during).toMatch(/d: toy d \(waiting\)/);
    expect(during).toMatch(/b: toy b/);
    expect(during).toMatch(/c: toy c/);
    await until(async () => (await readFile(exitFile, 'utf8').catch(() => '')).trim() !== '', 'the build to exit', 30_000);
    expect((await readFile(exitFile, 'utf8')).trim()).toBe('0');
    const after = await screen();
    for (const id of ['a', 'b', 'c', 'd']) expect(after).toMatch(new RegExp(`✔ ${id}: toy ${id} \\[\\d`));
    expect(after).toMatch(/^done in .*: 4 ran, 0 cached, 0 skipped, 0 failed$/m);
    expect(after).not.toMatch(/waiting\)/); // nothing left drawn as pending
  });

  it('shows cached tasks as such on a rerun', async () => {
    expect((await toy.run('build')).exitCode).toBe(0);
    const exitFile = path.join(toy.dir, 'exit');
    const command = `cd ${ROOT}; env -u CI ${process.execPath} --import tsx test/fixtures/toy-taskfile.ts build --config ${path.join(toy.dir, 'config.json')} --cache-dir ${toy.cache}; echo $? > ${exitFile}; sleep 60`;
    await tmux(['new-session', '-d', '-s', session, '-x', '120', '-y', '40', command]);
    await until(async () => (await readFile(exitFile, 'utf8').catch(() => '')).trim() !== '', 'the build to exit', 30_000);
    const after = await screen();
    expect(after).toMatch(/a: toy a: cached \(fresh in cache\)/);
    expect(after).toMatch(/0 ran, 4 cached/);
  });

  it('Ctrl-C in the terminal stops the build through its own cleanup: exit 1, the lock released, the command killed', async () => {
    await toy.configure({ hang: 'b' });
    const exitFile = path.join(toy.dir, 'exit');
    const command = `cd ${ROOT}; env -u CI ${process.execPath} --import tsx test/fixtures/toy-taskfile.ts build --config ${path.join(toy.dir, 'config.json')} --cache-dir ${toy.cache}; echo $? > ${exitFile}; sleep 60`;
    await tmux(['new-session', '-d', '-s', session, '-x', '120', '-y', '40', command]);
    const grandchildFile = path.join(toy.markers, 'grandchild.pid');
    await until(async () => (await readFile(grandchildFile, 'utf8').catch(() => '')).trim() !== '', 'the grandchild pid', 20_000);
    await tmux(['send-keys', '-t', session, 'C-c']);
    await until(async () => (await readFile(exitFile, 'utf8').catch(() => '')).trim() !== '', 'the build to exit', 30_000);
    expect((await readFile(exitFile, 'utf8')).trim()).toBe('1');
    expect(await screen()).toMatch(/^interrupted in .*: /m);
    await expect(stat(path.join(toy.cache, 'lock'))).rejects.toThrow(/ENOENT/);
    const grandchild = Number(await readFile(grandchildFile, 'utf8'));
    // the hung command's background job went with it (gone, or a zombie where pid 1 does not reap)
    const state = await readFile(`/proc/${grandchild}/stat`, 'utf8').then((text) => text[text.lastIndexOf(')') + 2], () => 'gone');
    expect(['gone', 'Z']).toContain(state);
  });
});
