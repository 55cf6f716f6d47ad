import { defineConfig } from 'vitest/config';
import { noSkipsInCi } from './test/support/no-skips-in-ci.ts';

// `vitest run` alone runs everything; a file or `-t` on the command line narrows the run
const filtered = process.argv.slice(2).some((arg, i, all) => arg === '-t' || arg.startsWith('--testNamePattern') || (all[i - 1] !== '-t' && !arg.startsWith('-') && arg !== 'run'));

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Real processes, disks and a zfs-fuse daemon: one file at a time, generous time limits.
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 120_000,
    reporters: ['default', noSkipsInCi(filtered)],
  },
});
