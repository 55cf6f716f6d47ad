import { StringDecoder } from 'node:string_decoder';

/** Cuts a stream of output chunks into lines; `\r` also ends a line (progress bars redraw with it). */
export interface LineSplitter {
  /** Adds a chunk and emits every line it completes. */
  push(chunk: Buffer | string): void;
  /** Emits what is left after the last newline. */
  end(): void;
}

/** Makes a line splitter that hands each non-empty line to `emit`. */
export function lineSplitter(emit: (line: string) => void): LineSplitter {
  // a UTF-8 character split across two pipe reads is kept whole, not turned into two U+FFFD
  const decoder = new StringDecoder('utf8');
  let rest = '';
  const take = (text: string): void => {
    const parts = (rest + text).split(/\r\n|\n|\r/);
    rest = parts.pop() ?? '';
    for (const line of parts) if (line.length > 0) emit(line);
  };
  return {
    push: (chunk) => take(typeof chunk === 'string' ? chunk : decoder.write(chunk)),
    end() {
      take(decoder.end());
      if (rest.length > 0) emit(rest);
      rest = '';
    },
  };
}
