import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../engine/config-error.ts';

/** Reads a JSON config file; a syntax error names the file, line and column. */
export async function readConfigFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new ConfigError([`--config ${file}: cannot read it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`]);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new ConfigError([`--config ${file}: invalid JSON ${describeJsonError(text, (error as Error).message)}`]);
  }
}

/** Turns the engine's JSON.parse message into `at line L, column C: ...` (Node and Deno word it differently). */
export function describeJsonError(text: string, message: string): string {
  const position = /position (\d+)/.exec(message);
  const lineColumn = /line (\d+) column (\d+)/.exec(message);
  let where = '';
  if (position) {
    const offset = Number(position[1]);
    const before = text.slice(0, offset).split('\n');
    where = `at line ${before.length}, column ${before.at(-1)!.length + 1}`;
  } else if (lineColumn) {
    where = `at line ${lineColumn[1]}, column ${lineColumn[2]}`;
  } else if (text.trim() === '') {
    where = 'at line 1, column 1';
  } else {
    where = `at line ${text.split('\n').length} (end of file)`;
  }
  const reason = message.replace(/\s*(in JSON )?at position \d+.*$/s, '').replace(/^JSON\.parse: /, '');
  return `${where}: ${reason}`;
}

/** The folder relative paths of a config are taken from. */
export function configBaseDir(file: string | undefined): string {
  return file ? path.dirname(path.resolve(file)) : process.cwd();
}
