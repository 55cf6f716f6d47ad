import { closest } from './suggest.ts';

/** Why a graph cannot be run at all: these are configuration errors (exit 2). */
export type GraphError =
  | { readonly reason: 'duplicate-task'; readonly id: string }
  | { readonly reason: 'unknown-dependency'; readonly id: string; readonly dependency: string }
  | { readonly reason: 'cycle'; readonly path: readonly string[] }
  | { readonly reason: 'unknown-target'; readonly target: string; readonly known: readonly string[] }
  | { readonly reason: 'invalid-inputs'; readonly id: string; readonly message: string }
  | { readonly reason: 'export-not-from-dependency'; readonly id: string; readonly from: string }
  | { readonly reason: 'content-key-invalid'; readonly id: string; readonly dependency: string; readonly artifact?: string; readonly resource?: string }
  | { readonly reason: 'keyed-values-invalid'; readonly id: string; readonly value: string };

/** Why one task did not produce its outputs. */
export type TaskFailure =
  | {
      readonly reason: 'command-failed';
      readonly command: string;
      readonly exitCode: number;
      readonly signal?: string | undefined;
      /** Set when the program could not be started at all. */
      readonly spawnError?: string | undefined;
      readonly tail: readonly string[];
      readonly logFile?: string | undefined;
    }
  | { readonly reason: 'aborted' }
  | { readonly reason: 'threw'; readonly message: string; readonly tail: readonly string[]; readonly logFile?: string | undefined }
  | { readonly reason: 'missing-artifact'; readonly artifact: string; readonly message: string };

/** Renders a graph error as one line naming what is wrong and where. */
export function describeGraphError(error: GraphError): string {
  switch (error.reason) {
    case 'duplicate-task':
      return `task "${error.id}" is defined twice`;
    case 'unknown-dependency':
      return `task "${error.id}" depends on "${error.dependency}", which is not a task`;
    case 'cycle':
      return `dependency cycle: ${error.path.join(' -> ')}`;
    case 'unknown-target':
    {
      const guess = closest(error.target, error.known);
      // `build my-config.json`: the config is an option, not a target
      const file = /\.json$|\//.test(error.target) ? '; a config file is given with --config FILE' : '';
      return `unknown task or stage "${error.target}"${guess ? ` (did you mean ${guess}?)` : ''}${file}; known: ${error.known.join(', ')}`;
    }
    case 'invalid-inputs':
      return `task "${error.id}" has invalid inputs: ${error.message}`;
    case 'export-not-from-dependency':
      return `task "${error.id}" exports an artifact of "${error.from}", which is not one of its dependencies`;
    case 'keyed-values-invalid':
      return `task "${error.id}" keys its dependents on value "${error.value}", which is not one of its value artifacts`;
    case 'content-key-invalid':
      if (error.resource !== undefined) {
        return `task "${error.id}" is keyed on the content of "${error.dependency}", which runs in the same ${error.resource} transaction (its content is known only when that ends)`;
      }
      return error.artifact === undefined
        ? `task "${error.id}" is keyed on the content of "${error.dependency}", which is not one of its dependencies`
        : `task "${error.id}" is keyed on "${error.dependency}"'s artifact "${error.artifact}", which is not a file or folder artifact of that task`;
  }
}

/** Renders a task failure as one line (the log tail is printed separately). */
export function describeTaskFailure(failure: TaskFailure): string {
  switch (failure.reason) {
    case 'command-failed':
      if (failure.spawnError) return `${failure.command} could not start: ${failure.spawnError.split('\n')[0]}`;
      return `${failure.command} failed with ${failure.signal ? `signal ${failure.signal}` : `exit status ${failure.exitCode}`}`;
    case 'aborted':
      return 'interrupted';
    case 'threw':
      return failure.message;
    case 'missing-artifact':
      return failure.message;
  }
}
