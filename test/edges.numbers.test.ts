// Edge matrix 1, calls: every numeric input of a call — fromOffset (readStream,
// readStreamAsync, readStreamEntries), listWorkflows' limit, a step's retries and
// retryDelayMs, writeProgress' done and total — at 0, 1, MAX_SAFE_INTEGER (+1), −1, NaN,
// ±Infinity, "5", 1.5, −0, 5n, null (and 2^31 − 1, 2^31 for the timer). A value refused
// is an InvalidArgumentError naming the input, with nothing written (row counts before
// and after); a value accepted does what the README says.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InvalidArgumentError, WorkflowCancelledError, type Engine, type Progress } from "../src/index.js";
import {
  counts, expectRefusal, MAX_TIMER_MS, NUMBERS, outcome, startProbe, TIMER_NUMBERS, watchTimers,
  type Outcome, type Probe,
} from "./edges.support.js";
import { collect, openEngine, within } from "./support/engines.js";

let engine: Engine;
let probe: Probe;
/** A finished workflow whose stream "s" holds "a", "b", "c" and its close. */
let doneId: string;
const VALUES = ["a", "b", "c"];

beforeAll(async () => {
  engine = await openEngine();
  const abc = engine.workflow("abc", async (ctx) => {
    for (const v of VALUES) await ctx.writeStream("s", v);
    return "done";
  });
  const handle = await abc.start();
  await handle.getResult();
  doneId = handle.workflowId;
  probe = await startProbe(engine);
});

afterAll(() => probe.stop());

type Verdict = "accept" | "refuse";
const verdict = (table: Record<string, Verdict>) => (label: string): Verdict => table[label] ?? "refuse";

describe("fromOffset", () => {
  // A safe non-negative integer: −0 is 0. Anything else is refused.
  const expected = verdict({ "0": "accept", "1": "accept", MAX_SAFE_INTEGER: "accept", "-0": "accept" });
  const readers = [
    ["readStream", (o: object) => engine.readStream(doneId, "s", o)],
    ["readStream wait:false", (o: object) => engine.readStream(doneId, "s", { ...o, wait: false })],
  ] as const;

  it.each(NUMBERS)("fromOffset %s: readStream (waiting and wait:false)", async (label, fromOffset) => {
    for (const [what, read] of readers) {
      const before = await counts(engine.schema);
      let promise: Promise<unknown> | undefined;
      expect(() => (promise = read({ fromOffset })), `${what} must not throw synchronously`).not.toThrow();
      const result = await outcome(() => within(10_000, what, promise!));
      if (expected(label) === "refuse") {
        expectRefusal(result, InvalidArgumentError, "INVALID_ARGUMENT", "fromOffset");
      } else {
        const from = Math.min(fromOffset as number, VALUES.length);
        expect(result, what).toEqual({ ok: true, value: { values: VALUES.slice(from), closed: true } });
      }
      expect(await counts(engine.schema)).toEqual(before);
    }
  });

  it.each(NUMBERS)("fromOffset %s: readStreamAsync and readStreamEntries report it on their first next(), never at the call", async (label, fromOffset) => {
    const before = await counts(engine.schema);
    let values: AsyncGenerator<unknown> | undefined;
    let entries: AsyncGenerator<{ offset: number; value: unknown }> | undefined;
    expect(() => (values = engine.readStreamAsync(doneId, "s", { fromOffset: fromOffset as number }))).not.toThrow();
    expect(() => (entries = engine.readStreamEntries(doneId, "s", { fromOffset: fromOffset as number }))).not.toThrow();
    if (expected(label) === "refuse") {
      for (const iterator of [values!, entries!]) {
        expectRefusal(await outcome(() => iterator.next()), InvalidArgumentError, "INVALID_ARGUMENT", "fromOffset");
        expect(await iterator.next()).toEqual({ done: true, value: undefined }); // and it is over
      }
    } else {
      const from = Math.min(fromOffset as number, VALUES.length);
      expect(await within(10_000, "readStreamAsync", collect(values!))).toEqual(VALUES.slice(from));
      expect(await within(10_000, "readStreamEntries", collect(entries!))).toEqual(
        VALUES.slice(from).map((value, i) => ({ offset: from + i, value })),
      );
    }
    expect(engine.readerCount).toBe(0);
    expect(await counts(engine.schema)).toEqual(before);
  });
});

describe("listWorkflows limit", () => {
  const expected = verdict({ "0": "accept", "1": "accept", MAX_SAFE_INTEGER: "accept", "-0": "accept" });

  it.each(NUMBERS)("limit %s", async (label, limit) => {
    const all = await engine.listWorkflows({ limit: 1000 });
    expect(all.length).toBeGreaterThanOrEqual(2); // "abc" and the probe
    const result = await outcome(() => engine.listWorkflows({ limit: limit as number }));
    if (expected(label) === "refuse") {
      expectRefusal(result, InvalidArgumentError, "INVALID_ARGUMENT", "limit");
    } else {
      // Newest first, at most `limit` rows.
      expect(result).toEqual({ ok: true, value: all.slice(0, Math.min(limit as number, all.length)) });
    }
  });
});

describe("step retries", () => {
  // A safe non-negative integer.
  const expected = verdict({ "0": "accept", "1": "accept", MAX_SAFE_INTEGER: "accept", "-0": "accept" });

  it.each(NUMBERS)("retries %s", async (label, retries) => {
    let calls = 0;
    const fn = () => {
      if (++calls === 1) throw new Error("first attempt fails");
      return "ok";
    };
    const before = await counts(engine.schema);
    const result = await probe.run((ctx) => ctx.step(`retries ${label}`, fn, { retries: retries as number, retryDelayMs: 0 }));
    const after = await counts(engine.schema);
    if (expected(label) === "refuse") {
      expectRefusal(result, InvalidArgumentError, "INVALID_ARGUMENT", "retries");
      expect(calls).toBe(0);
      expect(after).toEqual(before);
      return;
    }
    // One stored step either way: its output, or (no retry allowed) its error.
    expect(after).toEqual({ ...before, steps: before.steps + 1 });
    if ((retries as number) >= 1) {
      expect(result).toEqual({ ok: true, value: "ok" });
      expect(calls).toBe(2);
    } else {
      expect(result.ok).toBe(false);
      expect((result as { error: Error }).error.message).toBe("first attempt fails");
      expect(calls).toBe(1);
    }
  });
});

describe("step retryDelayMs", () => {
  // 0 to 2^31 − 1 ms; fractions are fine for a timer.
  const expected = verdict({ "0": "accept", "1": "accept", "1.5": "accept", "-0": "accept", "2^31 - 1": "accept" });

  it.each(TIMER_NUMBERS.filter(([label]) => label !== "2^31 - 1"))("retryDelayMs %s", async (label, retryDelayMs) => {
    let calls = 0;
    const fn = () => {
      if (++calls === 1) throw new Error("first attempt fails");
      return "ok";
    };
    const before = await counts(engine.schema);
    const result = await probe.run((ctx) => ctx.step(`delay ${label}`, fn, { retries: 1, retryDelayMs: retryDelayMs as number }));
    const after = await counts(engine.schema);
    if (expected(label) === "refuse") {
      expectRefusal(result, InvalidArgumentError, "INVALID_ARGUMENT", "retryDelayMs", String(MAX_TIMER_MS));
      expect(calls).toBe(0);
      expect(after).toEqual(before);
    } else {
      expect(result).toEqual({ ok: true, value: "ok" });
      expect(calls).toBe(2);
      expect(after).toEqual({ ...before, steps: before.steps + 1 });
    }
  });

  it("retryDelayMs 2^31 - 1: the retry waits that long (Node does not clamp it to 1 ms), and a cancel ends the wait", async () => {
    const timers = watchTimers();
    try {
      let calls = 0;
      const wf = engine.workflow("longest-delay", async (ctx) => {
        await ctx.step("fails once", () => {
          calls++;
          throw new Error("first attempt fails");
        }, { retries: 1, retryDelayMs: MAX_TIMER_MS });
      });
      const handle = await wf.start();
      // The retry's wait is set: Node must keep its delay, not fire it after 1 ms.
      const delay = await within(10_000, "the retry's timer", timers.effectiveDelayOf((d) => d === MAX_TIMER_MS));
      expect(delay).toBe(MAX_TIMER_MS);
      expect(calls).toBe(1);
      await engine.cancelWorkflow(handle.workflowId);
      const error = await outcome(() => within(10_000, "the cancelled result", handle.getResult()));
      expect(error.ok === false && error.error).toBeInstanceOf(WorkflowCancelledError);
      expect(calls).toBe(1); // no second attempt: the cancel ended the wait
      expect(await engine.getWorkflow(handle.workflowId)).toMatchObject({ status: "CANCELLED" });
    } finally {
      await timers.stop();
    }
    expect(timers.overflows).toEqual([]);
  });
});

describe("writeProgress done and total", () => {
  // Finite and non-negative (done ≤ total); progress is not an offset, so fractions and
  // numbers past 2^53 are fine. −0 is accepted and reads back as 0 (JSON has no −0).
  const expected = verdict({ "0": "accept", "1": "accept", MAX_SAFE_INTEGER: "accept", "MAX_SAFE_INTEGER + 1": "accept", "1.5": "accept", "-0": "accept" });
  const cases: [string, string, unknown][] = NUMBERS.flatMap(([label, value]) => [
    ["done", label, value] as [string, string, unknown],
    ["total", label, value] as [string, string, unknown],
  ]);

  it.each(cases)("progress.%s %s", async (field, label, value) => {
    const big = typeof value === "number" && Number.isFinite(value) && value > 10;
    const progress = (field === "done" ? { done: value, total: big ? value : 10 } : { done: 0, total: value }) as Progress;
    const key = `progress ${field} ${label}`;
    const before = await counts(engine.schema);
    const result: Outcome = await probe.run((ctx) => ctx.writeProgress(key, progress));
    const after = await counts(engine.schema);
    if (expected(label) === "refuse") {
      expectRefusal(result, InvalidArgumentError, "INVALID_ARGUMENT", `progress.${field}`);
      expect(after).toEqual(before);
      return;
    }
    expect(result).toEqual({ ok: true, value: undefined });
    expect(after).toEqual({ ...before, entries: before.entries + 1 });
    const read = await engine.readStream(probe.workflowId, key, { wait: false });
    const stored = { done: Object.is(progress.done, -0) ? 0 : progress.done, total: Object.is(progress.total, -0) ? 0 : progress.total };
    expect(read).toEqual({ values: [stored], closed: false });
  });
});
