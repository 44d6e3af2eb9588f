// Exactly-once writes from workflow code hold for any deterministic code, concurrent
// promises included: a recovered run stores nothing twice and loses nothing, wherever the
// first run stopped. (A step's recorded stream offsets used to be applied when the replay
// called the step, so a write made while the step ran landed twice.)
import { describe, expect, it } from "vitest";
import type { Engine, WorkflowContext } from "../src/index.js";
import { admin, gate, openEngine, within } from "./support/engines.js";

type Program = (ctx: WorkflowContext, hold: (point: string) => Promise<void>) => Promise<unknown>;

/**
 * Runs `program` until it reaches `stopAt`, closes that engine there (the run is
 * abandoned, the workflow stays PENDING), then recovers it in a new engine that lets
 * every hold pass. Returns the stream "s" as stored, and the result.
 */
async function interruptedAt(program: Program, stopAt: string): Promise<{ stored: unknown[]; result: unknown; stepRuns: string[] }> {
  const stepRuns: string[] = [];
  const first = await openEngine();
  const reached = gate();
  const run = (engine: Engine, holdAt: string | undefined) =>
    engine.workflow("program", (ctx) =>
      program(ctx, async (point) => {
        stepRuns.push(`point ${point}`);
        if (point !== holdAt) return;
        reached.open();
        await new Promise(() => {}); // held until the engine is gone
      }),
    );
  const handle = await run(first, stopAt).start(undefined, { workflowId: `replay-${stopAt}` });
  await within(5000, `the run to reach ${stopAt}`, reached.promise);
  await first.close();

  const second = await openEngine({ schema: first.schema });
  run(second, undefined);
  await second.launch();
  const result = await within(10_000, "the recovered run", second.retrieveWorkflow(handle.workflowId).getResult());
  const rows = await admin.unsafe<{ value: unknown }[]>(
    `select value from "${first.schema}".stream_entries where workflow_id = $1 and key = 's' and not closed order by "offset"`,
    [handle.workflowId],
  );
  const values = await second.readStream(handle.workflowId, "s");
  expect(values).toEqual({ values: rows.map((r) => r.value), closed: true });
  return { stored: rows.map((r) => r.value), result, stepRuns };
}

describe("a recovered run stores each workflow-code write once", () => {
  // The example: a step started before a write and awaited after it.
  const stepAroundWrite: Program = async (ctx, hold) => {
    const p = ctx.step("fetch", async () => {
      await hold("in-step");
      return 42;
    });
    await ctx.writeStream("s", "started");
    await hold("after-started");
    await ctx.writeStream("s", await p);
    await hold("after-value");
    await ctx.writeStream("s", "end");
    await hold("after-end");
    return "ok";
  };

  it.each(["in-step", "after-started", "after-value", "after-end"])(
    "a step started before a write and awaited after it, interrupted %s",
    async (stopAt) => {
      const { stored, result } = await interruptedAt(stepAroundWrite, stopAt);
      expect(stored).toEqual(["started", 42, "end"]);
      expect(result).toBe("ok");
    },
  );

  const promiseAll: Program = async (ctx, hold) => {
    const [a, , b] = await Promise.all([
      ctx.step("a", async () => {
        await hold("in-a");
        return "A";
      }),
      ctx.writeStream("s", "w1"),
      ctx.step("b", () => "B"),
      ctx.writeStream("s", "w2"),
    ]);
    await hold("after-all");
    await Promise.all([ctx.writeStream("s", `${a}${b}`), ctx.step("c", () => "C"), ctx.writeStream("s", "w3")]);
    await hold("after-second-all");
    await ctx.closeStream("s");
    await hold("after-close");
    return [a, b];
  };

  it.each(["in-a", "after-all", "after-second-all", "after-close"])("Promise.all of steps and writes, interrupted %s", async (stopAt) => {
    const { stored, result } = await interruptedAt(promiseAll, stopAt);
    expect(stored).toEqual(["w1", "w2", "AB", "w3"]);
    expect(result).toEqual(["A", "B"]);
  });

  // In-step writes are at-least-once and may interleave; the code's own writes still
  // appear once each, in the order the code made them.
  const inStepAndCode: Program = async (ctx, hold) => {
    const streaming = ctx.step("stream", async () => {
      for (let i = 0; i < 3; i++) await ctx.writeStream("s", `t${i}`);
      await hold("in-step");
      return "streamed";
    });
    await ctx.writeStream("s", "c0");
    await ctx.writeStream("s", "c1");
    await hold("after-c1");
    const done = await streaming;
    await ctx.writeStream("s", done);
    await hold("after-done");
    return done;
  };

  it.each(["in-step", "after-c1", "after-done"])("writes inside a step beside the code's own, interrupted %s", async (stopAt) => {
    const { stored } = await interruptedAt(inStepAndCode, stopAt);
    const code = stored.filter((v) => typeof v === "string" && !v.startsWith("t"));
    expect(code).toEqual(["c0", "c1", "streamed"]);
    const tokens = stored.filter((v) => typeof v === "string" && v.startsWith("t")).join(" ");
    // Each attempt that ran wrote a prefix of t0 t1 t2 (an interrupted one may stop
    // early), and the last one, whose result was stored, all three.
    expect(tokens).toMatch(/^(t0( t1( t2)?)? )*t0 t1 t2$/);
  });
});
