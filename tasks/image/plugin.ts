import path from 'node:path';
import { ConfigError } from '../../lib/engine/config-error.ts';
import type { GraphNode, Plugin, PluginEnvironment } from '../../lib/engine/task.ts';
import { DEFAULT_FILESYSTEM_PROPERTIES, DEFAULT_POOL_PROPERTIES, formatConfigIssues, parseImageConfig, type ImageConfig } from './config.ts';
import { selectDriver, type ZfsDriverChoice, ZFS_DRIVER_CHOICES } from './zfs/select-driver.ts';
import { createDiskTask } from './stages/create-disks.ts';
import { partitionTask } from './stages/partition.ts';
import { createPoolTask } from './stages/create-pool.ts';
import { mountResource } from './stages/mount.ts';
import { installTask } from './stages/install.ts';
import { installEspTask } from './stages/install-esp.ts';
import { exportPoolTask } from './stages/export-pool.ts';
import { convertTask } from './stages/convert.ts';
import { postVmTask } from './stages/post-vm.ts';
import { systemTask } from './stages/system.ts';
import type { PoolLayout } from './stages/pool-layout.ts';
import { imageSweeper } from './sweep.ts';
import { zfsCommandTimeoutMs } from './zfs/zfs-fuse-host.ts';
import { imageShell } from './shell.ts';
import type { ShellProvider } from '../../lib/engine/shell.ts';
import { imageRequirements } from './requirements.ts';

/** Options of the image plugin. */
export interface ZfsImageOptions {
  /** The config used without `--config` (the Taskfile's embedded demo). */
  readonly defaultConfig?: unknown;
  /** Folder relative paths of the default config are taken from. */
  readonly defaultConfigDir?: string;
  /** ZFS driver; the environment variable ZFS_DRIVER overrides it. Default `auto`. */
  readonly driver?: ZfsDriverChoice;
}

/** Parses and checks the config (a channel from NIX_PATH included); every problem becomes a ConfigError (exit 2, nothing created). */
export function loadImageConfig(raw: unknown, baseDir: string, willRun = true): ImageConfig {
  // after nix-collect-garbage, plan and logs must still work: the build rebuilds or refuses the system
  const parsed = parseImageConfig(raw, { baseDir, toplevelMustExist: willRun });
  if (!parsed.ok) throw new ConfigError(formatConfigIssues(parsed.errors).split('\n'));
  return parsed.value;
}

/**
 * The image's task graph for a parsed config. `notInputs`: the cache folder, the output folder and
 * the config file, which never count as the system expression's inputs when they lie in its folder
 * (the config's fields that matter are inputs of the tasks that use them).
 */
export function imageTasks(config: ImageConfig, outDir: string, layout: PoolLayout, notInputs: readonly string[]): GraphNode[] {
  return [
    systemTask(config.system, notInputs),
    createDiskTask('boot', config.bootSize),
    createDiskTask('root', config.rootSize),
    partitionTask(),
    createPoolTask(config, layout),
    mountResource(config, layout),
    installTask(config),
    exportPoolTask(),
    installEspTask(),
    convertTask('boot', config.format),
    convertTask('root', config.format),
    postVmTask(config, outDir, layout),
  ];
}

/** The ZFS driver a build will use, with the properties it can set (refusals are config errors). */
export function poolLayout(config: ImageConfig, choice: ZfsDriverChoice, raw: unknown = {}): PoolLayout {
  const probe = selectDriver(choice);
  const datasets = Object.fromEntries(Object.entries(config.datasets).map(([name, d]) => [name, d.properties ?? {}]));
  const properties = probe.adaptProperties(
    { pool: config.rootPoolProperties, filesystem: config.rootPoolFilesystemProperties, datasets },
    // A property the user wrote is refused even when it equals the default; only defaults are dropped.
    {
      pool: givenIn(raw, 'rootPoolProperties') ? {} : DEFAULT_POOL_PROPERTIES,
      filesystem: givenIn(raw, 'rootPoolFilesystemProperties') ? {} : DEFAULT_FILESYSTEM_PROPERTIES,
    },
  );
  if (properties.refused.length > 0) {
    throw new ConfigError(properties.refused.map((r) => `config: ${r} (driver ${probe.name})`));
  }
  const tools = probe.name === 'zfs-fuse' ? ['zfs-fuse', 'zpool', 'zfs'] : ['zpool', 'zfs', 'losetup'];
  return { driver: probe.name, properties, tools, makeDriver: (exec) => selectDriver(choice, { exec }) };
}

/** The NixOS ZFS image as a plugin: config in, stage graph out. */
export function zfsImage(options: ZfsImageOptions = {}): Plugin {
  let shell: ShellProvider | undefined;
  const plugin = (env: PluginEnvironment): GraphNode[] => {
    // a config file holding `null` is a config error, not a request for the demo
    const raw = env.configFile !== undefined ? env.config : (env.config ?? options.defaultConfig);
    const baseDir = env.configFile ? env.configDir : (options.defaultConfigDir ?? env.configDir);
    const config = loadImageConfig(raw, baseDir, env.willRun ?? true);
    const choice = driverChoice(process.env['ZFS_DRIVER'] ?? options.driver ?? 'auto');
    checkZfsTimeout();
    let layout: PoolLayout;
    try {
      layout = poolLayout(config, choice, raw);
    } catch (error) {
      if (error instanceof ConfigError) throw error;
      throw new ConfigError([`zfs: ${(error as Error).message}`]);
    }
    shell = imageShell(config, layout);
    const notInputs = [env.cacheDir, env.outDir, ...(env.configFile ? [env.configFile] : [])].map((p) => path.resolve(p));
    return imageTasks(config, path.resolve(env.outDir), layout, notInputs);
  };
  // Not checked here: a bad ZFS_DRIVER fails build, plan and run with exit 2 (above), while help,
  // doctor and the cache commands, which use no driver, still work (doctor then lists auto's tools).
  const requirements = imageRequirements(asDriverChoice(process.env['ZFS_DRIVER'] ?? options.driver ?? 'auto') ?? 'auto');
  // The shell needs the parsed config, so it exists once the plugin has run.
  const openShell: ShellProvider = (request) => {
    if (!shell) throw new Error('the image config was not loaded');
    return shell(request);
  };
  // After a kill -9: export the pool, unmount and detach what the dead run held in its folders.
  return Object.assign(plugin, { sweepers: [imageSweeper()], requirements, shell: openShell });
}

function givenIn(raw: unknown, key: string): boolean {
  return typeof raw === 'object' && raw !== null && key in raw;
}

/** ZFS_IMAGE_ZFS_TIMEOUT is read by the zfs-fuse driver during the build: a bad value is refused before anything is created. */
function checkZfsTimeout(): void {
  try {
    zfsCommandTimeoutMs();
  } catch (error) {
    throw new ConfigError([(error as Error).message]);
  }
}

function asDriverChoice(value: string): ZfsDriverChoice | undefined {
  return (ZFS_DRIVER_CHOICES as readonly string[]).includes(value) ? (value as ZfsDriverChoice) : undefined;
}

function driverChoice(value: string): ZfsDriverChoice {
  const choice = asDriverChoice(value);
  if (choice) return choice;
  throw new ConfigError([`ZFS_DRIVER: must be one of ${ZFS_DRIVER_CHOICES.join(', ')}, not "${value}"`]);
}
