import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { whichTool } from '../execution/which.ts';
import type { Requirement } from '../engine/requirement.ts';

const run = promisify(execFile);

/** One requirement as found on this machine. */
export interface RequirementStatus {
  readonly requirement: Requirement;
  /** Where the program, or the first alternative found, is. */
  readonly path: string | undefined;
  readonly version: string | undefined;
}

/** How the doctor names a requirement: `perl or flock` when alternatives do. */
function label(requirement: Requirement): string {
  return [requirement.program, ...(requirement.alternatives ?? [])].join(' or ');
}

/** Looks every requirement up; with `versions`, asks each found program for its version (doctor only: it spawns them all). */
export async function checkRequirements(requirements: readonly Requirement[], versions = true): Promise<RequirementStatus[]> {
  return Promise.all(
    requirements.map(async (requirement) => {
      let found: string | undefined;
      for (const program of [requirement.program, ...(requirement.alternatives ?? [])]) {
        found = await whichTool(program);
        if (found) break;
      }
      return { requirement, path: found, version: found && versions ? await versionOf(found, requirement) : undefined };
    }),
  );
}

async function versionOf(program: string, requirement: Requirement): Promise<string> {
  if (requirement.versionArgs) {
    try {
      const { stdout, stderr } = await run(program, [...requirement.versionArgs], { timeout: 5000 });
      const line = `${stdout}${stderr}`.split('\n').find((l) => /\d+\.\d+/.test(l));
      if (line) return line.trim();
    } catch {
      // fall back to the package database
    }
  }
  try {
    const { stdout } = await run('dpkg-query', ['-W', '-f', '${Version}', requirement.debian], { timeout: 5000 });
    return `${requirement.debian} ${stdout.trim()}`;
  } catch {
    return 'installed (version unknown)';
  }
}

/** The doctor's report: every tool with its version, then what is missing and the exact commands to install it. */
export function formatDoctor(statuses: readonly RequirementStatus[]): string {
  const width = Math.max(...statuses.map((s) => label(s.requirement).length));
  const lines = statuses.map((s) =>
    `${s.path ? 'ok     ' : 'MISSING'}  ${label(s.requirement).padEnd(width)}  ${s.path ? `${s.version}  (${s.path})` : `needed for ${s.requirement.purpose}`}`,
  );
  const missing = statuses.filter((s) => !s.path);
  if (missing.length === 0) return `${lines.join('\n')}\nall ${statuses.length} tools found\n`;
  const debian = [...new Set(missing.map((s) => s.requirement.debian))].join(' ');
  const nixos = [...new Set(missing.map((s) => s.requirement.nixos))];
  return [
    ...lines,
    '',
    `${missing.length} tool(s) missing. To install them:`,
    `  Debian/Ubuntu: sudo apt-get install -y ${debian}`,
    `  NixOS:         ${nixos.join('; ')}`,
    '',
  ].join('\n');
}
