import { describe, expect, it, onTestFinished } from "vitest";
import type { Engine } from "../src/index.js";
import { admin, collect, gate, openEngine, within } from "./support/engines.js";

const READERS = 1000;
const POOL_SIZE = 2;

/** This engine's connections, by role, as Postgres sees them. */
async function connections(engine: Engine): Promise<{ listener: number; pool: number }> {
  const [row] = await admin<{ listener: number; pool: number }[]>`
    select count(*) filter (where application_name = ${engine.applicationName("listener")})::int as listener,
           count(*) filter (where application_name = ${engine.applicationName("pool")})::int as pool
    from pg_stat_activity`;
  return row!;
}

/** Resolves once `count` calls to the returned tick function have been made. */
function countdown(count: number): { tick: () => void; done: Promise<void> } {
  const g = gate();
  let left = count;
  return {
    tick: () => {
      if (--left === 0) g.open();
    },
    done: g.promise,
  };
}

describe("many readers of one stream in one process", () => {
  it(`${READERS} readers each receive every value in order, over one listener connection and at most ${POOL_SIZE} pool connections`, async () => {
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`);
    process.on("warning", onWarning);
    onTestFinished(() => void process.off("warning", onWarning));
    const engine = await openEngine({ poolSize: POOL_SIZE });
    const half = gate();
    const rest = gate();
    const wf = engine.workflow("fanout", async (ctx) => {
      for (let i = 0; i < 10; i++) await ctx.writeStream("s", i);
      half.open();
      await rest.promise;
      for (let i = 10; i < 20; i++) await ctx.writeStream("s", i);
    });
    const h = await wf.start();
    const sawHalf = countdown(READERS);
    const received: number[][] = [];
    const readers = Array.from({ length: READERS }, async () => {
      const seen: number[] = [];
      received.push(seen);
      for await (const value of engine.readStreamAsync<number>(h.workflowId, "s")) {
        seen.push(value);
        if (seen.length === 10) sawHalf.tick();
      }
      return seen;
    });
    expect(engine.readerCount).toBe(READERS);

    // Every reader has had the first ten values and waits for the eleventh.
    await within(15_000, "all readers to see the first half", Promise.all([half.promise, sawHalf.done]));
    expect(engine.readerCount).toBe(READERS);
    expect(received.every((seen) => seen.length === 10)).toBe(true);
    // One LISTEN connection serves them all. (The one shared query per wake-up is not
    // counted here: pg_stat_statements is not available, and table statistics reach
    // pg_stat_user_tables only after up to 10 s.)
    const waiting = await connections(engine);
    expect(waiting.listener).toBe(1);
    expect(waiting.pool).toBeLessThanOrEqual(POOL_SIZE);

    rest.open();
    const all = await within(15_000, "all readers to reach the close", Promise.all(readers));
    const expected = Array.from({ length: 20 }, (_, i) => i);
    for (const seen of all) expect(seen).toEqual(expected);
    expect(engine.readerCount).toBe(0);
    const after = await connections(engine);
    expect(after.listener).toBe(1);
    expect(after.pool).toBeLessThanOrEqual(POOL_SIZE);
    await h.getResult();
    // So many waiting readers are normal, not a listener leak to warn about.
    expect(warnings.filter((w) => w.startsWith("MaxListenersExceededWarning"))).toEqual([]);
  });
});

describe("a reader that stops early frees itself", () => {
  it("aborting its signal rejects the iteration with the abort reason, promptly, and unregisters the reader", async () => {
    const engine = await openEngine();
    const wrote = gate();
    const finish = gate();
    const wf = engine.workflow("open-stream", async (ctx) => {
      await ctx.writeStream("s", "first");
      wrote.open();
      await finish.promise;
    });
    const h = await wf.start();
    await wrote.promise;

    // One reader waiting for a second value, 99 others on the same stream that are not aborted.
    const controller = new AbortController();
    const iterator = engine.readStreamAsync<string>(h.workflowId, "s", { signal: controller.signal });
    expect(await iterator.next()).toEqual({ done: false, value: "first" });
    const waiting = iterator.next();
    const others = Array.from({ length: 99 }, () => collect(engine.readStreamAsync<string>(h.workflowId, "s")));
    // A readStream and a readStreamEntries with their own signals, waiting too.
    const controller2 = new AbortController();
    const readAll = engine.readStream(h.workflowId, "s", { signal: controller2.signal });
    const controller3 = new AbortController();
    const entries = collect(engine.readStreamEntries(h.workflowId, "s", { signal: controller3.signal }));
    expect(engine.readerCount).toBe(102);

    const reason = new Error("the client went away");
    const started = performance.now();
    controller.abort(reason);
    await expect(within(1000, "the aborted iteration to reject", waiting)).rejects.toBe(reason);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(engine.readerCount).toBe(101);
    // The generator is finished: a further next() is done.
    expect(await iterator.next()).toEqual({ done: true, value: undefined });

    const reason2 = new Error("stop readStream");
    controller2.abort(reason2);
    await expect(within(1000, "readStream to reject", readAll)).rejects.toBe(reason2);
    controller3.abort("a string reason");
    await expect(within(1000, "readStreamEntries to reject", entries)).rejects.toBe("a string reason");
    expect(engine.readerCount).toBe(99);

    // The others were not disturbed and still get the rest.
    finish.open();
    for (const seen of await within(5000, "the other readers", Promise.all(others))) expect(seen).toEqual(["first"]);
    expect(engine.readerCount).toBe(0);
  });

  it("a signal aborted before the read rejects at once and registers nothing", async () => {
    const engine = await openEngine();
    const wf = engine.workflow("done", async (ctx) => {
      await ctx.writeStream("s", 1);
    });
    const h = await wf.start();
    await h.getResult();
    const reason = new Error("already gone");
    const signal = AbortSignal.abort(reason);
    await expect(within(1000, "readStreamAsync", collect(engine.readStreamAsync(h.workflowId, "s", { signal })))).rejects.toBe(reason);
    await expect(within(1000, "readStream", engine.readStream(h.workflowId, "s", { signal }))).rejects.toBe(reason);
    expect(engine.readerCount).toBe(0);
  });

  it("breaking out of for-await unregisters the reader at once, for readStreamAsync and readStreamEntries", async () => {
    const engine = await openEngine();
    const wrote = gate();
    const finish = gate();
    const wf = engine.workflow("open-stream", async (ctx) => {
      for (let i = 0; i < 5; i++) await ctx.writeStream("s", i);
      wrote.open();
      await finish.promise;
    });
    const h = await wf.start();
    await wrote.promise;

    // Ten readers stop after three values, in the middle of a page; ten at the last stored value.
    const stopAt = async (n: number, entries: boolean) => {
      const seen: unknown[] = [];
      const source = entries
        ? engine.readStreamEntries<number>(h.workflowId, "s")
        : engine.readStreamAsync<number>(h.workflowId, "s");
      for await (const item of source) {
        seen.push(item);
        if (seen.length === n) break;
      }
      return seen;
    };
    const stopped = [
      ...Array.from({ length: 5 }, () => stopAt(3, false)),
      ...Array.from({ length: 5 }, () => stopAt(3, true)),
      ...Array.from({ length: 5 }, () => stopAt(5, false)),
      ...Array.from({ length: 5 }, () => stopAt(5, true)),
    ];
    expect(engine.readerCount).toBe(20);
    const results = await within(5000, "readers that break", Promise.all(stopped));
    expect(results.slice(0, 5)).toEqual(Array(5).fill([0, 1, 2]));
    expect(results.slice(5, 10)).toEqual(Array(5).fill([0, 1, 2].map((value, offset) => ({ offset, value }))));
    expect(results.slice(10, 15)).toEqual(Array(5).fill([0, 1, 2, 3, 4]));
    expect(results.slice(15)).toEqual(Array(5).fill([0, 1, 2, 3, 4].map((value, offset) => ({ offset, value }))));
    expect(engine.readerCount).toBe(0);

    // Also when the consumer returns the iterator itself.
    const iterator = engine.readStreamAsync<number>(h.workflowId, "s");
    expect(await iterator.next()).toEqual({ done: false, value: 0 });
    expect(engine.readerCount).toBe(1);
    expect(await iterator.return()).toEqual({ done: true, value: undefined });
    expect(engine.readerCount).toBe(0);

    finish.open();
    await h.getResult();
  });
});
