import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../engine/config-error.ts';
import { duplicateJsonKeys } from './json-duplicate-keys.ts';
import { jsonErrorOffset } from './json-error-position.ts';

/** Reads a JSON config file; a syntax error names the file, line and column, a key given twice its path. */
export async function readConfigFile(file: string): Promise<unknown> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch (error) {
    throw new ConfigError([`--config ${file}: cannot read it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`]);
  }
  const text = decodeConfigText(file, bytes);
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

/**
 * The text of a config file, which must be UTF-8: a UTF-16 file or a byte that is not UTF-8 is a
 * ConfigError naming the file (and the first bad byte's line, column and offset), never text with
 * U+FFFD in it. A leading UTF-8 byte-order mark, which some editors write, is dropped.
 */
function decodeConfigText(file: string, bytes: Uint8Array): string {
  if ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff)) {
    const mark = `${hexByte(bytes[0])} ${hexByte(bytes[1])}`;
    throw new ConfigError([`--config ${file}: is UTF-16 (it starts with the byte-order mark ${mark}), but a config must be UTF-8: save it as UTF-8`]);
  }
  // JSON starts with an ASCII character, which UTF-16 without a mark writes as it and a zero byte
  if (bytes.length >= 2 && (bytes[0] === 0) !== (bytes[1] === 0)) {
    throw new ConfigError([`--config ${file}: looks like UTF-16 (a zero byte in its first two bytes), but a config must be UTF-8: save it as UTF-8`]);
  }
  try {
    // fatal: a bad byte is an error, not U+FFFD; the default ignoreBOM: false drops a UTF-8 mark
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    const offset = firstInvalidUtf8(bytes) ?? 0;
    // 0x0A never occurs inside a multi-byte sequence, so the bytes before the bad one can be counted
    const lineStart = offset === 0 ? 0 : bytes.lastIndexOf(0x0a, offset - 1) + 1;
    const line = bytes.subarray(0, offset).filter((b) => b === 0x0a).length + 1;
    // columns count as describeJsonError's do, in the decoded text (and without a byte-order mark)
    const before = new TextDecoder('utf-8').decode(bytes.subarray(lineStart, offset));
    throw new ConfigError([
      `--config ${file}: is not UTF-8 (first bad byte ${hexByte(bytes[offset])} at line ${line}, column ${before.length + 1}, byte offset ${offset}): save the file as UTF-8`,
    ]);
  }
}

const hexByte = (b: number | undefined): string => `0x${(b ?? 0).toString(16).toUpperCase().padStart(2, '0')}`;

/** Offset of the first byte that does not begin a well-formed UTF-8 sequence (Unicode table 3-7), or undefined when all do. */
function firstInvalidUtf8(bytes: Uint8Array): number | undefined {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    if (b < 0x80) {
      i += 1;
      continue;
    }
    // continuation bytes after the lead, and the range of the first (narrower after E0, ED, F0, F4)
    const [count, low, high] =
      b >= 0xc2 && b <= 0xdf ? [1, 0x80, 0xbf]
      : b === 0xe0 ? [2, 0xa0, 0xbf]
      : b === 0xed ? [2, 0x80, 0x9f]
      : b >= 0xe1 && b <= 0xef ? [2, 0x80, 0xbf]
      : b === 0xf0 ? [3, 0x90, 0xbf]
      : b >= 0xf1 && b <= 0xf3 ? [3, 0x80, 0xbf]
      : b === 0xf4 ? [3, 0x80, 0x8f]
      : [0, 0, 0];
    if (count === 0) return i;
    for (let k = 1; k <= count; k++) {
      const next = bytes[i + k];
      const [lo, hi] = k === 1 ? [low, high] : [0x80, 0xbf];
      if (next === undefined || next < lo || next > hi) return i;
    }
    i += count + 1;
  }
  return undefined;
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
