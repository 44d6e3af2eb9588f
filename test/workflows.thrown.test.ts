// What a step or workflow throws, the first run and a replay see alike: an Error as its
// class and message, any other value JSON holds as an equal value, and what cannot be
// stored as a SerializationError that says so — already on the first run. (A thrown
// string used to come back on replay as Error("non-Error thrown: …").) And a step's retry
// delay ends at once when the workflow is cancelled or the engine closes.
import { describe, expect, it } from "vitest";
import { EngineClosedError, SerializationError, WorkflowCancelledError, type Engine, type WorkflowContext } from "../src/index.js";
import { gate, openEngine, within } from "./support/engines.js";

/** What awaiting `p` throws (or "resolved"). */
async function thrownBy(p: Promise<unknown>): Promise<unknown> {
  return p.then(() => "resolved", (e: unknown) => e);
}

/**
 * Runs a workflow whose step throws `thrown`, records what the step rejected with, then
 * closes the engine before the workflow ends; a new engine replays the recorded step and
 * records again. Returns both.
 */
async function firstAndReplay(thrown: () => unknown): Promise<{ first: unknown; replay: unknown; engine: Engine }> {
  const seen: unknown[] = [];
  const first = await openEngine();
  const held = gate();
  const program = (hold: boolean) => async (ctx: WorkflowContext) => {
    seen.push(await thrownBy(ctx.step("throws", () => {
      throw thrown();
    })));
    if (hold) {
      held.open();
      await new Promise(() => {});
    }
    return "done";
  };
  const handle = await first.workflow("thrower", program(true)).start();
  await within(5000, "the first run", held.promise);
  await first.close();
  const second = await openEngine({ schema: first.schema });
  second.workflow("thrower", program(false));
  await second.launch();
  await within(5000, "the replay", second.retrieveWorkflow(handle.workflowId).getResult());
  return { first: seen[0], replay: seen[1], engine: second };
}

describe("a thrown value is the same on the first run and on replay", () => {
  it.each([
    ["a string", () => "oops"],
    ["a number", () => 42],
    ["a plain object", () => ({ code: "E_OOPS", detail: [1, "two"] })],
    ["null", () => null],
  ])("%s thrown by a step comes back as an equal value", async (_, thrown) => {
    const { first, replay } = await firstAndReplay(thrown);
    expect(first).toEqual(thrown());
    expect(replay).toEqual(thrown());
  });

  it.each([
    ["AggregateError", () => new AggregateError([new Error("a")], "several"), AggregateError],
    ["DOMException (an abort)", () => new DOMException("stopped", "AbortError"), DOMException],
  ] as const)("a built-in %s comes back as its class", async (_, thrown, cls) => {
    const { first, replay } = await firstAndReplay(thrown);
    for (const error of [first, replay]) {
      expect(error).toBeInstanceOf(cls);
      expect((error as Error).message).toBe((thrown() as Error).message);
    }
  });

  it("an Error comes back as its class with its message and JSON properties", async () => {
    const { first, replay } = await firstAndReplay(() => Object.assign(new TypeError("bad type"), { code: "E_TYPE" }));
    for (const error of [first, replay]) {
      expect(error).toBeInstanceOf(TypeError);
      expect(error).toMatchObject({ message: "bad type", code: "E_TYPE" });
    }
  });

  it.each([
    ["undefined", () => undefined, /threw undefined, which JSON cannot represent/],
    ["a function", () => () => 1, /threw a function, which JSON cannot represent/],
    ["a Date", () => new Date(0), /is a Date/],
    ["an Error whose message holds a NUL character", () => new Error("bad\u0000byte"), /NUL character/],
  ])("%s is replaced by a SerializationError on both runs", async (_, thrown, message) => {
    const { first, replay } = await firstAndReplay(thrown);
    for (const error of [first, replay]) {
      expect(error).toBeInstanceOf(SerializationError);
      expect((error as Error).message).toMatch(message);
      expect((error as Error).message).toMatch(/step "throws"/);
    }
  });

  it("a workflow that throws a string rejects getResult with that string, and is ERROR", async () => {
    const engine = await openEngine();
    const handle = await engine.workflow("throws-string", async () => {
      throw "plain failure";
    }).start();
    expect(await thrownBy(handle.getResult())).toBe("plain failure");
    expect(await handle.getStatus()).toBe("ERROR");
  });

  it("a workflow that throws undefined ends in ERROR with a SerializationError (getResult never hangs)", async () => {
    const engine = await openEngine();
    const handle = await engine.workflow("throws-undefined", async () => {
      throw undefined;
    }).start();
    const error = await within(5000, "the result", thrownBy(handle.getResult()));
    expect(error).toBeInstanceOf(SerializationError);
    expect(await handle.getStatus()).toBe("ERROR");
  });
});

describe("a step's retry delay", () => {
  it("ends at once when the workflow is cancelled: no attempt starts after cancelWorkflow resolved", async () => {
    const engine = await openEngine();
    const attempts: number[] = [];
    const firstFailed = gate();
    const outcome = gate<unknown>();
    const wf = engine.workflow("retry-cancel", async (ctx) => {
      outcome.open(await thrownBy(ctx.step("flaky", () => {
        attempts.push(Date.now());
        if (attempts.length === 1) firstFailed.open();
        throw new Error("not yet");
      }, { retries: 5, retryDelayMs: 60_000 })));
    });
    const handle = await wf.start();
    await within(5000, "the first attempt", firstFailed.promise);
    await engine.cancelWorkflow(handle.workflowId);
    const cancelledAt = Date.now();
    expect(await within(2000, "the step to end", outcome.promise)).toBeInstanceOf(WorkflowCancelledError);
    expect(attempts.filter((t) => t >= cancelledAt)).toEqual([]);
    expect(attempts).toHaveLength(1);
    expect(await handle.getStatus()).toBe("CANCELLED");
  });

  it("ends at once when the engine closes, and the workflow stays PENDING", async () => {
    const engine = await openEngine();
    const attempts: number[] = [];
    const firstFailed = gate();
    const outcome = gate<unknown>();
    const wf = engine.workflow("retry-close", async (ctx) => {
      outcome.open(await thrownBy(ctx.step("flaky", () => {
        attempts.push(attempts.length);
        firstFailed.open();
        throw new Error("not yet");
      }, { retries: 5, retryDelayMs: 60_000 })));
    });
    const handle = await wf.start();
    const id = handle.workflowId;
    await within(5000, "the first attempt", firstFailed.promise);
    await within(2000, "close", engine.close());
    expect(await within(2000, "the step to end", outcome.promise)).toBeInstanceOf(EngineClosedError);
    expect(attempts).toHaveLength(1);
    const other = await openEngine({ schema: engine.schema });
    expect(await other.retrieveWorkflow(id).getStatus()).toBe("PENDING");
  });
});
