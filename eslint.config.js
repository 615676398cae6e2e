import js from "@eslint/js";
import tseslint from "typescript-eslint";
import globals from "globals";

/**
 * The dependency rule: src/domain/ imports only src/domain/ and Node built-ins (`node:`), never
 * configuration, transport, storage, crypto, providers, generated code or any package. A
 * relative path may climb only as far as the domain's root, so each folder depth gets its limit.
 */
const DOMAIN_DEPTHS = [0, 1, 2, 3];

function domainDependencyRule(depth) {
  return {
    files: [`src/domain/${"*/".repeat(depth)}*.ts`],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              regex: "^(?![.]|node:)",
              message: "src/domain/ may import only src/domain/ and Node built-ins (node:...): give the domain a port instead.",
            },
            {
              regex: `^([.]/)*([.][.]/){${depth + 1}}`,
              message: "src/domain/ may import only src/domain/ and Node built-ins: give the domain a port or a domain type instead.",
            },
          ],
        },
      ],
      "no-restricted-syntax": [
        "error",
        { selector: "ImportExpression", message: "src/domain/ imports statically, so the dependency rule can see every import." },
      ],
    },
  };
}

export default tseslint.config(
  { ignores: ["dist/", "src/gen/", "node_modules/", ".broker-data/", "coverage/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/consistent-type-imports": "error",
      "no-console": "error",
    },
  },
  {
    files: ["src/**/*.ts"],
    rules: { "@typescript-eslint/no-explicit-any": "error" },
  },
  ...DOMAIN_DEPTHS.map(domainDependencyRule),
  {
    files: ["test/**/*.ts", "bench/**/*.ts"],
    rules: { "no-console": "off", "@typescript-eslint/no-explicit-any": "off" },
  },
);
