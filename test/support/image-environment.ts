/**
 * The environment the Dockerfile's runtime stage sets (its `ENV` lines after the last `FROM`),
 * read from the Dockerfile itself: the image-steps test and benchmark (e) run the compiled broker
 * as the image does, memory settings included, without a second copy of them.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const DOCKERFILE = fileURLToPath(new URL("../../Dockerfile", import.meta.url));
/** `KEY=value` or `KEY="value with spaces"`, as Dockerfile `ENV` lines write them here. */
const ASSIGNMENT = /([A-Z_][A-Z0-9_]*)=(?:"([^"]*)"|(\S*))/g;

export function dockerfileRuntimeEnvironment(): Record<string, string> {
  const lines = readFileSync(DOCKERFILE, "utf8").split("\n");
  const lastFrom = lines.findLastIndex((line) => line.startsWith("FROM "));
  const environment: Record<string, string> = {};
  // Continuation lines (`\` at the end) are joined first, as Docker does.
  const runtime = lines.slice(lastFrom + 1).join("\n").replace(/\\\n/g, " ").split("\n");
  for (const line of runtime) {
    if (!line.startsWith("ENV ")) continue;
    for (const match of line.slice(4).matchAll(ASSIGNMENT)) {
      const [, name = "", quoted, bare] = match;
      environment[name] = quoted ?? bare ?? "";
    }
  }
  return environment;
}
