// The project's Taskfile: the NixOS ZFS image as a graph of cached stages.
//   npx tsx Taskfile.ts build            # Node
//   npx deno run -A Taskfile.ts build    # Deno 2
// Without --config it builds the embedded demo (tasks/image/demo/demo-config.ts).
import { runTaskfile } from './lib/cli/main.ts';
import { demoConfig, demoConfigDir } from './tasks/image/demo/demo-config.ts';
import { zfsImage } from './tasks/image/plugin.ts';

await runTaskfile({
  program: 'Taskfile.ts',
  plugins: [zfsImage({ defaultConfig: demoConfig, defaultConfigDir: demoConfigDir })],
});
