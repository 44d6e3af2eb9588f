// The language of generated workflow programs: what a program is (plain JSON, so it is
// the workflow's input and a recovering process can run it), how fast-check generates
// one, and how it prints (as the workflow code the interpreter runs).
//
// Every program is deterministic workflow code by construction: the same program makes
// the same ctx calls in the same order on every run. Concurrency is Promise.all of
// branches whose first calls are made synchronously in branch order; whatever a branch
// does after its first await goes to a stream of its own ("g<id>.<branch>"), so its
// timing relative to the other branches changes nothing that is numbered.
import fc from "fast-check";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/**
 * A value a program writes or returns. Plain JSON, or one the interpreter builds at run
 * time (the program itself must stay JSON):
 * - `{ $bad }`: a value JSON cannot represent faithfully, refused with SerializationError;
 * - `{ $deep: n }`: arrays nested n deep (representable; a deep one may be refused by name);
 * - `{ $big }`: an ASCII string whose written entry is `bytes` long, exactly the limit, or
 *   one byte over it.
 */
export type Value =
  | Json
  | { $bad: BadKind }
  | { $deep: number }
  | { $big: number | "limit" | "over" };

export const BAD_KINDS = ["undefined", "nan", "infinity", "bigint", "nul", "lone-surrogate", "date", "map", "function", "symbol-key", "sparse"] as const;
export type BadKind = (typeof BAD_KINDS)[number];

/** Error classes a program throws. ModelError is registered in errorClasses; StrayError is not. */
export const ERROR_CLASSES = ["Error", "TypeError", "RangeError", "ModelError", "StrayError"] as const;
export type ErrorClassName = (typeof ERROR_CLASSES)[number];

/**
 * What a step body or the workflow throws: an Error, or any other value. A message jsonb
 * cannot hold (a NUL, a lone surrogate) cannot be in the program's JSON either: it is
 * kept as its UTF-16 code units in `codes`.
 */
export type Thrown =
  | { error: ErrorClassName; message: string }
  | { error: ErrorClassName; codes: number[] }
  | { value: Json | { $bad: "undefined" } };

export function messageOf(thrown: Thrown & { error: ErrorClassName }): string {
  return "codes" in thrown ? String.fromCharCode(...thrown.codes) : (thrown as { message: string }).message;
}

export type OnError = "catch" | "propagate";

export interface StepOp {
  op: "step";
  id: number;
  name: string;
  /** What the attempt that does not fail does. */
  does: { return: Value } | { throw: Thrown };
  /** Attempts that throw Error("attempt <a> of <name> failed") first. */
  fails: number;
  retries?: number;
  retryDelayMs?: number;
  /** In-step writes, made at the start of every attempt, in order. */
  writes: { key: string; value: Json }[];
  onError: OnError;
}

export interface WriteOp {
  op: "write";
  id: number;
  key: string;
  value: Value;
  onError: OnError;
}

export interface ProgressOp {
  op: "progress";
  id: number;
  key: string;
  done: number;
  total: number;
  onError: OnError;
}

export interface CloseOp {
  op: "close";
  id: number;
  key: string;
  onError: OnError;
}

/** `const p = ctx.step(…); await ctx.writeStream(key, before); await ctx.writeStream(key, await p)` */
export interface AroundOp {
  op: "around";
  id: number;
  step: StepOp;
  key: string;
  before: Json;
  onError: OnError;
}

/** `await Promise.all(count × ctx.writeStream(key, <string of `bytes`>))`: many big writes at once (each caught). */
export interface BurstOp {
  op: "burst";
  id: number;
  key: string;
  count: number;
  bytes: number | "limit";
}

export type BranchFirst = StepOp | WriteOp | ProgressOp | CloseOp;

/** `await Promise.all(branches)`; each branch: its first call, then writes to its own stream. */
export interface GroupOp {
  op: "all";
  id: number;
  branches: { first: BranchFirst; then: ({ value: Json } | { result: true })[] }[];
}

export type Op = StepOp | WriteOp | ProgressOp | CloseOp | AroundOp | GroupOp | BurstOp;

export type End = { return: Value } | { throw: Thrown };

export interface Program {
  ops: Op[];
  end: End;
}

/** Stream keys programs write to (one with quotes and non-ASCII text). */
export const KEYS = ["s0", "s1", "s2", `k "ü" 'ø' 🙂`] as const;

/** The stream a group branch's later writes go to. */
export function branchKey(group: GroupOp, branch: number): string {
  return `g${group.id}.${branch}`;
}

/** Every op, nested ones included, in id (pre-)order. */
export function allOps(program: Program): Op[] {
  const out: Op[] = [];
  const visit = (op: Op) => {
    out.push(op);
    if (op.op === "around") visit(op.step);
    if (op.op === "all") for (const b of op.branches) visit(b.first);
  };
  program.ops.forEach(visit);
  return out;
}

export function stepOps(program: Program): StepOp[] {
  return allOps(program).filter((op): op is StepOp => op.op === "step");
}

/** Keys a program's workflow code or steps touch (branch streams included). */
export function keysOf(program: Program): string[] {
  const keys = new Set<string>();
  for (const op of allOps(program)) {
    if (op.op === "write" || op.op === "progress" || op.op === "close" || op.op === "around" || op.op === "burst") keys.add(op.key);
    if (op.op === "step") for (const w of op.writes) keys.add(w.key);
    if (op.op === "all") op.branches.forEach((b, i) => b.then.length > 0 && keys.add(branchKey(op, i)));
  }
  return [...keys];
}

// ---------------------------------------------------------------------------------------
// Generators

/** Text with what breaks naive code: quotes, backslashes, newlines, non-BMP, separators. */
const hostileChar = fc.constantFrom('"', "'", "\\", "\n", "\r", "\t", "é", "ü", "中", "🙂", "\u2028", "\u200b", "$", "{", "%s", "<", "\u007f");
const plainChar = fc.constantFrom(..."abcxyz 0123".split(""));
export const textArb = fc.oneof(
  { weight: 3, arbitrary: fc.string({ unit: fc.oneof({ weight: 4, arbitrary: plainChar }, hostileChar), maxLength: 10 }) },
  // any Unicode scalar value but NUL (a value with NUL is a bad value, generated on purpose)
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 6 }).map((s) => s.replaceAll("\u0000", "")) },
);

/** Message text for thrown errors: also what jsonb cannot store (NUL, lone surrogates). */
const messageArb = fc.oneof(
  { weight: 6, arbitrary: textArb },
  { weight: 1, arbitrary: fc.constantFrom("nul \u0000 inside", "lone \ud800 surrogate", "", "\u0000") },
);

const numberArb = fc.oneof(
  fc.integer({ min: -1000, max: 1000 }),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((x) => (Object.is(x, -0) ? 0 : x)),
  fc.constantFrom(Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 1e21, 1.5e-7, 0.1),
);

/** Object keys: never starting with "$" (reserved for built values). */
const objectKeyArb = textArb.map((k) => (k.startsWith("$") ? `_${k}` : k));

export const jsonArb: fc.Arbitrary<Json> = fc.letrec<{ json: Json }>((tie) => ({
  json: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    numberArb,
    textArb,
    fc.array(tie("json"), { maxLength: 3 }),
    fc.dictionary(objectKeyArb, tie("json"), { maxKeys: 3 }),
  ),
})).json;

const valueArb: fc.Arbitrary<Value> = fc.oneof(
  { weight: 30, arbitrary: jsonArb },
  { weight: 2, arbitrary: fc.constantFrom(...BAD_KINDS).map((k) => ({ $bad: k })) },
  { weight: 1, arbitrary: fc.constantFrom(64, 999, 1001, 5000, 100_000).map((n) => ({ $deep: n })) },
  { weight: 1, arbitrary: fc.constantFrom<number | "limit" | "over">(2_000, 100_000, "limit", "over").map((b) => ({ $big: b })) },
);

const thrownArb: fc.Arbitrary<Thrown> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ error: fc.constantFrom(...ERROR_CLASSES), message: messageArb }).map((t): Thrown =>
      t.message.includes("\u0000") || !t.message.isWellFormed()
        ? { error: t.error, codes: [...t.message].flatMap((ch) => Array.from({ length: ch.length }, (_, i) => ch.charCodeAt(i))) }
        : t,
    ),
  },
  { weight: 1, arbitrary: fc.record({ value: fc.oneof(textArb, numberArb, jsonArb, fc.constant({ $bad: "undefined" as const })) }) },
);

const keyArb = fc.constantFrom(...KEYS);
const onErrorArb = fc.constantFrom<OnError>("catch", "catch", "propagate");

/** A step; `id` and `name` are filled in by `number()`. */
const stepArb: fc.Arbitrary<StepOp> = fc
  .record({
    does: fc.oneof(
      { weight: 3, arbitrary: fc.record({ return: fc.oneof({ weight: 12, arbitrary: jsonArb }, { weight: 1, arbitrary: fc.constantFrom<Value>({ $bad: "undefined" }, { $bad: "nan" }, { $bad: "date" }, { $deep: 64 }) }) }) },
      { weight: 1, arbitrary: fc.record({ throw: thrownArb }) },
    ),
    flaky: fc.option(fc.record({ fails: fc.integer({ min: 1, max: 3 }), retries: fc.integer({ min: 0, max: 3 }), retryDelayMs: fc.constantFrom(0, 1, 5, 20) }), { freq: 4 }),
    writes: fc.array(fc.record({ key: keyArb, value: jsonArb }), { maxLength: 2 }),
    inStep: fc.boolean(),
    onError: onErrorArb,
  })
  .map(({ does, flaky, writes, inStep, onError }) => ({
    op: "step" as const,
    id: -1,
    name: "",
    does,
    fails: flaky?.fails ?? 0,
    ...(flaky ? { retries: flaky.retries, retryDelayMs: flaky.retryDelayMs } : {}),
    writes: inStep ? writes : [],
    onError,
  }));

const writeArb: fc.Arbitrary<WriteOp> = fc.record({ op: fc.constant("write" as const), id: fc.constant(-1), key: keyArb, value: valueArb, onError: onErrorArb });
const closeArb: fc.Arbitrary<CloseOp> = fc.record({ op: fc.constant("close" as const), id: fc.constant(-1), key: keyArb, onError: onErrorArb });
const progressArb: fc.Arbitrary<ProgressOp> = fc
  .record({ key: keyArb, done: fc.integer({ min: -1, max: 5 }), total: fc.integer({ min: 0, max: 5 }), onError: onErrorArb })
  .map((p) => ({ op: "progress" as const, id: -1, ...p }));
const aroundArb: fc.Arbitrary<AroundOp> = fc
  .record({ step: stepArb, key: keyArb, before: jsonArb, onError: onErrorArb })
  .map((a) => ({ op: "around" as const, id: -1, ...a }));

const firstArb: fc.Arbitrary<BranchFirst> = fc.oneof({ weight: 3, arbitrary: stepArb }, { weight: 3, arbitrary: writeArb }, closeArb, progressArb);
const groupArb: fc.Arbitrary<GroupOp> = fc
  .array(
    fc.record({
      first: firstArb,
      then: fc.array(fc.oneof(fc.record({ value: jsonArb }), fc.constant({ result: true as const })), { maxLength: 2 }),
    }),
    { minLength: 2, maxLength: 3 },
  )
  .map((branches) => ({ op: "all" as const, id: -1, branches }));

const burstArb: fc.Arbitrary<BurstOp> = fc
  .record({ key: keyArb, count: fc.constantFrom(3, 12, 40), bytes: fc.constantFrom<number | "limit">("limit", 300_000) })
  .map((b) => ({ op: "burst" as const, id: -1, ...b }));

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 15, arbitrary: stepArb },
  { weight: 18, arbitrary: writeArb },
  { weight: 6, arbitrary: closeArb },
  { weight: 3, arbitrary: progressArb },
  { weight: 6, arbitrary: aroundArb },
  { weight: 6, arbitrary: groupArb },
  { weight: 1, arbitrary: burstArb },
);

const endArb: fc.Arbitrary<End> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ return: fc.oneof({ weight: 20, arbitrary: jsonArb }, { weight: 1, arbitrary: fc.constantFrom<Value>({ $bad: "nan" }, { $bad: "undefined" }) }) }) },
  { weight: 1, arbitrary: fc.record({ throw: thrownArb }) },
);

export const programArb: fc.Arbitrary<Program> = fc
  .record({ ops: fc.array(opArb, { maxLength: 8 }), end: endArb })
  .map((p) => withPrinter(number(p)));

/** Gives every op its id (pre-order) and every step its name; branches get fresh copies. */
export function number(program: Program): Program {
  let next = 0;
  const stepName = (id: number) => (id % 3 === 2 ? `ステップ "${id}"` : `step ${id}`);
  const visit = (op: Op): Op => {
    const id = next++;
    switch (op.op) {
      case "step":
        return { ...op, id, name: stepName(id) };
      case "around":
        return { ...op, id, step: visit(op.step) as StepOp };
      case "all":
        return { ...op, id, branches: op.branches.map((b) => ({ ...b, first: settled(visit(b.first)) as BranchFirst })) };
      case "write":
        // A value pgtide may store or refuse (deeply nested) must not decide where the
        // program goes: such a write is caught.
        return isEither(op.value) ? { ...op, id, onError: "catch" } : { ...op, id };
      default:
        return { ...op, id };
    }
  };
  return { ops: program.ops.map(visit), end: program.end };
}

function isEither(value: Value): boolean {
  return value !== null && typeof value === "object" && !Array.isArray(value) && "$deep" in value && Number(value.$deep) > 64;
}

/** A group branch's first op decides whether the branch goes on: it must be stored or refused for sure. */
function settled(op: Op): Op {
  return op.op === "write" && isEither(op.value) ? { ...op, value: { $deep: 64 } } : op;
}

/** The program as plain JSON (the workflow's input): no printer symbol. */
export function plain(program: Program): Program {
  return JSON.parse(JSON.stringify(program)) as Program;
}

export function withPrinter<T extends object>(value: T, print?: (value: T) => string): T {
  Object.defineProperty(value, fc.toStringMethod, {
    value: () => (print ?? ((p: T) => printProgram(p as unknown as Program)))(value),
    enumerable: false,
  });
  return value;
}

// ---------------------------------------------------------------------------------------
// Printing: the program as the workflow code the interpreter runs.

export function printValue(value: Value): string {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    if ("$bad" in value) return `<bad: ${String(value.$bad)}>`;
    if ("$deep" in value) return `<arrays nested ${String(value.$deep)} deep>`;
    if ("$big" in value) return `<string: ${value.$big === "limit" ? "entry exactly maxValueBytes" : value.$big === "over" ? "entry maxValueBytes + 1" : `${String(value.$big)} bytes`}>`;
  }
  return JSON.stringify(value);
}

function printThrown(t: Thrown): string {
  return "error" in t ? `new ${t.error}(${JSON.stringify(messageOf(t))})` : printValue(t.value as Value);
}

function printStep(s: StepOp): string {
  const body: string[] = [];
  for (const w of s.writes) body.push(`await ctx.writeStream(${JSON.stringify(w.key)}, ${JSON.stringify(w.value)})`);
  if (s.fails > 0) body.push(`if (attempt < ${s.fails}) throw new Error("attempt <a> of …")`);
  body.push("return" in s.does ? `return ${printValue(s.does.return)}` : `throw ${printThrown(s.does.throw)}`);
  const options = s.retries === undefined ? "" : `, { retries: ${s.retries}, retryDelayMs: ${s.retryDelayMs} }`;
  return `ctx.step(${JSON.stringify(s.name)}, () => { ${body.join("; ")} }${options})`;
}

function wrap(onError: OnError, code: string): string {
  return onError === "catch" ? `try { ${code} } catch (e) { note(e) }` : code;
}

function printOp(op: Op, indent: string): string[] {
  const tag = `/* #${op.id} */ `;
  switch (op.op) {
    case "step":
      return [indent + tag + wrap(op.onError, `await ${printStep(op)}`)];
    case "write":
      return [indent + tag + wrap(op.onError, `await ctx.writeStream(${JSON.stringify(op.key)}, ${printValue(op.value)})`)];
    case "progress":
      return [indent + tag + wrap(op.onError, `await ctx.writeProgress(${JSON.stringify(op.key)}, { done: ${op.done}, total: ${op.total} })`)];
    case "close":
      return [indent + tag + wrap(op.onError, `await ctx.closeStream(${JSON.stringify(op.key)})`)];
    case "burst":
      return [indent + tag + `await Promise.all(${op.count} × ctx.writeStream(${JSON.stringify(op.key)}, ${printValue({ $big: op.bytes })}))  // each caught`];
    case "around":
      return [
        indent + tag + wrap(op.onError, `const p = ${printStep(op.step)} /* #${op.step.id} */; await ctx.writeStream(${JSON.stringify(op.key)}, ${JSON.stringify(op.before)}); await ctx.writeStream(${JSON.stringify(op.key)}, await p)`),
      ];
    case "all": {
      const lines = [`${indent}${tag}await Promise.all([ // a branch notes its first error and stops`];
      op.branches.forEach((b, i) => {
        const f = b.first;
        const call =
          f.op === "step" ? printStep(f)
          : f.op === "write" ? `ctx.writeStream(${JSON.stringify(f.key)}, ${printValue(f.value)})`
          : f.op === "progress" ? `ctx.writeProgress(${JSON.stringify(f.key)}, { done: ${f.done}, total: ${f.total} })`
          : `ctx.closeStream(${JSON.stringify(f.key)})`;
        const then = b.then.map((t) => `await ctx.writeStream(${JSON.stringify(branchKey(op, i))}, ${"result" in t ? "r" : JSON.stringify(t.value)})`);
        lines.push(`${indent}  async () => { /* #${f.id} */ const r = await ${[call, ...then].join("; ")} },`);
      });
      lines.push(`${indent}])`);
      return lines;
    }
  }
}

export function printProgram(program: Program): string {
  const lines = ["async (ctx) => {"];
  for (const op of program.ops) lines.push(...printOp(op, "  "));
  lines.push(`  ${"return" in program.end ? `return { value: ${printValue(program.end.return)}, outcomes }` : `throw ${printThrown(program.end.throw)}`}`);
  lines.push("}");
  return lines.join("\n");
}
