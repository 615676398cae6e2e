/**
 * The dependency rule as `npm run lint` enforces it: a file under src/domain/ may import only
 * src/domain/ and Node built-ins. Each fixture is linted with the project's own ESLint
 * configuration as if it lived at `filePath`, so no offending file has to exist in src/.
 */
import { fileURLToPath } from "node:url";
import { ESLint } from "eslint";
import { describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../../", import.meta.url));
const eslint = new ESLint({ cwd: root });

async function restrictedImports(filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  expect(result?.messages.filter((message) => message.fatal === true)).toEqual([]);
  return (result?.messages ?? [])
    .filter((message) => message.ruleId === "no-restricted-imports" || message.ruleId === "no-restricted-syntax")
    .map((message) => message.message);
}

describe("the domain's dependency rule", () => {
  it("refuses configuration types in a domain file, type-only imports included", async () => {
    const messages = await restrictedImports(
      "src/domain/fixture.ts",
      'import type { ProviderConfig } from "../config/types.js";\nexport type Fixture = ProviderConfig;\n',
    );
    expect(messages).toEqual([expect.stringContaining("src/domain/ may import only src/domain/ and Node built-ins")]);
  });

  it("refuses a package such as postgres", async () => {
    const messages = await restrictedImports("src/domain/fixture.ts", 'import postgres from "postgres";\nexport const fixture = postgres;\n');
    expect(messages).toEqual([expect.stringContaining("src/domain/ may import only src/domain/ and Node built-ins")]);
  });

  it("refuses every outer layer and wire library, re-exports and dynamic imports too", async () => {
    const offenders = [
      'import { x } from "../transport/call.js";',
      'import { x } from "../storage/database.js";',
      'import { x } from "../crypto/cipher.js";',
      'import { x } from "../providers/google.js";',
      'import { x } from "../gen/oauthbroker/v1/token_service_pb.js";',
      'import { x } from "./../config/types.js";',
      'import { x } from "node-vault";',
      'import { x } from "openid-client";',
      'import { x } from "@connectrpc/connect";',
      'import { x } from "@grpc/grpc-js";',
      'export { x } from "../config/types.js";',
    ];
    for (const line of offenders) {
      expect(await restrictedImports("src/domain/fixture.ts", `${line}\nexport const fixture = x;\n`), line).toHaveLength(1);
    }
    expect(await restrictedImports("src/domain/fixture.ts", 'export const fixture = () => import("../storage/database.js");\n')).toHaveLength(1);
  });

  it("counts the climb from a nested domain folder", async () => {
    expect(await restrictedImports("src/domain/tokens/fixture.ts", 'import { x } from "../../config/types.js";\nexport const fixture = x;\n')).toHaveLength(1);
    expect(await restrictedImports("src/domain/tokens/fixture.ts", 'import { x } from "../errors.js";\nexport const fixture = x;\n')).toEqual([]);
  });

  it("accepts domain modules and Node built-ins", async () => {
    const clean = [
      'import { BrokerError } from "./errors.js";',
      'import type { Clock } from "./ports.js";',
      'import { randomUUID } from "node:crypto";',
      "export const fixture = [BrokerError, randomUUID] as const;",
      "export type Fixture = Clock;",
      "",
    ].join("\n");
    expect(await restrictedImports("src/domain/fixture.ts", clean)).toEqual([]);
  });

  it("leaves the other layers free to import what they need", async () => {
    expect(await restrictedImports("src/storage/fixture.ts", 'import postgres from "postgres";\nexport const fixture = postgres;\n')).toEqual([]);
  });

  it("holds for the domain as it is", async () => {
    const results = await eslint.lintFiles(["src/domain"]);
    expect(results.length).toBeGreaterThan(10);
    const violations = results.flatMap((result) =>
      result.messages
        .filter((message) => message.ruleId === "no-restricted-imports" || message.ruleId === "no-restricted-syntax")
        .map((message) => `${result.filePath}:${message.line} ${message.message}`),
    );
    expect(violations).toEqual([]);
  });
});
