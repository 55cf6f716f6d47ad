import type { Reporter, TestModule } from 'vitest/node';

/**
 * In CI (a fresh machine, as root) every test can run, so a skipped one means something about the
 * machine was not as the test expected, and a green run would hide that it proved nothing.
 * Runs filtered by name (`-t`) or file are not judged: their skips are the filter's.
 */
export function noSkipsInCi(filtered: boolean): Reporter {
  return {
    onTestRunEnd(testModules: ReadonlyArray<TestModule>) {
      if (!process.env['CI'] || filtered) return;
      const skipped = testModules.flatMap((module) =>
        [...module.children.allTests()].filter((test) => test.result().state === 'skipped').map((test) => `${module.moduleId}: ${test.fullName}`),
      );
      if (skipped.length === 0) return;
      process.stderr.write(`\nerror: ${skipped.length} test(s) skipped in CI, where every test must run:\n${skipped.map((s) => `  ${s}`).join('\n')}\n`);
      process.exitCode = 1;
    },
  };
}
