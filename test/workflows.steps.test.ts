import { describe, expect, it } from "vitest";
import { InvalidArgumentError, NonDeterminismError, type Engine } from "../src/index.js";
import { admin, gate, openEngine, within, rejectionOf } from "./support/engines.js";

class QuotaExceeded extends Error {
  constructor(message: string, readonly limit: number) {
    super(message);
    this.name = "QuotaExceeded";
  }
}

interface StepOutputRow {
  step_id: number;
  name: string;
  output: unknown;
  error: { name: string; message: string } | null;
}

function stepRows(engine: Engine, workflowId: string): Promise<StepOutputRow[]> {
  return admin.unsafe<StepOutputRow[]>(
    `select step_id, name, output, error from "${engine.schema}".step_outputs where workflow_id = $1 order by step_id`,
    [workflowId],
  );
}

async function entryCount(engine: Engine, workflowId: string, key: string): Promise<{ values: number; closes: number }> {
  const [row] = await admin.unsafe<{ values: number; closes: number }[]>(
    `select count(*) filter (where not closed)::int as values, count(*) filter (where closed)::int as closes
     from "${engine.schema}".stream_entries where workflow_id = $1 and key = $2`,
    [workflowId, key],
  );
  return row!;
}


/** A second engine on the first one's data, as the same executor: what a restart looks like. */
async function restart(engine: Engine, options: Parameters<typeof openEngine>[0] = {}): Promise<Engine> {
  await engine.close();
  return openEngine({ ...options, schema: engine.schema, executorId: engine.executorId });
}

describe("a step's outcome is stored", () => {
  it("before the step returns: its output row is there when workflow code gets the value", async () => {
    const engine = await openEngine();
    const seen: StepOutputRow[][] = [];
    const wf = engine.workflow("two-steps", async (ctx) => {
      const a = await ctx.step("fetch", () => ({ user: "ann", tags: ["x"] }));
      seen.push(await stepRows(engine, ctx.workflowId));
      const b = await ctx.step("count", async () => a.tags.length + 1);
      seen.push(await stepRows(engine, ctx.workflowId));
      const c = await ctx.step("nothing", () => undefined);
      seen.push(await stepRows(engine, ctx.workflowId));
      return { a, b, c: c === undefined ? "undefined" : c };
    });
    const handle = await wf.start();
    expect(await handle.getResult()).toEqual({ a: { user: "ann", tags: ["x"] }, b: 2, c: "undefined" });
    expect(seen[0]).toEqual([{ step_id: 0, name: "fetch", output: { user: "ann", tags: ["x"] }, error: null }]);
    expect(seen[1]).toEqual([
      { step_id: 0, name: "fetch", output: { user: "ann", tags: ["x"] }, error: null },
      { step_id: 1, name: "count", output: 2, error: null },
    ]);
    expect(seen[2]![2]).toEqual({ step_id: 2, name: "nothing", output: null, error: null });
  });

  it("a step that throws stores its error, and a replay throws the same class and message without calling the function", async () => {
    const first = await openEngine({ errorClasses: [QuotaExceeded] });
    const held = gate();
    let firstCalls = 0;
    const stepsOf = (count: () => void) => [
      () => {
        count();
        throw new TypeError("not a number");
      },
      () => {
        count();
        throw new QuotaExceeded("too many", 10);
      },
    ] as const;
    const caught: unknown[] = [];
    const [typeStep, quotaStep] = stepsOf(() => firstCalls++);
    await first.workflow("failing-steps", async (ctx) => {
      caught.push(await rejectionOf(ctx.step("parse", typeStep)));
      caught.push(await rejectionOf(ctx.step("charge", quotaStep)));
      held.open();
      await new Promise(() => {}); // never ends under this engine
    }).start(undefined, { workflowId: "fs-1" });
    await within(5000, "both steps to fail", held.promise);
    expect(firstCalls).toBe(2);
    expect(caught[0]).toBeInstanceOf(TypeError);
    expect(caught[1]).toBeInstanceOf(QuotaExceeded);
    const rows = await stepRows(first, "fs-1");
    expect(rows).toMatchObject([
      { step_id: 0, name: "parse", output: null, error: { name: "TypeError", message: "not a number" } },
      { step_id: 1, name: "charge", output: null, error: { name: "QuotaExceeded", message: "too many" } },
    ]);

    // Recovery replays both steps from their stored errors.
    const second = await restart(first, { errorClasses: [QuotaExceeded] });
    let secondCalls = 0;
    const [typeStep2, quotaStep2] = stepsOf(() => secondCalls++);
    const replayed = gate<unknown[]>();
    second.workflow("failing-steps", async (ctx) => {
      const errors = [await rejectionOf(ctx.step("parse", typeStep2)), await rejectionOf(ctx.step("charge", quotaStep2))];
      replayed.open(errors);
      return "recovered";
    });
    await second.launch();
    const [parse, charge] = await within(10_000, "the replayed steps", replayed.promise);
    expect(secondCalls).toBe(0);
    expect(parse).toBeInstanceOf(TypeError);
    expect(parse).toMatchObject({ name: "TypeError", message: "not a number" });
    expect(charge).toBeInstanceOf(QuotaExceeded);
    expect(charge).toMatchObject({ name: "QuotaExceeded", message: "too many", limit: 10 });
    expect(await second.retrieveWorkflow("fs-1").getResult()).toBe("recovered");
    expect(await stepRows(second, "fs-1")).toHaveLength(2);
  });

  it("a replayed step returns its stored output without calling the function", async () => {
    const first = await openEngine();
    const held = gate();
    await first.workflow("replay-output", async (ctx) => {
      await ctx.step("pick", () => ({ chosen: 7 }));
      held.open();
      await new Promise(() => {});
    }).start(undefined, { workflowId: "ro-1" });
    await within(5000, "the step", held.promise);
    const second = await restart(first);
    let calls = 0;
    second.workflow("replay-output", async (ctx) => {
      const picked = await ctx.step("pick", () => {
        calls++;
        return { chosen: -1 };
      });
      return picked;
    });
    await second.launch();
    expect(await within(10_000, "the recovered result", second.retrieveWorkflow("ro-1").getResult())).toEqual({ chosen: 7 });
    expect(calls).toBe(0);
  });
});

describe("a step another run of the workflow recorded first", () => {
  it("keeps the recorded outcome: the workflow goes on with it and succeeds", async () => {
    // As when a killed worker's session commits a step's output after a new process
    // started running the same step: the first record wins, for both runs.
    const engine = await openEngine();
    const inStep = gate();
    const release = gate();
    const wf = engine.workflow("late-record", async (ctx) => {
      const value = await ctx.step("compute", async () => {
        inStep.open();
        await release.promise;
        return "from this run";
      });
      await ctx.writeStream("out", value);
      return value;
    });
    const handle = await wf.start(undefined, { workflowId: "late-record-1" });
    await within(5000, "the step to start", inStep.promise);
    await admin.unsafe(
      `insert into "${engine.schema}".step_outputs (workflow_id, step_id, name, output) values ($1, 0, 'compute', '"from the other run"')`,
      [handle.workflowId],
    );
    release.open();
    expect(await within(5000, "the result", handle.getResult())).toBe("from the other run");
    expect((await engine.readStream(handle.workflowId, "out")).values).toEqual(["from the other run"]);
  });
});

describe("step retries", () => {
  it("a step failing twice then succeeding runs 3 times with { retries: 2 } and stores only the success", async () => {
    const engine = await openEngine();
    let attempts = 0;
    const wf = engine.workflow("flaky", async (ctx) =>
      ctx.step("flaky-call", () => {
        attempts++;
        if (attempts < 3) throw new Error(`attempt ${attempts} failed`);
        return `ok after ${attempts}`;
      }, { retries: 2, retryDelayMs: 1 }),
    );
    const handle = await wf.start();
    expect(await handle.getResult()).toBe("ok after 3");
    expect(attempts).toBe(3);
    expect(await stepRows(engine, handle.workflowId)).toEqual([
      { step_id: 0, name: "flaky-call", output: "ok after 3", error: null },
    ]);
  });

  it("a step still failing after its retries stores the last error, after 1 + retries attempts", async () => {
    const engine = await openEngine();
    let attempts = 0;
    const wf = engine.workflow("broken", async (ctx) =>
      ctx.step("always-fails", () => {
        attempts++;
        throw new RangeError(`attempt ${attempts}`);
      }, { retries: 2, retryDelayMs: 1 }),
    );
    const handle = await wf.start();
    const error = await rejectionOf(handle.getResult());
    expect(error).toBeInstanceOf(RangeError);
    expect(error).toMatchObject({ message: "attempt 3" });
    expect(attempts).toBe(3);
    expect(await stepRows(engine, handle.workflowId)).toMatchObject([
      { step_id: 0, name: "always-fails", output: null, error: { name: "RangeError", message: "attempt 3" } },
    ]);
  });

  it("writes from inside a retried step are at-least-once: each attempt's write stays in the stream", async () => {
    const engine = await openEngine();
    let attempts = 0;
    const wf = engine.workflow("chatty", async (ctx) => {
      const result = await ctx.step("try", async () => {
        attempts++;
        await ctx.writeStream("log", `attempt-${attempts}`);
        if (attempts <= 2) throw new Error(`attempt ${attempts} failed`);
        return attempts;
      }, { retries: 2, retryDelayMs: 1 });
      await ctx.writeStream("log", "after the step");
      return result;
    });
    const handle = await wf.start();
    expect(await handle.getResult()).toBe(3);
    expect(await entryCount(engine, handle.workflowId, "log")).toEqual({ values: 4, closes: 1 });
    const entries = await admin.unsafe<{ offset: number; value: unknown; closed: boolean }[]>(
      `select "offset"::int as offset, value, closed from "${engine.schema}".stream_entries
       where workflow_id = $1 and key = 'log' order by "offset"`,
      [handle.workflowId],
    );
    expect(entries).toEqual([
      { offset: 0, value: "attempt-1", closed: false },
      { offset: 1, value: "attempt-2", closed: false },
      { offset: 2, value: "attempt-3", closed: false },
      { offset: 3, value: "after the step", closed: false },
      { offset: 4, value: null, closed: true },
    ]);
    expect(await engine.readStream(handle.workflowId, "log")).toEqual({
      values: ["attempt-1", "attempt-2", "attempt-3", "after the step"],
      closed: true,
    });
  });

  it("refuses a retries option that is not a non-negative integer, before running anything", async () => {
    const engine = await openEngine();
    let calls = 0;
    const wf = engine.workflow("bad-retries", async (ctx) => {
      const errors: unknown[] = [];
      for (const retries of [-1, 1.5, Number.NaN]) {
        errors.push(await rejectionOf(ctx.step("s", () => ++calls, { retries })));
      }
      return errors.map((e) => (e as InvalidArgumentError).code);
    });
    const handle = await wf.start();
    expect(await handle.getResult()).toEqual(["INVALID_ARGUMENT", "INVALID_ARGUMENT", "INVALID_ARGUMENT"]);
    expect(calls).toBe(0);
    expect(await stepRows(engine, handle.workflowId)).toEqual([]);
  });
});

describe("replaying a workflow whose code changed", () => {
  it("a differently named step at a recorded position throws NonDeterminismError and the workflow ends in ERROR", async () => {
    const first = await openEngine();
    const held = gate();
    await first.workflow("changing", async (ctx) => {
      await ctx.step("load", () => 1);
      await ctx.step("transform", () => 2);
      held.open();
      await new Promise(() => {});
    }).start(undefined, { workflowId: "nd-1" });
    await within(5000, "the recorded steps", held.promise);

    const second = await restart(first);
    const calls: string[] = [];
    const thrown = gate<unknown>();
    second.workflow("changing", async (ctx) => {
      await ctx.step("load", () => calls.push("load"));
      try {
        await ctx.step("validate", () => calls.push("validate")); // was "transform" at position 1
      } catch (error) {
        thrown.open(error);
        throw error;
      }
    });
    await second.launch();
    const error = await within(10_000, "the replay to diverge", thrown.promise);
    expect(error).toBeInstanceOf(NonDeterminismError);
    expect(error).toMatchObject({ code: "NON_DETERMINISM" });
    expect((error as Error).message).toContain('"transform"');
    expect((error as Error).message).toContain('"validate"');
    expect(calls).toEqual([]);
    const result = await rejectionOf(second.retrieveWorkflow("nd-1").getResult());
    expect(result).toBeInstanceOf(NonDeterminismError);
    expect(await second.retrieveWorkflow("nd-1").getStatus()).toBe("ERROR");
    // Nothing was recorded for the new name.
    expect((await stepRows(second, "nd-1")).map((r) => r.name)).toEqual(["load", "transform"]);
  });
});
