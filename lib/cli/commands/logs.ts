import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { CacheStore } from '../../caching/cache-store.ts';
import { ConfigError } from '../../engine/config-error.ts';
import { describeGraphError } from '../../engine/failure.ts';
import { resolveTargets, type Graph } from '../../engine/graph.ts';
import type { CliArgs } from '../args.ts';
import type { CliIo } from '../common.ts';

/** `logs <task>`: the task's last log. */
export async function logs(graph: Graph, store: CacheStore, args: CliArgs, io: CliIo): Promise<number> {
  const ids = resolveTargets(graph, args.targets);
  if (!ids.ok) throw new ConfigError([describeGraphError(ids.error)]);
  let found = false;
  for (const id of ids.value) {
    const folder = store.logDir(id);
    const names = (await readdir(folder).catch(() => [] as string[])).filter((n) => n.endsWith('.log')).sort();
    const last = names.at(-1);
    if (!last) {
      io.stderr(`${id}: no log yet (it has not run with this cache folder)\n`);
      continue;
    }
    found = true;
    io.stdout(`==> ${path.join(folder, last)} <==\n${await readFile(path.join(folder, last), 'utf8')}`);
  }
  return found ? 0 : 1;
}
