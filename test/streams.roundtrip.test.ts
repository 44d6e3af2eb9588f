import { describe, expect, it } from "vitest";
import { collect, gate, openEngine, within } from "./support/engines.js";

describe("a stream written by a workflow", () => {
  it("round-trips strings, numbers, null and nested values, in order, then closes", async () => {
    const engine = await openEngine();
    const values = ["token", 42, null, { a: [1, { b: "c" }], d: true }, [], ""];
    const wf = engine.workflow("write", async (ctx, input: unknown[]) => {
      for (const v of input) await ctx.writeStream("out", v);
      return input.length;
    });
    const handle = await wf.start(values);
    expect(await handle.getResult()).toBe(values.length);
    const read = await engine.readStream(handle.workflowId, "out");
    expect(read).toEqual({ values, closed: true });
    // A second read gives the same answer.
    expect(await engine.readStream(handle.workflowId, "out")).toEqual(read);
  });

  it("delivers each value to a live reader as it is written", async () => {
    const engine = await openEngine();
    const steps = Array.from({ length: 20 }, () => gate());
    const wf = engine.workflow("live", async (ctx) => {
      for (let i = 0; i < steps.length; i++) {
        await ctx.writeStream("n", i);
        await steps[i]!.promise; // the test lets the next write happen once the reader saw this one
      }
    });
    const handle = await wf.start(undefined, { workflowId: "live-1" });
    const seen: number[] = [];
    for await (const value of engine.readStreamAsync<number>(handle.workflowId, "n")) {
      seen.push(value);
      steps[value]!.open();
    }
    expect(seen).toEqual(Array.from({ length: 20 }, (_, i) => i));
    await within(10_000, "workflow end", handle.getResult());
  });

  it("reads from an offset: 0, middle, end, past the end", async () => {
    const engine = await openEngine();
    const wf = engine.workflow("ten", async (ctx) => {
      for (let i = 0; i < 10; i++) await ctx.writeStream("s", i);
    });
    const h = await wf.start();
    await h.getResult();
    const from = (n: number) => collect(engine.readStreamAsync<number>(h.workflowId, "s", { fromOffset: n }));
    expect(await from(0)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(await from(5)).toEqual([5, 6, 7, 8, 9]);
    expect(await from(9)).toEqual([9]);
    expect(await from(10)).toEqual([]);
    expect(await from(1000)).toEqual([]);
  });
});
