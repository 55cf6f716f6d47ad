// The README's configuration table is what users read: it must name exactly the fields the schema
// takes, and the defaults it shows must be the ones the schema applies.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { imageConfigSchema, parseImageConfig } from '../../tasks/image/config.ts';
import { demoSystem } from '../helpers/reliability.ts';
import { ROOT } from '../helpers/toy.ts';

/** The rows of the table under README's "## Configuration": field name and default column, as written. */
async function readmeRows(): Promise<Map<string, string>> {
  const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('\n## Configuration\n'));
  const table = section.slice(section.indexOf('| field | default | rules |'));
  const rows = new Map<string, string>();
  for (const line of table.split('\n').slice(2)) {
    if (!line.startsWith('|')) break;
    const [field, fallback] = line.split(' | ').map((cell) => cell.replace(/^\| /, ''));
    rows.set(field!.replaceAll('`', ''), fallback!);
  }
  return rows;
}

describe('the README configuration table', () => {
  it('lists exactly the fields the schema takes, in its order', async () => {
    expect([...(await readmeRows()).keys()]).toEqual(Object.keys(imageConfigSchema.shape));
  });

  it('shows the defaults the schema applies', async () => {
    const toplevel = await demoSystem();
    const minimal = { system: { toplevel }, datasets: { 'tank/root': { mount: '/' } } };
    // includeChannel defaults to true: NIX_PATH's nixpkgs (any folder) satisfies it
    const parsed = parseImageConfig(minimal, { baseDir: '/', nixPath: `nixpkgs=${ROOT}` });
    if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
    const config = parsed.value as unknown as Record<string, unknown>;
    let compared = 0;
    for (const [field, shown] of await readmeRows()) {
      // a default written as one JSON value in backticks; the others are explained in words
      const literal = /^`([^`]+)`$/.exec(shown)?.[1];
      if (literal === undefined || field in minimal) continue;
      expect(config[field], field).toEqual(JSON.parse(literal));
      compared += 1;
    }
    expect(compared).toBeGreaterThanOrEqual(12);
    // one that is explained in words: channelSource comes from NIX_PATH
    expect((await readmeRows()).get('channelSource')).toMatch(/NIX_PATH/);
    expect(config['channelSource']).toBe(ROOT);
  });
});
