/**
 * A small PromQL parser for the deploy tests: what `promtool check rules` would reject in the
 * dashboard's and the alert rules' expressions (unbalanced brackets, unknown functions, bad
 * durations or matchers, a range vector where an instant vector belongs and the reverse), plus
 * the metric names every expression selects, so the tests can check them against the broker's
 * registry. No PromQL parser is available on npm without a native or WASM build of the Go one,
 * so this follows the grammar of prometheus/promql/parser closely enough for rule files.
 */
import { Histogram, Summary, type Registry } from "prom-client";

export type ValueType = "scalar" | "string" | "instant" | "range";

export interface PromqlAnalysis {
  readonly type: ValueType;
  /** Metric names selected anywhere in the expression (`foo` and `{__name__="foo"}`). */
  readonly metrics: ReadonlySet<string>;
}

export class PromqlError extends Error {
  override readonly name = "PromqlError";
}

type TokenKind = "number" | "duration" | "string" | "ident" | "op" | "punct" | "end";
interface Token {
  readonly kind: TokenKind;
  readonly text: string;
  readonly at: number;
}

const DURATION = /^(?:\d+(?:ms|[smhdwy]))+$/;
const AGGREGATIONS = new Set(["sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "limitk", "limit_ratio"]);
const PARAMETERISED_AGGREGATIONS = new Set(["topk", "bottomk", "quantile", "count_values", "limitk", "limit_ratio"]);
const BINARY = ["==", "!=", ">=", "<=", ">", "<", "+", "-", "*", "/", "%", "^", "and", "or", "unless", "atan2"];
const COMPARISONS = new Set(["==", "!=", ">=", "<=", ">", "<"]);
const SET_OPERATORS = new Set(["and", "or", "unless"]);
const PRECEDENCE: Readonly<Record<string, number>> = {
  or: 1, and: 2, unless: 2, "==": 3, "!=": 3, ">=": 3, "<=": 3, ">": 3, "<": 3,
  "+": 4, "-": 4, "*": 5, "/": 5, "%": 5, atan2: 5, "^": 6,
};

/** Argument types of PromQL functions; a trailing "…" entry repeats, "?" marks optional ones. */
const FUNCTIONS: Readonly<Record<string, { readonly args: readonly string[]; readonly returns: ValueType }>> = {
  abs: { args: ["instant"], returns: "instant" },
  absent: { args: ["instant"], returns: "instant" },
  absent_over_time: { args: ["range"], returns: "instant" },
  ceil: { args: ["instant"], returns: "instant" },
  changes: { args: ["range"], returns: "instant" },
  clamp: { args: ["instant", "scalar", "scalar"], returns: "instant" },
  clamp_max: { args: ["instant", "scalar"], returns: "instant" },
  clamp_min: { args: ["instant", "scalar"], returns: "instant" },
  day_of_week: { args: ["instant?"], returns: "instant" },
  delta: { args: ["range"], returns: "instant" },
  deriv: { args: ["range"], returns: "instant" },
  exp: { args: ["instant"], returns: "instant" },
  floor: { args: ["instant"], returns: "instant" },
  histogram_quantile: { args: ["scalar", "instant"], returns: "instant" },
  holt_winters: { args: ["range", "scalar", "scalar"], returns: "instant" },
  hour: { args: ["instant?"], returns: "instant" },
  idelta: { args: ["range"], returns: "instant" },
  increase: { args: ["range"], returns: "instant" },
  irate: { args: ["range"], returns: "instant" },
  label_join: { args: ["instant", "string", "string", "string…"], returns: "instant" },
  label_replace: { args: ["instant", "string", "string", "string", "string"], returns: "instant" },
  ln: { args: ["instant"], returns: "instant" },
  log10: { args: ["instant"], returns: "instant" },
  log2: { args: ["instant"], returns: "instant" },
  predict_linear: { args: ["range", "scalar"], returns: "instant" },
  rate: { args: ["range"], returns: "instant" },
  resets: { args: ["range"], returns: "instant" },
  round: { args: ["instant", "scalar?"], returns: "instant" },
  scalar: { args: ["instant"], returns: "scalar" },
  sgn: { args: ["instant"], returns: "instant" },
  sort: { args: ["instant"], returns: "instant" },
  sort_desc: { args: ["instant"], returns: "instant" },
  sqrt: { args: ["instant"], returns: "instant" },
  time: { args: [], returns: "scalar" },
  timestamp: { args: ["instant"], returns: "instant" },
  vector: { args: ["scalar"], returns: "instant" },
  avg_over_time: { args: ["range"], returns: "instant" },
  count_over_time: { args: ["range"], returns: "instant" },
  last_over_time: { args: ["range"], returns: "instant" },
  max_over_time: { args: ["range"], returns: "instant" },
  min_over_time: { args: ["range"], returns: "instant" },
  present_over_time: { args: ["range"], returns: "instant" },
  quantile_over_time: { args: ["scalar", "range"], returns: "instant" },
  stddev_over_time: { args: ["range"], returns: "instant" },
  stdvar_over_time: { args: ["range"], returns: "instant" },
  sum_over_time: { args: ["range"], returns: "instant" },
};

function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  // Inside `[…]` a colon separates range and step; elsewhere it may start a recorded name.
  let inRange = false;
  while (i < source.length) {
    const rest = source.slice(i);
    const space = /^(?:\s+|#[^\n]*)/.exec(rest);
    if (space) {
      i += space[0].length;
      continue;
    }
    const string = /^(?:"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`[^`]*`)/.exec(rest);
    if (string) {
      tokens.push({ kind: "string", text: string[0], at: i });
      i += string[0].length;
      continue;
    }
    if (/^["'`]/.test(rest)) throw new PromqlError(`unterminated string at ${i}`);
    const duration = /^(?:\d+(?:ms|[smhdwy]))+(?![\w.])/.exec(rest);
    if (duration) {
      tokens.push({ kind: "duration", text: duration[0], at: i });
      i += duration[0].length;
      continue;
    }
    const number = /^(?:0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|Inf|NaN)(?![\w.])/i.exec(rest);
    if (number) {
      tokens.push({ kind: "number", text: number[0], at: i });
      i += number[0].length;
      continue;
    }
    const ident = inRange ? null : /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(rest);
    if (ident) {
      tokens.push({ kind: "ident", text: ident[0], at: i });
      i += ident[0].length;
      continue;
    }
    const op = /^(?:==|!=|>=|<=|=~|!~|[-+*/%^<>=])/.exec(rest);
    if (op) {
      tokens.push({ kind: "op", text: op[0], at: i });
      i += op[0].length;
      continue;
    }
    if ("(){}[],:@".includes(rest[0] ?? "")) {
      if (rest[0] === "[") inRange = true;
      if (rest[0] === "]") inRange = false;
      tokens.push({ kind: "punct", text: rest[0] ?? "", at: i });
      i += 1;
      continue;
    }
    throw new PromqlError(`unexpected character ${JSON.stringify(rest[0])} at ${i}`);
  }
  tokens.push({ kind: "end", text: "", at: source.length });
  return tokens;
}

/** Parses one PromQL expression; throws a `PromqlError` naming the problem and its offset. */
export function analysePromql(source: string): PromqlAnalysis {
  const tokens = tokenize(source);
  const metrics = new Set<string>();
  let position = 0;

  const peek = (offset = 0): Token => tokens[Math.min(position + offset, tokens.length - 1)] ?? { kind: "end", text: "", at: source.length };
  const next = (): Token => {
    const token = peek();
    position += 1;
    return token;
  };
  const fail = (message: string, token = peek()): never => {
    throw new PromqlError(`${message} at ${token.at} (near ${JSON.stringify(source.slice(token.at, token.at + 20))})`);
  };
  const expect = (text: string): Token => (peek().text === text && peek().kind !== "string" ? next() : fail(`expected "${text}"`));
  const isBinary = (token: Token): boolean =>
    (token.kind === "op" && BINARY.includes(token.text)) || (token.kind === "ident" && BINARY.includes(token.text));

  function labelList(): void {
    expect("(");
    while (peek().text !== ")") {
      if (peek().kind !== "ident") fail("expected a label name");
      next();
      if (peek().text === ",") next();
      else if (peek().text !== ")") fail('expected "," or ")"');
    }
    expect(")");
  }

  function matchers(name: string | undefined): void {
    expect("{");
    let selectsName = name !== undefined;
    let nonEmpty = false;
    while (peek().text !== "}") {
      const label = next();
      if (label.kind !== "ident" || label.text.includes(":")) fail("expected a label name", label);
      const op = next();
      if (op.kind !== "op" || !["=", "!=", "=~", "!~"].includes(op.text)) fail("expected a label matcher (=, !=, =~, !~)", op);
      const value = next();
      if (value.kind !== "string") fail("expected a quoted label value", value);
      const text = value.text.slice(1, -1);
      if (label.text === "__name__" && op.text === "=") {
        metrics.add(text);
        selectsName = true;
      }
      if ((op.text === "=~" || op.text === "!~") && !validRegex(text)) fail(`invalid regular expression ${value.text}`, value);
      if (!(op.text === "=" && text === "") && !(op.text === "=~" && /^(?:\.\*)?$/.test(text))) nonEmpty = true;
      if (peek().text === ",") next();
      else if (peek().text !== "}") fail('expected "," or "}"');
    }
    expect("}");
    if (!selectsName && !nonEmpty) fail("a selector needs a metric name or a matcher that does not match the empty string");
  }

  function duration(): void {
    const token = next();
    if (token.kind !== "duration" || !DURATION.test(token.text)) fail("expected a duration (5m, 1h30m)", token);
  }

  /** `[5m]`, `[1h:5m]`, then `offset` / `@` modifiers. */
  function suffixes(type: ValueType, selector: boolean): ValueType {
    let result = type;
    if (peek().text === "[") {
      next();
      duration();
      if (peek().text === ":") {
        if (type !== "instant") fail("a subquery needs an instant vector");
        next();
        if (peek().text !== "]") duration();
      } else if (!selector) {
        fail("a range needs a vector selector; use a subquery [range:step] for an expression");
      }
      expect("]");
      result = "range";
    }
    for (;;) {
      if (peek().kind === "ident" && peek().text === "offset") {
        if (type !== "instant") fail("offset needs a vector");
        next();
        if (peek().text === "-") next();
        duration();
      } else if (peek().text === "@") {
        next();
        const at = next();
        if (at.kind !== "number" && !(at.kind === "ident" && (at.text === "start" || at.text === "end"))) fail("expected a timestamp after @", at);
        if (at.kind === "ident") {
          expect("(");
          expect(")");
        }
      } else {
        return result;
      }
    }
  }

  function call(name: string): ValueType {
    const spec = FUNCTIONS[name];
    if (spec === undefined) return fail(`unknown function ${name}()`);
    expect("(");
    const types: ValueType[] = [];
    while (peek().text !== ")") {
      types.push(expression(0));
      if (peek().text === ",") next();
      else if (peek().text !== ")") fail('expected "," or ")"');
    }
    expect(")");
    const required = spec.args.filter((a) => !a.endsWith("?") && !a.endsWith("…")).length;
    const variadic = spec.args.some((a) => a.endsWith("…"));
    if (types.length < required || (!variadic && types.length > spec.args.length)) fail(`${name}() takes ${spec.args.length} argument(s), got ${types.length}`);
    types.forEach((type, index) => {
      const wanted = (spec.args[Math.min(index, spec.args.length - 1)] ?? "").replace(/[?…]$/, "");
      if (type !== wanted) fail(`${name}() argument ${index + 1} must be ${wanted === "range" ? "a range vector" : `a ${wanted}`}, not ${type === "range" ? "a range vector" : `a ${type}`}`);
    });
    return spec.returns;
  }

  function aggregation(name: string): ValueType {
    if (peek().kind === "ident" && (peek().text === "by" || peek().text === "without")) {
      next();
      labelList();
    }
    expect("(");
    if (PARAMETERISED_AGGREGATIONS.has(name)) {
      const parameter = expression(0);
      if (parameter !== (name === "count_values" ? "string" : "scalar")) fail(`${name} needs a ${name === "count_values" ? "string" : "scalar"} parameter`);
      expect(",");
    }
    if (expression(0) !== "instant") fail(`${name} aggregates an instant vector`);
    expect(")");
    if (peek().kind === "ident" && (peek().text === "by" || peek().text === "without")) {
      next();
      labelList();
    }
    return "instant";
  }

  function primary(): ValueType {
    const token = peek();
    if (token.kind === "number") {
      next();
      return "scalar";
    }
    if (token.kind === "string") {
      next();
      return "string";
    }
    if (token.text === "(" && token.kind === "punct") {
      next();
      const inner = expression(0);
      expect(")");
      return suffixes(inner, false);
    }
    if (token.text === "{" && token.kind === "punct") {
      matchers(undefined);
      return suffixes("instant", true);
    }
    if (token.kind === "ident") {
      next();
      if (AGGREGATIONS.has(token.text) && (peek().text === "(" || peek().text === "by" || peek().text === "without")) return aggregation(token.text);
      if (peek().text === "(" && peek().kind === "punct") return suffixes(call(token.text), false);
      if (BINARY.includes(token.text) || ["by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"].includes(token.text)) {
        fail(`unexpected keyword ${token.text}`, token);
      }
      metrics.add(token.text);
      if (peek().text === "{") matchers(token.text);
      return suffixes("instant", true);
    }
    return fail(token.kind === "end" ? "unexpected end of expression" : `unexpected ${JSON.stringify(token.text)}`, token);
  }

  function unary(): ValueType {
    if (peek().kind === "op" && (peek().text === "-" || peek().text === "+")) {
      next();
      const type = unary();
      if (type !== "scalar" && type !== "instant") fail("unary minus needs a scalar or an instant vector");
      return type;
    }
    return primary();
  }

  function expression(minimum: number): ValueType {
    let left = unary();
    for (;;) {
      const op = peek();
      if (!isBinary(op)) return left;
      const precedence = PRECEDENCE[op.text] ?? 0;
      if (precedence < minimum) return left;
      next();
      let bool = false;
      if (peek().kind === "ident" && peek().text === "bool") {
        if (!COMPARISONS.has(op.text)) fail("bool only follows a comparison");
        next();
        bool = true;
      }
      if (peek().kind === "ident" && (peek().text === "on" || peek().text === "ignoring")) {
        next();
        labelList();
        if (peek().kind === "ident" && (peek().text === "group_left" || peek().text === "group_right")) {
          if (SET_OPERATORS.has(op.text)) fail(`${peek().text} is not allowed with ${op.text}`);
          next();
          if (peek().text === "(") labelList();
        }
      }
      // `^` is right-associative, every other operator left-associative.
      const right = expression(op.text === "^" ? precedence : precedence + 1);
      for (const side of [left, right]) {
        if (side === "range" || side === "string") fail(`${op.text} needs scalars or instant vectors, not a ${side === "range" ? "range vector" : "string"}`, op);
      }
      if (SET_OPERATORS.has(op.text) && (left !== "instant" || right !== "instant")) fail(`${op.text} needs instant vectors on both sides`, op);
      if (COMPARISONS.has(op.text) && left === "scalar" && right === "scalar" && !bool) fail("a comparison of two scalars needs bool", op);
      left = left === "scalar" && right === "scalar" ? "scalar" : "instant";
    }
  }

  const type = expression(0);
  if (peek().kind !== "end") fail(`unexpected ${JSON.stringify(peek().text)} after the expression`);
  return { type, metrics };
}

function validRegex(pattern: string): boolean {
  try {
    new RegExp(`^(?:${pattern.replace(/\\\\/g, "\\")})$`);
    return true;
  } catch {
    return false;
  }
}

/** Replaces Grafana's variables with values of the right shape, so dashboard queries parse. */
export function withGrafanaVariables(expr: string): string {
  return expr
    .replace(/\$__(?:rate_interval|interval|range)\b|\$\{__(?:rate_interval|interval|range)\}/g, "5m")
    .replace(/\$\{?[A-Za-z_][A-Za-z0-9_]*(?::[a-z]+)?\}?/g, "grafana_variable");
}

/**
 * What a scrape of `registry` can contain: each metric's name, plus `_bucket`, `_sum` and
 * `_count` for histograms and `_sum`, `_count` for summaries (a histogram's base name holds no
 * samples). Decided by class: prom-client's typings declare `type` a numeric enum, but it holds
 * strings.
 */
export function exposedSeriesNames(registry: Registry): Set<string> {
  const names = new Set<string>();
  for (const metric of registry.getMetricsAsArray()) {
    const name = metric.name;
    if (metric instanceof Histogram) for (const suffix of ["_bucket", "_sum", "_count"]) names.add(`${name}${suffix}`);
    else if (metric instanceof Summary) for (const suffix of ["", "_sum", "_count"]) names.add(`${name}${suffix}`);
    else names.add(name);
  }
  return names;
}
