import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../engine/config-error.ts';
import { duplicateJsonKeys } from './json-duplicate-keys.ts';
import { jsonErrorOffset } from './json-error-position.ts';

/** Reads a JSON config file; a syntax error names the file, line and column, a key given twice its path. */
export async function readConfigFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new ConfigError([`--config ${file}: cannot read it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`]);
  }
  // a byte-order mark some editors write is not JSON, and would show as an invisible character
  if (text.startsWith('\uFEFF')) text = text.slice(1);
  let config: unknown;
  try {
    config = JSON.parse(text) as unknown;
  } catch (error) {
    throw new ConfigError([`--config ${file}: invalid JSON ${describeJsonError(text, (error as Error).message)}`]);
  }
  const duplicates = duplicateJsonKeys(text);
  if (duplicates.length > 0) {
    throw new ConfigError(duplicates.map((key) => `config: ${key}: given more than once in the same object (JSON would keep only the last; remove or merge the others)`));
  }
  return config;
}

/** `at line L, column C: <reason>`, the position found by our own scan (runtimes word JSON.parse errors differently). */
export function describeJsonError(text: string, message: string): string {
  const offset = jsonErrorOffset(text) ?? text.length;
  const before = text.slice(0, offset).split('\n');
  const found = offset < text.length ? `unexpected ${JSON.stringify(text[offset])}` : 'unexpected end of file';
  const reason = message.replace(/\s*(in JSON )?at position \d+.*$/s, '').split('\n')[0];
  return `at line ${before.length}, column ${before.at(-1)!.length + 1}: ${found} (${reason})`;
}

/** The folder relative paths of a config are taken from. */
export function configBaseDir(file: string | undefined): string {
  return file ? path.dirname(path.resolve(file)) : process.cwd();
}
