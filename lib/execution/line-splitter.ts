/** Cuts a stream of text chunks into lines; `\r` also ends a line (progress bars redraw with it). */
export class LineSplitter {
  #rest = '';
  readonly #emit: (line: string) => void;

  constructor(emit: (line: string) => void) {
    this.#emit = emit;
  }

  /** Adds a chunk and emits every line it completes. */
  push(chunk: string): void {
    const parts = (this.#rest + chunk).split(/\r\n|\n|\r/);
    this.#rest = parts.pop() ?? '';
    for (const line of parts) if (line.length > 0) this.#emit(line);
  }

  /** Emits what is left after the last newline. */
  end(): void {
    if (this.#rest.length > 0) this.#emit(this.#rest);
    this.#rest = '';
  }
}
