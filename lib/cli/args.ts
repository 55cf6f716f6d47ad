import { parseArgs } from 'node:util';
import { fail, ok, type Result } from '../engine/result.ts';
import { closest } from '../engine/suggest.ts';

/** The commands the runner knows. */
const COMMANDS = ['build', 'plan', 'run', 'explain', 'graph', 'clean', 'gc', 'logs', 'shell', 'verify', 'doctor', 'help'] as const;

/** One of COMMANDS. */
export type Command = (typeof COMMANDS)[number];

/** The parsed command line. */
export interface CliArgs {
  readonly command: Command;
  readonly targets: readonly string[];
  readonly config?: string | undefined;
  readonly out: string;
  readonly cacheDir: string;
  readonly json: boolean;
  readonly concurrency: number;
  readonly verbose: boolean;
  readonly force: boolean;
  readonly noWait: boolean;
  readonly format: 'mermaid' | 'dot';
  readonly maxSize?: number | undefined;
  /** Words after `--`. */
  readonly rest: readonly string[];
}

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  out: { type: 'string', short: 'o' },
  'cache-dir': { type: 'string' },
  json: { type: 'boolean' },
  concurrency: { type: 'string', short: 'j' },
  verbose: { type: 'boolean', short: 'v' },
  force: { type: 'boolean', short: 'f' },
  'no-wait': { type: 'boolean' },
  format: { type: 'string' },
  'max-size': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** node:util's parse errors in this tool's words (its advice to use `--` means something else here). */
function describeParseError(error: Error & { code?: string }): string {
  const unknown = /^Unknown option '([^']+)'/.exec(error.message);
  if (error.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && unknown) {
    const option = unknown[1]!;
    const guess = option.startsWith('--') ? closest(option, Object.keys(OPTIONS).map((name) => `--${name}`)) : undefined;
    return `unknown option ${option}${guess ? ` (did you mean ${guess}?)` : ''}`;
  }
  const option = /^Option '(?:-\w, )?(--[\w-]+)/.exec(error.message)?.[1];
  if (error.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && option) {
    // the same code covers a switch given a value (--json=x) and a value missing
    if (/does not take an argument/.test(error.message)) return `${option} takes no value`;
    if (/ambiguous/.test(error.message)) return `${option} needs a value; one that starts with "-" is written ${option}=VALUE`;
    if (/argument missing/.test(error.message)) return `${option} needs a value`;
  }
  return error.message;
}

/** Parses sizes such as `500M`, `10G`, `1GiB`, `2048` (bytes). */
export function parseSize(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$/i.exec(text.trim());
  if (!match) return undefined;
  const power = ['', 'k', 'm', 'g', 't'].indexOf(match[2]!.toLowerCase());
  return Math.round(Number(match[1]) * 1024 ** power);
}

/** Parses argv (without node and the script); usage errors are returned as text (exit 2). */
export function parseCli(argv: readonly string[], defaultConcurrency: number): Result<CliArgs, string> {
  const dashdash = argv.indexOf('--');
  const head = dashdash >= 0 ? argv.slice(0, dashdash) : argv;
  const rest = dashdash >= 0 ? argv.slice(dashdash + 1) : [];
  let parsed;
  try {
    parsed = parseArgs({ args: [...head], allowPositionals: true, strict: true, tokens: true, options: OPTIONS });
  } catch (error) {
    return fail(describeParseError(error as Error & { code?: string }));
  }
  const { values, positionals, tokens } = parsed;
  // `--config "$CFG"` with CFG unset must not quietly build the demo; a second --config must not win silently
  const seen = new Set<string>();
  for (const token of tokens) {
    if (token.kind !== 'option') continue;
    if (token.value === '') return fail(`${token.rawName} needs a value, not an empty string`);
    if (seen.has(token.name) && token.value !== undefined) return fail(`${token.rawName} is given more than once`);
    seen.add(token.name);
  }
  const word = positionals[0] ?? 'build';
  if (values.help || word === 'help' || word === '--help') return ok(defaults('help'));
  if (!(COMMANDS as readonly string[]).includes(word)) {
    const guess = closest(word, COMMANDS);
    return fail(`unknown command "${word}"${guess ? ` (did you mean ${guess}?)` : ''}; commands: ${COMMANDS.join(', ')}`);
  }
  const command = word as Command;
  const targets = positionals.slice(1);
  if ((command === 'run' || command === 'explain' || command === 'logs' || command === 'shell') && targets.length !== 1) {
    return fail(`${command} needs exactly one task or stage, e.g. \`${command} install\``);
  }
  if (['clean', 'gc', 'verify', 'graph', 'doctor'].includes(command) && targets.length > 0) {
    return fail(`${command} takes no task names`);
  }
  let concurrency = defaultConcurrency;
  if (values.concurrency !== undefined) {
    concurrency = Number(values.concurrency);
    if (!Number.isInteger(concurrency) || concurrency < 1) return fail(`--concurrency must be a whole number of at least 1, not "${values.concurrency}"`);
  }
  const format = values.format ?? 'mermaid';
  if (format !== 'mermaid' && format !== 'dot') return fail(`--format must be mermaid or dot, not "${format}"`);
  let maxSize: number | undefined;
  if (values['max-size'] !== undefined) {
    maxSize = parseSize(values['max-size']);
    if (maxSize === undefined) return fail(`--max-size must be a size such as 500M, 10G or 2GiB, not "${values['max-size']}"`);
  }
  if (maxSize !== undefined && command !== 'gc') return fail('--max-size applies to `gc` only');
  if (values.force && command !== 'run') return fail('--force applies to `run <task>` only');
  if (values.format !== undefined && command !== 'graph') return fail('--format applies to `graph` only');
  return ok({
    ...defaults(command),
    targets,
    config: values.config,
    out: values.out ?? 'result',
    cacheDir: values['cache-dir'] ?? 'cache',
    json: values.json ?? false,
    concurrency,
    verbose: values.verbose ?? false,
    force: values.force ?? false,
    noWait: values['no-wait'] ?? false,
    format,
    maxSize,
    rest,
  });

  function defaults(cmd: Command): CliArgs {
    return {
      command: cmd,
      targets: [],
      out: 'result',
      cacheDir: 'cache',
      json: false,
      concurrency: defaultConcurrency,
      verbose: false,
      force: false,
      noWait: false,
      format: 'mermaid',
      rest,
    };
  }
}

/** The text of `--help`. */
export function helpText(program: string): string {
  return `Usage: ${program} <command> [options]

Commands:
  build [task|stage...]   bring the image (or the named tasks) up to date (default)
  plan [task|stage...]    show what build would do and why; reads only
  run <task|stage>        run one stage from its cached inputs (--force: even when fresh)
  explain <task|stage>    which inputs differ from what the last build used
  logs <task|stage>       print the stage's last log
  shell <stage> [-- CMD]  a shell (or one command) on a copy of the state the stage produced:
                          pool imported, datasets mounted, ESP files at hand; all undone on exit
  graph                   print the task graph (--format mermaid|dot), coloured by state
  verify                  rehash every cached artifact and report damage
  doctor                  list the tools the build needs, their versions, how to install what is missing
  clean                   remove everything in the cache folder
  gc [--max-size SIZE]    keep each task's most recently used cache entry, evict the rest;
                          with --max-size: evict least recently used entries down to SIZE (e.g. 10G)

Options:
  -c, --config FILE       JSON config (default: the embedded demo config)
  -o, --out DIR           output folder (default: ./result)
      --cache-dir DIR     cache folder (default: ./cache)
      --json              one JSON object per line on stdout, nothing else
  -j, --concurrency N     tasks run at the same time (default: CPU count + 2)
  -v, --verbose           print every command's output
  -f, --force             with run: run even when the cache is fresh
      --format mermaid|dot  with graph: the output format (default: mermaid)
      --max-size SIZE     with gc: evict least recently used entries down to SIZE (500M, 10G, 2GiB)
      --no-wait           fail instead of waiting when another build holds the cache
  -h, --help              this text

Exit status: 0 done; 1 a task failed or the build was interrupted (Ctrl-C, SIGTERM, terminal closed);
             2 usage or config error, nothing created.
`;
}
