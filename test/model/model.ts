// The model: what a program must do, computed from the program alone by running it
// abstractly (no engine). It gives, for a run that is not interrupted:
// - the outcome each ctx call must have (exactly, or "one of" where the README allows a
//   choice: a value stored or refused by name);
// - per stream, the writes (and the close) workflow code makes, in the order it makes
//   them; the in-step writes; which streams get in-step writes at all;
// - the steps in the order they are called (their step numbers);
// - the workflow's end: SUCCESS and its value, or ERROR and what it throws.
//
// Where the README says nothing, the model takes what a user would expect, noted inline.
import {
  allOps, branchKey, messageOf, type BranchFirst, type Json, type OnError, type Op, type Program, type StepOp, type Thrown, type Value,
} from "./program.js";
import { acceptance, build, codeEntry, describeOk, escapeText, type Outcome } from "./values.js";

/** Acceptable outcomes: one of `exact`, or any PgtideError whose code is in `codes`. */
export interface Expect {
  exact: Outcome[];
  codes: string[];
}

export interface ExpectedWrite {
  /** The outcome key of the call that writes it ("<id>", "<id>:b", "<id>:a", "<id>:t<j>"). */
  tag: string;
  close: boolean;
  /** The entry as stored (a close has none). */
  entry?: unknown;
  /** Stored or refused by name, as the call's outcome says: checked against the outcome. */
  either: boolean;
}

export interface InStepWrite {
  op: number;
  j: number;
  key: string;
  value: Json;
}

export interface ExpectedStep {
  /** The step number pgtide gives it: its place in the order of ctx.step calls. */
  stepId: number;
  op: StepOp;
  expect: Expect;
  /** In-step writes this step's attempts store (those before the first refused one). */
  storesWrites: number;
}

export interface Model {
  outcomes: Map<string, Expect>;
  writes: Map<string, ExpectedWrite[]>;
  inStep: InStepWrite[];
  /** Streams some step writes to: there, workflow-code writes keep their order, not their offsets. */
  inStepKeys: Set<string>;
  steps: ExpectedStep[];
  end: { status: "SUCCESS"; value: unknown } | { status: "ERROR"; expect: Expect };
}

const ok = (outcome: Outcome): Expect => ({ exact: [outcome], codes: [] });
const refused = (...codes: string[]): Expect => ({ exact: [], codes });
export const canSucceed = (e: Expect) => e.exact.some((o) => !("err" in o) && !("thrown" in o));

function hasUnstorableText(text: string): boolean {
  return text.includes("\u0000") || !text.isWellFormed();
}

/**
 * What a thrown value becomes. An Error keeps its class (ModelError is registered;
 * StrayError is not, so it comes back as an Error named "StrayError") and message. Any
 * other value comes back equal. README: "whatever a step throws … is stored faithfully or
 * refused by name": so SerializationError is also accepted for what JSON or jsonb cannot
 * hold (a NUL or a lone surrogate in a message, a thrown undefined), and for a thrown
 * non-Error (pgtide may refuse those by name). Either way every run must see the same.
 */
export function thrownExpect(thrown: Thrown): Expect {
  if ("value" in thrown) {
    const v = thrown.value;
    if (v !== null && typeof v === "object" && "$bad" in v) return { exact: [{ thrown: null, undef: true }], codes: ["SERIALIZATION"] };
    return { exact: [{ thrown: v as Json }], codes: ["SERIALIZATION"] };
  }
  const cls = thrown.error === "StrayError" ? "Error" : thrown.error;
  const message = messageOf(thrown);
  const exact: Outcome = { err: thrown.error, msg: escapeText(message), cls };
  return { exact: [exact], codes: hasUnstorableText(message) ? ["SERIALIZATION"] : [] };
}

function valueExpect(value: Value): Expect {
  switch (acceptance(value)) {
    case "stored":
      return ok({ undef: true });
    case "refused":
      return refused("SERIALIZATION");
    case "either":
      return { exact: [{ undef: true }], codes: ["SERIALIZATION"] };
  }
}

export function buildModel(program: Program): Model {
  const model: Model = { outcomes: new Map(), writes: new Map(), inStep: [], inStepKeys: new Set(), steps: [], end: { status: "SUCCESS", value: undefined } };
  const closed = new Set<string>();
  let stepCount = 0;
  let ended: Expect | undefined;

  for (const op of allOps(program)) {
    if (op.op === "step") for (const w of op.writes) model.inStepKeys.add(w.key);
  }

  const writesOf = (key: string) => {
    let list = model.writes.get(key);
    if (!list) model.writes.set(key, (list = []));
    return list;
  };

  /** The outcome of a step; `closedForWrites`: streams closed before its in-step writes run. */
  function stepOutcome(s: StepOp, closedForWrites: Set<string>): { expect: Expect; value?: unknown; storesWrites: number } {
    const refusedAt = s.writes.findIndex((w) => closedForWrites.has(w.key));
    for (const [j, w] of s.writes.entries()) if (refusedAt < 0 || j < refusedAt) model.inStep.push({ op: s.id, j, key: w.key, value: w.value });
    const storesWrites = refusedAt < 0 ? s.writes.length : refusedAt;
    // Every attempt writes first, so every attempt meets the closed stream.
    if (refusedAt >= 0) return { expect: refused("STREAM_CLOSED"), storesWrites };
    const retries = s.retries ?? 0;
    if (s.fails > retries) return { expect: ok({ err: "Error", msg: escapeText(`attempt ${retries} of ${s.name} failed`), cls: "Error" }), storesWrites };
    if ("throw" in s.does) return { expect: thrownExpect(s.does.throw), storesWrites };
    const r = s.does.return;
    if (acceptance(r) === "refused") {
      // A step returning undefined stores "no output" and replays undefined.
      if (r !== null && typeof r === "object" && "$bad" in r && r.$bad === "undefined") return { expect: ok({ undef: true }), value: undefined, storesWrites };
      return { expect: refused("SERIALIZATION"), storesWrites };
    }
    const value = build(r);
    return { expect: ok(describeOk(value)), value, storesWrites };
  }

  function callStep(s: StepOp, closedForWrites: Set<string>): { expect: Expect; value?: unknown } {
    const result = stepOutcome(s, closedForWrites);
    model.steps.push({ stepId: stepCount++, op: s, expect: result.expect, storesWrites: result.storesWrites });
    return result;
  }

  /** A write from workflow code; returns its expectation and records the write. */
  function write(key: string, tag: string, value: Value | { $result: unknown }): Expect {
    const isResult = value !== null && typeof value === "object" && !Array.isArray(value) && "$result" in value;
    if (isResult) {
      const result = (value as { $result: unknown }).$result;
      // `{ op, v: undefined }`: undefined is refused (README: not JSON).
      if (result === undefined) return closed.has(key) ? refused("STREAM_CLOSED", "SERIALIZATION") : refused("SERIALIZATION");
      if (closed.has(key)) return refused("STREAM_CLOSED");
      writesOf(key).push({ tag, close: false, entry: { op: tag, v: result }, either: false });
      return ok({ undef: true });
    }
    const v = value as Value;
    const expect = valueExpect(v);
    // Which check comes first is not specified: a closed stream, or a value that may be refused.
    if (closed.has(key)) return refused("STREAM_CLOSED", ...expect.codes);
    if (expect.exact.length > 0) writesOf(key).push({ tag, close: false, entry: codeEntry(tag, v), either: expect.codes.length > 0 });
    return expect;
  }

  function progress(key: string, tag: string, done: number, total: number): Expect {
    const valid = done >= 0 && done <= total;
    if (!valid) return closed.has(key) ? refused("INVALID_ARGUMENT", "STREAM_CLOSED") : refused("INVALID_ARGUMENT");
    if (closed.has(key)) return refused("STREAM_CLOSED");
    writesOf(key).push({ tag, close: false, entry: { done, total, label: `op:${tag}` }, either: false });
    return ok({ undef: true });
  }

  function close(key: string, tag: string): Expect {
    // Closing a closed stream resolves and stores nothing (README: "closing is stored like an entry").
    if (!closed.has(key)) {
      closed.add(key);
      writesOf(key).push({ tag, close: true, either: false });
    }
    return ok({ undef: true });
  }

  /** Settles an op's outcome: notes it, and ends the workflow if it propagates an error. */
  function settle(key: string, expect: Expect, onError: OnError): boolean {
    model.outcomes.set(key, expect);
    if (canSucceed(expect)) return true;
    if (onError === "propagate") ended = expect;
    return false;
  }

  function runFirst(op: BranchFirst, onError: OnError, closedForWrites: Set<string>): { ok: boolean; value?: unknown } {
    const key = String(op.id);
    switch (op.op) {
      case "step": {
        const r = callStep(op, closedForWrites);
        return { ok: settle(key, r.expect, onError), value: r.value };
      }
      case "write":
        return { ok: settle(key, write(op.key, key, op.value), onError) };
      case "progress":
        return { ok: settle(key, progress(op.key, key, op.done, op.total), onError) };
      case "close":
        return { ok: settle(key, close(op.key, key), onError) };
    }
  }

  function runOp(op: Op): void {
    switch (op.op) {
      case "step":
      case "write":
      case "progress":
      case "close":
        runFirst(op, op.onError, closed);
        return;
      case "around": {
        // The step's writes run after the write of `before` was made (the body starts after an await).
        const closedBefore = new Set(closed);
        const b = write(op.key, `${op.id}:b`, op.before);
        const closedForWrites = new Set([...closedBefore, ...closed]);
        const s = callStep(op.step, closedForWrites);
        if (!settle(`${op.id}:b`, b, op.onError)) return;
        if (!settle(String(op.step.id), s.expect, op.onError)) return;
        settle(`${op.id}:a`, write(op.key, `${op.id}:a`, { $result: s.value }), op.onError);
        return;
      }
      case "burst":
        for (let i = 0; i < op.count; i++) settle(`${op.id}:${i}`, write(op.key, `${op.id}:${i}`, { $big: op.bytes }), "catch");
        return;
      case "all": {
        // Every branch's first call is made before any step body of the group runs.
        const firsts = op.branches.map((b) => b.first);
        // Calls happen in branch order; closes affect later branches' writes at once.
        const results = new Map<number, { ok: boolean; value?: unknown }>();
        const stepsPending: StepOp[] = [];
        for (const f of firsts) {
          if (f.op === "step") stepsPending.push(f);
          else results.set(f.id, runFirst(f, "catch", closed));
        }
        // Step numbers follow the order of ctx.step calls (branch order); their writes see every close of the group.
        const closedForWrites = new Set(closed);
        for (const s of stepsPending) results.set(s.id, runFirst(s, "catch", closedForWrites));
        op.branches.forEach((b, i) => {
          const r = results.get(b.first.id)!;
          if (!r.ok) return;
          for (const [j, t] of b.then.entries()) {
            const tag = `${b.first.id}:t${j}`;
            const value = "result" in t ? { $result: r.value } : t.value;
            if (!settle(tag, write(branchKey(op, i), tag, value), "catch")) return;
          }
        });
        return;
      }
    }
  }

  for (const op of program.ops) {
    runOp(op);
    if (ended) break;
  }
  if (ended) {
    model.end = { status: "ERROR", expect: ended };
  } else if ("throw" in program.end) {
    model.end = { status: "ERROR", expect: thrownExpect(program.end.throw) };
  } else {
    const r = program.end.return;
    // The output is `{ value, outcomes }`: a bad value inside it is refused, undefined included.
    model.end = acceptance(r) === "refused" ? { status: "ERROR", expect: refused("SERIALIZATION") } : { status: "SUCCESS", value: build(r) };
  }
  return model;
}

export function matches(outcome: Outcome | undefined, expect: Expect): boolean {
  if (outcome === undefined) return false;
  if (expect.exact.some((e) => sameOutcome(e, outcome))) return true;
  return "code" in outcome && outcome.code !== undefined && expect.codes.includes(outcome.code);
}

export function sameOutcome(a: Outcome, b: Outcome): boolean {
  return deepEqualJson(a, b);
}

/**
 * Deep equality of JSON values, ignoring object key order (as jsonb does). Iterative: a
 * value nested 100,000 deep (which pgtide may store) must not overflow the stack here.
 */
export function deepEqualJson(a: unknown, b: unknown): boolean {
  const stack: [unknown, unknown][] = [[a, b]];
  while (stack.length > 0) {
    const [x, y] = stack.pop()!;
    if (x === y) continue;
    if (typeof x !== typeof y || x === null || y === null || typeof x !== "object") return false;
    if (Array.isArray(x) !== Array.isArray(y)) return false;
    if (Array.isArray(x)) {
      const yy = y as unknown[];
      if (x.length !== yy.length) return false;
      for (let i = 0; i < x.length; i++) stack.push([x[i], yy[i]]);
      continue;
    }
    const kx = Object.keys(x as object);
    if (kx.length !== Object.keys(y as object).length) return false;
    for (const k of kx) {
      if (!Object.prototype.hasOwnProperty.call(y, k)) return false;
      stack.push([(x as Record<string, unknown>)[k], (y as Record<string, unknown>)[k]]);
    }
  }
  return true;
}

export function printExpect(expect: Expect): string {
  const parts = expect.exact.map((o) => JSON.stringify(o));
  if (expect.codes.length > 0) parts.push(`a PgtideError ${expect.codes.join("|")}`);
  return parts.join(" or ");
}
