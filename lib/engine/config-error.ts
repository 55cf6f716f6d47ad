/** A bad configuration or command line: reported with every problem, exit status 2, nothing created. */
export class ConfigError extends Error {
  /** One line per problem, each naming the field and what is allowed. */
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}
