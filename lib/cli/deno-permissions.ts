// Imported first by main.ts, so it runs before any package reads the environment at load time:
// Deno without -A would otherwise stop with a stack trace (or ask a dozen questions in a terminal).

/** The permissions a build needs: it runs programs, reads the environment and /proc, writes files. */
const NEEDED = ['env', 'read', 'write', 'run', 'sys'] as const;

interface DenoPermissions {
  readonly permissions: { querySync(descriptor: { name: string }): { state: string } };
  exit(code: number): never;
}

const deno = (globalThis as { Deno?: DenoPermissions }).Deno;
if (deno) {
  const missing = NEEDED.filter((name) => deno.permissions.querySync({ name }).state !== 'granted');
  if (missing.length > 0) {
    console.error(`error: Deno needs these permissions: ${missing.map((name) => `--allow-${name}`).join(' ')}; run it with -A (deno run -A Taskfile.ts ...)`);
    deno.exit(2);
  }
}

export {};
