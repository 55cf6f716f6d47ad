// The command line's own words for mistakes: a guess at what was meant, never node:util's advice
// to put an option after `--` (which passes words to `shell` here).
import { describe, expect, it } from 'vitest';
import { parseCli, parseSize } from '../../lib/cli/args.ts';
import { describeGraphError } from '../../lib/engine/failure.ts';
import { closest } from '../../lib/engine/suggest.ts';

const error = (...argv: string[]): string => {
  const parsed = parseCli(argv, 4);
  if (parsed.ok) throw new Error(`parsed: ${argv.join(' ')}`);
  return parsed.error;
};

describe('usage errors', () => {
  it('an unknown option gets a guess when one is close, and no advice about --', () => {
    expect(error('build', '--confg', 'x.json')).toBe('unknown option --confg (did you mean --config?)');
    expect(error('build', '--cache', 'c')).toBe('unknown option --cache (did you mean --cache-dir?)');
    expect(error('build', '--frobnicate')).toBe('unknown option --frobnicate');
    expect(error('build', '-x')).toBe('unknown option -x');
  });

  it('an option without its value says so, also when the next word starts with a dash', () => {
    expect(error('build', '--config')).toBe('--config needs a value');
    expect(error('build', '-c')).toBe('--config needs a value');
    expect(error('gc', '--max-size', '-5M')).toBe('--max-size needs a value; one that starts with "-" is written --max-size=VALUE');
    // a switch given a value is the opposite mistake
    expect(error('build', '--verbose=1')).toBe('--verbose takes no value');
    expect(error('build', '--json=x')).toBe('--json takes no value');
  });

  it('an unknown command gets a guess, swapped letters included', () => {
    expect(error('buidl')).toMatch(/^unknown command "buidl" \(did you mean build\?\); commands: build, plan/);
    expect(error('plna')).toMatch(/^unknown command "plna" \(did you mean plan\?\)/);
    expect(error('frobnicate')).toMatch(/^unknown command "frobnicate"; commands: /);
  });

  it('an unknown target gets a guess, and a config file given as a target is pointed at --config', () => {
    const known = ['system', 'install', 'install:esp', 'convert:root', 'convert:boot'];
    expect(describeGraphError({ reason: 'unknown-target', target: 'instal', known })).toMatch(/^unknown task or stage "instal" \(did you mean install\?\); known: system,/);
    expect(describeGraphError({ reason: 'unknown-target', target: 'convert:rot', known })).toMatch(/\(did you mean convert:root\?\)/);
    expect(describeGraphError({ reason: 'unknown-target', target: 'my.json', known })).toMatch(/^unknown task or stage "my\.json"; a config file is given with --config FILE; known: /);
  });
});

describe('closest', () => {
  it('takes the only word that starts with the input, else one within one edit (two for longer words)', () => {
    expect(closest('b', ['build', 'plan'])).toBe('build');
    expect(closest('gr', ['gc', 'graph'])).toBe('graph');
    expect(closest('gx', ['gc', 'graph'])).toBe('gc'); // one edit away
    expect(closest('xyz', ['gc', 'graph'])).toBeUndefined();
    expect(closest('--verbsoe', ['--verbose', '--version'])).toBe('--verbose');
  });
});

describe('--max-size', () => {
  it('takes K, M, G and T in powers of 1024, with B or iB after them, and fractions', () => {
    expect(parseSize('500M')).toBe(500 * 2 ** 20);
    expect(parseSize('1.5G')).toBe(1.5 * 2 ** 30);
    expect(parseSize('2GiB')).toBe(2 ** 31);
    expect(parseSize('1KB')).toBe(1024);
    expect(parseSize('1t')).toBe(2 ** 40);
    expect(parseSize('4096')).toBe(4096);
  });

  it('refuses what is not a size, and the command line says what it wants', () => {
    for (const text of ['lots', '-5M', '1.5.2G', '2P', 'G', '']) expect(parseSize(text), text).toBeUndefined();
    expect(error('gc', '--max-size', 'lots')).toMatch(/--max-size/);
  });
});
