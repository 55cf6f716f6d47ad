import type { Command } from './args.ts';

/** The process signals that stop a command the way Ctrl-C does. */
export type StopSignal = 'SIGINT' | 'SIGTERM' | 'SIGHUP';

/** The reason a command's abort signal carries: which process signal stopped it. */
export interface Interrupt extends Error {
  readonly name: 'AbortError';
  readonly signalName: StopSignal;
}

/** An abort reason naming the signal; an AbortError, like the default one, for code that checks. */
export function interruptReason(signalName: StopSignal): Interrupt {
  return Object.assign(new Error(`stopped by ${signalName}`), { name: 'AbortError' as const, signalName });
}

/** The process signal that aborted `signal`, if one did. */
export function interruptSignal(signal: AbortSignal): StopSignal | undefined {
  const reason: unknown = signal.reason;
  return reason instanceof Error && 'signalName' in reason ? (reason as Interrupt).signalName : undefined;
}

/**
 * What a command says when a signal stops it: only build and run have tasks to stop; shell says
 * its own (the signal may belong to the command inside it).
 */
export function interruptMessage(command: Command | undefined, signalName: StopSignal): string | undefined {
  if (command === 'shell') return undefined;
  if (command === 'build' || command === 'run') return `${signalName}: stopping running tasks, cleaning up (nothing partial is published)...`;
  return `${signalName}: stopping...`;
}
