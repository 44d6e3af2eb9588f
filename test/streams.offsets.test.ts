import { beforeAll, describe, expect, it } from "vitest";
import { InvalidArgumentError, WorkflowNotFoundError } from "../src/index.js";
import { collect, gate, openEngine, within } from "./support/engines.js";

describe("streams of one workflow, by key", () => {
  it("keeps several keys independent: each has its own offsets from 0 and its own order, however the writes interleave", async () => {
    const engine = await openEngine();
    // a0 b0 a1 c0 b1 a2 c1 b2 a3 …: a write pattern where no key's offsets line up with another's.
    const plan: [string, string][] = [];
    const next = new Map<string, number>();
    for (let i = 0; i < 30; i++) {
      const key = ["a", "b", "a", "c"][i % 4]!;
      const n = next.get(key) ?? 0;
      next.set(key, n + 1);
      plan.push([key, `${key}${n}`]);
    }
    const expected = (key: string) => plan.filter(([k]) => k === key).map(([, v]) => v);
    const go = gate();
    const wf = engine.workflow("interleave", async (ctx) => {
      await go.promise;
      for (const [key, value] of plan) await ctx.writeStream(key, value);
    });
    const h = await wf.start();
    // Live readers on every key, registered before the first write.
    const live = ["a", "b", "c"].map((key) => collect(engine.readStreamEntries<string>(h.workflowId, key)));
    expect(engine.readerCount).toBe(3);
    go.open();
    const [a, b, c] = await within(10_000, "the three live readers", Promise.all(live));
    for (const [key, entries] of [["a", a!], ["b", b!], ["c", c!]] as const) {
      expect(entries.map((e) => e.value)).toEqual(expected(key));
      expect(entries.map((e) => e.offset)).toEqual(expected(key).map((_, i) => i));
    }
    expect(expected("a")).toHaveLength(15);
    expect(expected("b")).toHaveLength(8);
    expect(expected("c")).toHaveLength(7);
    // Read again after the end, per key and from an offset inside each key.
    for (const key of ["a", "b", "c"]) {
      expect(await engine.readStream(h.workflowId, key)).toEqual({ values: expected(key), closed: true });
      expect(await collect(engine.readStreamAsync(h.workflowId, key, { fromOffset: 5 }))).toEqual(expected(key).slice(5));
    }
  });

  it("an explicitly closed key with no values reads as empty and closed, while the workflow is still running", async () => {
    const engine = await openEngine();
    const closed = gate();
    const finish = gate();
    const wf = engine.workflow("empty", async (ctx) => {
      await ctx.closeStream("e");
      closed.open();
      await finish.promise;
    });
    const h = await wf.start();
    await closed.promise;
    expect(await engine.getWorkflow(h.workflowId)).toMatchObject({ status: "PENDING" });
    // Waiting reads end at once: the close is stored, the workflow's end is not needed.
    expect(await within(5000, "readStream of an empty closed stream", engine.readStream(h.workflowId, "e"))).toEqual({
      values: [],
      closed: true,
    });
    expect(await engine.readStream(h.workflowId, "e", { wait: false })).toEqual({ values: [], closed: true });
    expect(await within(5000, "readStreamAsync of an empty closed stream", collect(engine.readStreamAsync(h.workflowId, "e")))).toEqual([]);
    // Past the close too (a resuming client that asks for more than there was).
    expect(await within(5000, "readStream past the close", engine.readStream(h.workflowId, "e", { fromOffset: 3 }))).toEqual({
      values: [],
      closed: true,
    });
    expect(await engine.readStream(h.workflowId, "e", { fromOffset: 3, wait: false })).toEqual({ values: [], closed: true });
    finish.open();
    await h.getResult();
    expect(await engine.readStream(h.workflowId, "e")).toEqual({ values: [], closed: true });
  });

  it("a key the finished workflow never wrote reads as empty and closed", async () => {
    const engine = await openEngine();
    const wf = engine.workflow("writes-one-key", async (ctx) => {
      await ctx.writeStream("written", 1);
    });
    const h = await wf.start();
    await h.getResult();
    expect(await within(5000, "readStream", engine.readStream(h.workflowId, "never"))).toEqual({ values: [], closed: true });
    expect(await engine.readStream(h.workflowId, "never", { wait: false })).toEqual({ values: [], closed: true });
    expect(await within(5000, "readStreamAsync", collect(engine.readStreamAsync(h.workflowId, "never")))).toEqual([]);
    expect(await within(5000, "readStreamEntries", collect(engine.readStreamEntries(h.workflowId, "never", { fromOffset: 7 })))).toEqual([]);
    // The key that was written is unaffected.
    expect(await engine.readStream(h.workflowId, "written")).toEqual({ values: [1], closed: true });
    expect(engine.readerCount).toBe(0);
  });

  it("wait:false returns what is stored now: closed:false on an open stream, closed:true once it is closed", async () => {
    const engine = await openEngine();
    const wrote = gate();
    const close = gate();
    const closedIt = gate();
    const finish = gate();
    const wf = engine.workflow("partial", async (ctx) => {
      for (let i = 0; i < 3; i++) await ctx.writeStream("s", i);
      wrote.open();
      await close.promise;
      await ctx.closeStream("s");
      closedIt.open();
      await finish.promise;
    });
    const h = await wf.start();
    await wrote.promise;
    expect(await engine.readStream(h.workflowId, "s", { wait: false })).toEqual({ values: [0, 1, 2], closed: false });
    expect(await engine.readStream(h.workflowId, "s", { wait: false, fromOffset: 2 })).toEqual({ values: [2], closed: false });
    expect(await engine.readStream(h.workflowId, "s", { wait: false, fromOffset: 3 })).toEqual({ values: [], closed: false });
    expect(await engine.readStream(h.workflowId, "s", { wait: false, fromOffset: 50 })).toEqual({ values: [], closed: false });
    expect(await engine.readStream(h.workflowId, "other", { wait: false })).toEqual({ values: [], closed: false });
    expect(engine.readerCount).toBe(0);

    close.open();
    await closedIt.promise;
    expect(await engine.getWorkflow(h.workflowId)).toMatchObject({ status: "PENDING" });
    expect(await engine.readStream(h.workflowId, "s", { wait: false })).toEqual({ values: [0, 1, 2], closed: true });
    expect(await engine.readStream(h.workflowId, "s", { wait: false, fromOffset: 3 })).toEqual({ values: [], closed: true });
    expect(await engine.readStream(h.workflowId, "s", { wait: false, fromOffset: 50 })).toEqual({ values: [], closed: true });
    // A key of a running workflow that nobody closed is still open.
    expect(await engine.readStream(h.workflowId, "other", { wait: false })).toEqual({ values: [], closed: false });

    finish.open();
    await h.getResult();
    expect(await engine.readStream(h.workflowId, "other", { wait: false })).toEqual({ values: [], closed: true });
  });

  it("readStreamEntries yields {offset, value} with offsets 0..n-1, and k..n-1 from fromOffset k", async () => {
    const engine = await openEngine();
    const values = ["zero", { one: 1 }, [2], null, 4, "five", true];
    const wf = engine.workflow("entries", async (ctx) => {
      for (const v of values) await ctx.writeStream("s", v);
    });
    const h = await wf.start();
    const live = collect(engine.readStreamEntries(h.workflowId, "s"));
    await h.getResult();
    const expected = values.map((value, offset) => ({ offset, value }));
    expect(await within(5000, "live entries", live)).toEqual(expected);
    expect(await collect(engine.readStreamEntries(h.workflowId, "s"))).toEqual(expected);
    expect(await collect(engine.readStreamEntries(h.workflowId, "s", { fromOffset: 4 }))).toEqual(expected.slice(4));
    expect(await collect(engine.readStreamEntries(h.workflowId, "s", { fromOffset: values.length }))).toEqual([]);
  });
});

describe("bad read arguments", () => {
  const bad: [string, unknown][] = [
    ["negative", -1],
    ["fractional", 1.5],
    ["NaN", Number.NaN],
    ["Infinity", Number.POSITIVE_INFINITY],
    ["beyond 2^53", 2 ** 53],
    ["a string", "3"],
  ];

  it.each(bad)("fromOffset %s: readStreamAsync/readStreamEntries return at once and reject their first next(); readStream rejects", async (_, fromOffset) => {
    const engine = await sharedEngine();
    const options = { fromOffset: fromOffset as number };
    // One convention for the whole API: nothing throws synchronously; promises reject, and
    // an async iterator reports a bad option on its first next().
    for (const call of [
      () => engine.readStreamAsync("wf", "k", options),
      () => engine.readStreamEntries("wf", "k", options),
    ]) {
      let iterator: AsyncIterator<unknown> | undefined;
      expect(() => {
        iterator = call();
      }).not.toThrow();
      const first = iterator!.next();
      await expect(first).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(first).rejects.toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringContaining("fromOffset") });
      await expect(iterator!.next()).resolves.toEqual({ done: true, value: undefined });
    }
    // readStream rejects (it does not throw synchronously), whether it would wait or not.
    for (const wait of [true, false]) {
      let promise: Promise<unknown> | undefined;
      expect(() => {
        promise = engine.readStream("wf", "k", { ...options, wait });
      }).not.toThrow();
      await expect(promise).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(promise).rejects.toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringContaining("fromOffset") });
    }
    expect(engine.readerCount).toBe(0);
  });

  it("an unknown workflow rejects with WorkflowNotFoundError from readStream (waiting or not) and from iterating readStreamAsync/readStreamEntries", async () => {
    const engine = await sharedEngine();
    const id = "no-such-workflow";
    for (const wait of [true, false]) {
      const read = engine.readStream(id, "k", { wait });
      await expect(within(5000, `readStream wait:${wait}`, read)).rejects.toBeInstanceOf(WorkflowNotFoundError);
      await expect(read).rejects.toMatchObject({ code: "WORKFLOW_NOT_FOUND", workflowId: id });
    }
    const iterations = [
      () => engine.readStreamAsync(id, "k"),
      () => engine.readStreamAsync(id, "k", { fromOffset: 10 }),
      () => engine.readStreamEntries(id, "k"),
    ];
    for (const iterate of iterations) {
      const iteration = collect(iterate());
      await expect(within(5000, "iterating an unknown workflow's stream", iteration)).rejects.toBeInstanceOf(WorkflowNotFoundError);
      await expect(iteration).rejects.toMatchObject({ code: "WORKFLOW_NOT_FOUND", workflowId: id });
    }
    expect(engine.readerCount).toBe(0);
  });
});

// One engine for the argument checks, opened outside any test so it lives for the file.
let shared: Awaited<ReturnType<typeof openEngine>>;
beforeAll(async () => {
  shared = await openEngine();
});
async function sharedEngine() {
  return shared;
}
