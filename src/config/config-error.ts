/**
 * A broken configuration, reported whole: the loader collects every problem before throwing, so
 * an operator fixes the file and the environment in one pass instead of one restart per mistake.
 * Problems name the setting (`providers.google.clientSecret`, `BROKER_GRPC_ADDR`) and never
 * carry a secret value.
 */

export class ConfigError extends Error {
  override readonly name = "ConfigError";
  /** One line per problem, each starting with the path of the setting it is about. */
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    const count = problems.length === 1 ? "1 problem" : `${problems.length} problems`;
    super(`invalid configuration (${count}):\n${problems.map((problem) => `  - ${problem}`).join("\n")}`);
    this.problems = Object.freeze([...problems]);
  }
}

/** Collects problems while the loader keeps going. */
export interface Problems {
  /** Records `<path>: <message>`. */
  add(path: string, message: string): void;
  /** Records problems already written as `<path>: <message>` (policy checks in `domain/`). */
  addLines(lines: readonly string[]): void;
  readonly list: readonly string[];
}

export function createProblems(): Problems {
  const list: string[] = [];
  return {
    add(path, message) {
      list.push(`${path}: ${message}`);
    },
    addLines(lines) {
      list.push(...lines);
    },
    list,
  };
}
