import { describe, expect, it } from "vitest";
import {
  NonDeterminismError, WorkflowCancelledError, WorkflowConflictError, WorkflowHandle, WorkflowNotFoundError,
  type Engine, type WorkflowContext,
} from "../src/index.js";
import { admin, gate, openEngine, within, rejectionOf } from "./support/engines.js";

/** A user error class: a name of its own and an extra property. */
class PaymentDeclined extends Error {
  constructor(message: string, readonly reason: string) {
    super(message);
    this.name = "PaymentDeclined";
  }
}

/** Rows one workflow has in the engine's tables (read directly, not through the engine). */
async function storedRows(engine: Engine, workflowId: string): Promise<{ steps: number; entries: number }> {
  const [row] = await admin.unsafe<{ steps: number; entries: number }[]>(
    `select (select count(*) from "${engine.schema}".step_outputs where workflow_id = $1)::int as steps,
            (select count(*) from "${engine.schema}".stream_entries where workflow_id = $1)::int as entries`,
    [workflowId],
  );
  return row!;
}


describe("starting a workflow and waiting for its result", () => {
  it("start returns a handle on the new workflow, under the id given", async () => {
    const engine = await openEngine();
    const wf = engine.workflow("hello", async (_ctx, name: string) => `hello ${name}`);
    const handle = await wf.start("ann", { workflowId: "hello-1" });
    expect(handle).toBeInstanceOf(WorkflowHandle);
    expect(handle.workflowId).toBe("hello-1");
    expect(await handle.getResult()).toBe("hello ann");
    // Without an id, each start gets a fresh one.
    const a = await wf.start("bob");
    const b = await wf.start("bob");
    expect(a.workflowId).not.toBe(b.workflowId);
    expect(await Promise.all([a.getResult(), b.getResult()])).toEqual(["hello bob", "hello bob"]);
  });

  it("getStatus is PENDING while the function runs and SUCCESS once it returned", async () => {
    const engine = await openEngine();
    const running = gate();
    const finish = gate();
    const wf = engine.workflow("gated", async () => {
      running.open();
      await finish.promise;
      return 1;
    });
    const handle = await wf.start();
    await within(5000, "the workflow to start running", running.promise);
    expect(await handle.getStatus()).toBe("PENDING");
    expect(await handle.getInfo()).toMatchObject({ name: "gated", status: "PENDING", executorId: "local" });
    finish.open();
    expect(await within(10_000, "getResult", handle.getResult())).toBe(1);
    expect(await handle.getStatus()).toBe("SUCCESS");
  });

  it("getResult resolves with the returned value: objects, undefined for a void workflow, null for null", async () => {
    const engine = await openEngine();
    const object = engine.workflow("object", async () => ({ n: 1, list: ["a", null, { deep: true }] }));
    const nothing = engine.workflow("void", async () => {});
    const nul = engine.workflow("null", async () => null);
    const falsy = engine.workflow("zero", async () => 0);
    const [o, v, n, z] = await Promise.all([object.start(), nothing.start(), nul.start(), falsy.start()]);
    expect(await o.getResult()).toEqual({ n: 1, list: ["a", null, { deep: true }] });
    const voidResult = await v.getResult();
    expect(voidResult).toBeUndefined();
    expect(await n.getResult()).toBeNull();
    expect(await z.getResult()).toBe(0);
    expect((await v.getInfo()).output).toBeUndefined();
    expect((await n.getInfo()).output).toBeNull();
  });

  it("the function receives its input as stored (JSON), and no input as undefined", async () => {
    const engine = await openEngine();
    const echo = engine.workflow("echo", async (_ctx, input: unknown) => ({ input: input === undefined ? "none" : input }));
    expect(await (await echo.start({ a: [1, "x"] })).getResult()).toEqual({ input: { a: [1, "x"] } });
    expect(await (await echo.start()).getResult()).toEqual({ input: "none" });
    expect(await (await echo.start(null)).getResult()).toEqual({ input: null });
  });
});

describe("starting an id that already exists", () => {
  it("does not run the function again, and returns a handle on the existing workflow, while it runs and after", async () => {
    const engine = await openEngine();
    let calls = 0;
    const finish = gate();
    const wf = engine.workflow("once", async (_ctx, input: string) => {
      calls++;
      await finish.promise;
      return `ran with ${input}`;
    });
    const first = await wf.start("first", { workflowId: "once-1" });
    const again = await wf.start("second", { workflowId: "once-1" });
    expect(again.workflowId).toBe("once-1");
    finish.open();
    expect(await again.getResult()).toBe("ran with first");
    expect(await first.getResult()).toBe("ran with first");
    const afterEnd = await wf.start("third", { workflowId: "once-1" });
    expect(await afterEnd.getResult()).toBe("ran with first");
    expect(calls).toBe(1);
    const [row] = await admin.unsafe<{ n: number }[]>(
      `select count(*)::int as n from "${engine.schema}".workflow_status where workflow_id = 'once-1'`,
    );
    expect(row!.n).toBe(1);
  });

  it("under another workflow name, rejects with WorkflowConflictError and runs nothing", async () => {
    const engine = await openEngine();
    let otherCalls = 0;
    const a = engine.workflow("a", async () => "a");
    const b = engine.workflow("b", async () => {
      otherCalls++;
      return "b";
    });
    await (await a.start(undefined, { workflowId: "shared-id" })).getResult();
    const error = await rejectionOf(b.start(undefined, { workflowId: "shared-id" }));
    expect(error).toBeInstanceOf(WorkflowConflictError);
    expect(error).toMatchObject({ code: "WORKFLOW_CONFLICT", name: "WorkflowConflictError", workflowId: "shared-id" });
    expect((error as Error).message).toContain('"a"');
    expect((error as Error).message).toContain('"b"');
    expect(otherCalls).toBe(0);
    expect(await engine.getWorkflow("shared-id")).toMatchObject({ name: "a", status: "SUCCESS", output: "a" });
  });
});

describe("a workflow that throws", () => {
  it("ends in ERROR, and getResult rejects with the same built-in class and message", async () => {
    const engine = await openEngine();
    const wf = engine.workflow("type-error", async () => {
      throw new TypeError("expected a number");
    });
    const handle = await wf.start();
    const error = await rejectionOf(handle.getResult());
    expect(error).toBeInstanceOf(TypeError);
    expect(error).toMatchObject({ name: "TypeError", message: "expected a number" });
    expect(await handle.getStatus()).toBe("ERROR");
    expect((await handle.getInfo()).error).toMatchObject({ name: "TypeError", message: "expected a number" });
  });

  it("rebuilds a class listed in errorClasses as an instance of it, with its own properties", async () => {
    const engine = await openEngine({ errorClasses: [PaymentDeclined] });
    const wf = engine.workflow("pay", async () => {
      throw new PaymentDeclined("card declined", "insufficient funds");
    });
    const error = await rejectionOf((await wf.start()).getResult());
    expect(error).toBeInstanceOf(PaymentDeclined);
    expect(error).toBeInstanceOf(Error);
    expect(error).toMatchObject({ name: "PaymentDeclined", message: "card declined", reason: "insufficient funds" });
  });

  it("rebuilds an unlisted class as an Error that keeps the name and message", async () => {
    const engine = await openEngine();
    const wf = engine.workflow("pay", async () => {
      throw new PaymentDeclined("card declined", "expired");
    });
    const error = await rejectionOf((await wf.start()).getResult());
    expect(error).toBeInstanceOf(Error);
    expect(error).not.toBeInstanceOf(PaymentDeclined);
    expect(error).toMatchObject({ name: "PaymentDeclined", message: "card declined", reason: "expired" });
  });

  it("rebuilds pgtide's own errors as their class, with their code", async () => {
    const engine = await openEngine();
    const wf = engine.workflow("rethrow", async () => {
      throw new NonDeterminismError("made up");
    });
    const error = await rejectionOf((await wf.start()).getResult());
    expect(error).toBeInstanceOf(NonDeterminismError);
    expect(error).toMatchObject({ code: "NON_DETERMINISM", message: "made up" });
  });
});

describe("cancelling a workflow", () => {
  /** A workflow that writes once, then (when let go) tries a step and a write and reports what they did. */
  function cancellable(engine: Engine) {
    const waiting = gate();
    const letGo = gate();
    const outcome = gate<{ step: unknown; write: unknown; close: unknown }>();
    let stepCalls = 0;
    let context: WorkflowContext | undefined;
    const wf = engine.workflow("cancellable", async (ctx) => {
      context = ctx;
      await ctx.writeStream("s", "before");
      waiting.open();
      await letGo.promise;
      const step = await rejectionOf(ctx.step("after", () => ++stepCalls));
      const write = await rejectionOf(ctx.writeStream("s", "after"));
      const close = await rejectionOf(ctx.closeStream("s"));
      outcome.open({ step, write, close });
      return "finished anyway";
    });
    return { wf, waiting, letGo, outcome, stepCalls: () => stepCalls, context: () => context! };
  }

  it("sets CANCELLED, makes getResult reject with WorkflowCancelledError, and the function's next step and write reject storing nothing", async () => {
    const engine = await openEngine();
    const c = cancellable(engine);
    const handle = await c.wf.start(undefined, { workflowId: "to-cancel" });
    await within(5000, "the first write", c.waiting.promise);
    const result = rejectionOf(handle.getResult());
    await engine.cancelWorkflow("to-cancel");
    expect(await handle.getStatus()).toBe("CANCELLED");
    const error = await within(5000, "getResult of the cancelled workflow", result);
    expect(error).toBeInstanceOf(WorkflowCancelledError);
    expect(error).toMatchObject({ code: "WORKFLOW_CANCELLED", workflowId: "to-cancel" });
    // The cancel closed the open stream in the same transaction: "before", then the close.
    expect(await engine.readStream("to-cancel", "s")).toEqual({ values: ["before"], closed: true });
    const stored = await storedRows(engine, "to-cancel");
    expect(stored).toEqual({ steps: 0, entries: 2 });

    c.letGo.open();
    const { step, write, close } = await within(5000, "the function's attempts after the cancel", c.outcome.promise);
    for (const attempt of [step, write, close]) {
      expect(attempt).toBeInstanceOf(WorkflowCancelledError);
      expect(attempt).toMatchObject({ code: "WORKFLOW_CANCELLED", workflowId: "to-cancel" });
    }
    expect(c.stepCalls()).toBe(0);
    expect(await storedRows(engine, "to-cancel")).toEqual(stored);
    // The function returned a value, but the workflow stays CANCELLED.
    expect(await engine.getWorkflow("to-cancel")).toMatchObject({ status: "CANCELLED", output: undefined });
    // The context stays unusable afterwards.
    await expect(c.context().writeStream("s", "later")).rejects.toBeInstanceOf(WorkflowCancelledError);
    expect(await storedRows(engine, "to-cancel")).toEqual(stored);
  });

  it("from another engine on the same schema, stops the runner at its next step or write, storing nothing", async () => {
    const runner = await openEngine({ executorId: "runner" });
    const other = await openEngine({ schema: runner.schema, executorId: "canceller" });
    const c = cancellable(runner);
    const handle = await c.wf.start(undefined, { workflowId: "remote-cancel" });
    await within(5000, "the first write", c.waiting.promise);
    // The runner's engine learns of the cancel through its listener.
    const heard = new Promise<void>((resolve) => {
      runner.on("notification", (n) => {
        if (n.workflowId === "remote-cancel" && "status" in n && n.status === "CANCELLED") resolve();
      });
    });
    await other.cancelWorkflow("remote-cancel");
    await within(5000, "the runner's engine to hear of the cancel", heard);
    const stored = await storedRows(runner, "remote-cancel");
    expect(stored).toEqual({ steps: 0, entries: 2 });
    c.letGo.open();
    const { step, write } = await within(5000, "the function's attempts after the cancel", c.outcome.promise);
    expect(step).toBeInstanceOf(WorkflowCancelledError);
    expect(write).toBeInstanceOf(WorkflowCancelledError);
    expect(c.stepCalls()).toBe(0);
    expect(await storedRows(runner, "remote-cancel")).toEqual(stored);
    await expect(handle.getResult()).rejects.toBeInstanceOf(WorkflowCancelledError);
    expect(await handle.getStatus()).toBe("CANCELLED");
  });

  it("leaves a finished workflow as it is", async () => {
    const engine = await openEngine();
    const wf = engine.workflow("done", async () => "result");
    const handle = await wf.start();
    await handle.getResult();
    await engine.cancelWorkflow(handle.workflowId);
    expect(await handle.getStatus()).toBe("SUCCESS");
    expect(await handle.getResult()).toBe("result");
  });

  it("of an unknown id rejects with WorkflowNotFoundError", async () => {
    const engine = await openEngine();
    const error = await rejectionOf(engine.cancelWorkflow("no-such-workflow"));
    expect(error).toBeInstanceOf(WorkflowNotFoundError);
    expect(error).toMatchObject({ code: "WORKFLOW_NOT_FOUND", workflowId: "no-such-workflow" });
  });
});

describe("handles from another engine on the same schema", () => {
  it("retrieveWorkflow of an existing id gives its status, info and result", async () => {
    const engine = await openEngine({ executorId: "exec-a" });
    const other = await openEngine({ schema: engine.schema, executorId: "exec-b" });
    const wf = engine.workflow("elsewhere", async (_ctx, n: number) => n * 2);
    await (await wf.start(21, { workflowId: "shared" })).getResult();
    const handle = other.retrieveWorkflow<number>("shared");
    expect(handle.workflowId).toBe("shared");
    expect(await handle.getStatus()).toBe("SUCCESS");
    expect(await handle.getInfo()).toMatchObject({ name: "elsewhere", executorId: "exec-a", status: "SUCCESS", output: 42 });
    expect(await handle.getResult()).toBe(42);
  });

  it("a handle on an unknown id rejects with WorkflowNotFoundError on use", async () => {
    const engine = await openEngine();
    const handle = engine.retrieveWorkflow("nobody");
    await expect(handle.getStatus()).rejects.toBeInstanceOf(WorkflowNotFoundError);
    await expect(handle.getResult()).rejects.toBeInstanceOf(WorkflowNotFoundError);
  });

  it("getResult from another engine waits and is woken when the workflow ends", async () => {
    const engine = await openEngine({ executorId: "exec-a" });
    const other = await openEngine({ schema: engine.schema, executorId: "exec-b" });
    const running = gate();
    const finish = gate<string>();
    const wf = engine.workflow("slow", async () => {
      running.open();
      return finish.promise;
    });
    await wf.start(undefined, { workflowId: "slow-1" });
    await within(5000, "the workflow to run", running.promise);
    let settled = false;
    const result = other.retrieveWorkflow<string>("slow-1").getResult().finally(() => {
      settled = true;
    });
    // The waiter is registered and has read PENDING; nothing has ended it yet.
    expect(await other.retrieveWorkflow("slow-1").getStatus()).toBe("PENDING");
    expect(settled).toBe(false);
    finish.open("done at last");
    expect(await within(10_000, "the other engine's getResult", result)).toBe("done at last");
  });

  it("getResult from another engine rejects with the workflow's error", async () => {
    const engine = await openEngine({ executorId: "exec-a", errorClasses: [PaymentDeclined] });
    const other = await openEngine({ schema: engine.schema, executorId: "exec-b", errorClasses: [PaymentDeclined] });
    const finish = gate();
    const wf = engine.workflow("fails", async () => {
      await finish.promise;
      throw new PaymentDeclined("no", "limit");
    });
    await wf.start(undefined, { workflowId: "fails-1" });
    const result = rejectionOf(other.retrieveWorkflow("fails-1").getResult());
    finish.open();
    const error = await within(10_000, "the other engine's getResult", result);
    expect(error).toBeInstanceOf(PaymentDeclined);
    expect(error).toMatchObject({ message: "no", reason: "limit" });
  });
});
