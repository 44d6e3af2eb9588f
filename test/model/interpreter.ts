// The one workflow function every generated program runs on. Its input is the program
// (JSON), so any process that registers it can recover any case. It calls hooks as it
// goes, which is how the harness injects faults at chosen points of a program's progress
// and records what happened; the hooks never change which ctx calls are made or their
// order (a hook may delay the workflow at a top-level op, where nothing runs beside it).
import type { Engine, WorkflowContext } from "../../src/index.js";
import { branchKey, type BranchFirst, type OnError, type Op, type Program, type StepOp } from "./program.js";
import { build, codeEntry, describeError, describeOk, makeThrown, stepEntry, type Outcome } from "./values.js";

export const WORKFLOW_NAME = "model";

export interface Hooks {
  /** Top-level op `id` is about to run (`end`: the return or throw). May hold the workflow. */
  op?(id: number, run: string): void | Promise<void>;
  /** A branch's first op is about to run: must not hold (branch order is program order). */
  branch?(id: number, run: string): void;
  /** Attempt `attempt` of step op `id` has started (its body's first line). May hold it. */
  body?(id: number, attempt: number, token: string, run: string): void | Promise<void>;
  /** Attempt `attempt` of step op `id` is about to throw. */
  fail?(id: number, attempt: number, run: string): void;
  outcome?(key: string, outcome: Outcome, run: string): void;
  /** The workflow function began, or ended (returned or threw). */
  run?(event: "start" | "end", run: string, detail?: Outcome): void;
}

/** The op id that stands for the program's end (after every op). */
export function endId(program: Program): number {
  let n = 0;
  const count = (op: Op) => {
    n++;
    if (op.op === "around") count(op.step);
    if (op.op === "all") for (const b of op.branches) count(b.first);
  };
  program.ops.forEach(count);
  return n;
}

type Attempt<T> = { ok: true; value: T } | { ok: false; error: unknown };

export async function interpret(
  ctx: WorkflowContext, program: Program, hooks: Hooks, run: string,
): Promise<{ value: unknown; outcomes: Record<string, Outcome> }> {
  const outcomes: Record<string, Outcome> = {};
  const note = (key: string, outcome: Outcome) => {
    outcomes[key] = outcome;
    hooks.outcome?.(key, outcome, run);
  };

  /** Calls `call` at once (the ctx call is made synchronously) and notes how it settles. */
  async function attempt<T>(key: string, call: () => Promise<T>, onError: OnError): Promise<Attempt<T>> {
    try {
      const value = await call();
      note(key, describeOk(value));
      return { ok: true, value };
    } catch (error) {
      note(key, describeError(error));
      if (onError === "propagate") throw error;
      return { ok: false, error };
    }
  }

  function body(s: StepOp): () => Promise<unknown> {
    let attempts = 0;
    return async () => {
      const a = attempts++;
      const token = `${run}.${s.id}.${a}`;
      await hooks.body?.(s.id, a, token, run);
      for (const [j, w] of s.writes.entries()) await ctx.writeStream(w.key, stepEntry(s.id, j, token, w.value));
      if (a < s.fails) {
        hooks.fail?.(s.id, a, run);
        throw new Error(`attempt ${a} of ${s.name} failed`);
      }
      if ("throw" in s.does) {
        hooks.fail?.(s.id, a, run);
        throw makeThrown(s.does.throw);
      }
      return build(s.does.return);
    };
  }

  const step = (s: StepOp) =>
    ctx.step(s.name, body(s), s.retries === undefined ? undefined : { retries: s.retries, retryDelayMs: s.retryDelayMs ?? 0 });

  function first(op: BranchFirst, onError: OnError): Promise<Attempt<unknown>> {
    const key = String(op.id);
    switch (op.op) {
      case "step":
        return attempt(key, () => step(op), onError);
      case "write":
        return attempt(key, () => ctx.writeStream(op.key, codeEntry(key, op.value)), onError);
      case "progress":
        return attempt(key, () => ctx.writeProgress(op.key, { done: op.done, total: op.total, label: `op:${key}` }), onError);
      case "close":
        return attempt(key, () => ctx.closeStream(op.key), onError);
    }
  }

  async function runOp(op: Op): Promise<void> {
    switch (op.op) {
      case "step":
      case "write":
      case "progress":
      case "close":
        await first(op, op.onError);
        return;
      case "around": {
        // const p = ctx.step(…); await ctx.writeStream(key, before); await ctx.writeStream(key, await p)
        const p = step(op.step);
        const settled = p.then(
          (value): Attempt<unknown> => ({ ok: true, value }),
          (error: unknown): Attempt<unknown> => ({ ok: false, error }),
        );
        const before = await attempt(`${op.id}:b`, () => ctx.writeStream(op.key, codeEntry(`${op.id}:b`, op.before)), op.onError);
        if (!before.ok) return;
        const s = await settled;
        note(String(op.step.id), s.ok ? describeOk(s.value) : describeError(s.error));
        if (!s.ok) {
          if (op.onError === "propagate") throw s.error;
          return;
        }
        await attempt(`${op.id}:a`, () => ctx.writeStream(op.key, codeEntry(`${op.id}:a`, s.value as never)), op.onError);
        return;
      }
      case "burst":
        await Promise.all(
          Array.from({ length: op.count }, (_, i) => {
            const tag = `${op.id}:${i}`;
            return attempt(tag, () => ctx.writeStream(op.key, codeEntry(tag, { $big: op.bytes })), "catch");
          }),
        );
        return;
      case "all":
        await Promise.all(
          op.branches.map(async (b, i) => {
            hooks.branch?.(b.first.id, run);
            const r = await first(b.first, "catch");
            if (!r.ok) return;
            for (const [j, t] of b.then.entries()) {
              const tag = `${b.first.id}:t${j}`;
              const value = "result" in t ? (r.value as never) : t.value;
              const w = await attempt(tag, () => ctx.writeStream(branchKey(op, i), codeEntry(tag, value)), "catch");
              if (!w.ok) return;
            }
          }),
        );
        return;
    }
  }

  hooks.run?.("start", run);
  try {
    for (const op of program.ops) {
      const held = hooks.op?.(op.id, run);
      if (held) await held;
      await runOp(op);
    }
    const held = hooks.op?.(endId(program), run);
    if (held) await held;
    if ("throw" in program.end) throw makeThrown(program.end.throw);
    const result = { value: build(program.end.return), outcomes };
    hooks.run?.("end", run, { undef: true });
    return result;
  } catch (error) {
    hooks.run?.("end", run, describeError(error));
    throw error;
  }
}

let runs = 0;

/**
 * Registers the interpreter on `engine` as workflow "model". `hooksFor` gives the hooks
 * of a workflow id (the harness's registry); `label` names the engine in run ids.
 */
export function registerInterpreter(engine: Engine, label: string, hooksFor: (workflowId: string) => Hooks) {
  return engine.workflow<Program, { value: unknown; outcomes: Record<string, Outcome> }>(WORKFLOW_NAME, (ctx, program) =>
    interpret(ctx, program, hooksFor(ctx.workflowId), `${label}#${++runs}`),
  );
}
