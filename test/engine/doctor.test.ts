import { describe, expect, it } from 'vitest';
import { checkRequirements, formatDoctor } from '../../lib/cli/doctor.ts';
import type { Requirement } from '../../lib/engine/requirement.ts';

const tool = (program: string, alternatives?: string[]): Requirement => ({
  program,
  ...(alternatives ? { alternatives } : {}),
  purpose: `the ${program} job`,
  debian: `${program}-pkg`,
  nixos: `nix-shell -p ${program}`,
});

describe('doctor', () => {
  it('is satisfied by an alternative when the first choice is missing, and shows where it is', async () => {
    const [status] = await checkRequirements([tool('no-such-tool-4f1c', ['sh'])], false);
    expect(status!.path).toMatch(/\/sh$/);
    expect(formatDoctor([status!])).toMatch(/^ok\s+no-such-tool-4f1c or sh\s+.*\(\/.*\/sh\)\nall 1 tools found\n$/);
  });

  it('names every alternative and the install commands when none is found', async () => {
    const statuses = await checkRequirements([tool('sh'), tool('no-such-tool-4f1c', ['no-such-tool-9b2e'])], false);
    const report = formatDoctor(statuses);
    expect(report).toMatch(/^MISSING\s+no-such-tool-4f1c or no-such-tool-9b2e\s+needed for the no-such-tool-4f1c job$/m);
    expect(report).toContain('1 tool(s) missing. To install them:');
    expect(report).toContain('Debian/Ubuntu: sudo apt-get install -y no-such-tool-4f1c-pkg');
  });
});
