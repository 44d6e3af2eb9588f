// Nesting has a documented limit, MAX_DEPTH = 1000 levels: a value at the limit is
// stored and comes back equal, a deeper one is refused with SerializationError naming the
// limit — never a RangeError from a stack overflow (a value 10,000 arrays deep used to
// reject with "Maximum call stack size exceeded" from the value check).
import { describe, expect, it } from "vitest";
import { MAX_DEPTH } from "../src/json.js";
import { SerializationError } from "../src/index.js";
import { admin, openEngine } from "./support/engines.js";

/** Arrays nested `levels` deep: [[[…]]] with `levels` pairs of brackets. */
function nested(levels: number): unknown {
  let value: unknown = [];
  for (let i = 1; i < levels; i++) value = [value];
  return value;
}

/** Objects nested `levels` deep: { a: { a: … } }. */
function nestedObjects(levels: number): unknown {
  let value: unknown = {};
  for (let i = 1; i < levels; i++) value = { a: value };
  return value;
}

async function entryCount(schema: string): Promise<number> {
  const [row] = await admin.unsafe<{ n: number }[]>(`select count(*)::int as n from "${schema}".stream_entries where not closed`);
  return row!.n;
}

describe("nesting depth", () => {
  it(`a stream value ${MAX_DEPTH} levels deep is stored and read back equal`, async () => {
    const engine = await openEngine();
    const deep = nested(MAX_DEPTH);
    const deepObject = nestedObjects(MAX_DEPTH);
    const wf = engine.workflow("deep-ok", async (ctx) => {
      await ctx.writeStream("s", deep);
      await ctx.writeStream("s", deepObject);
    });
    const handle = await wf.start();
    await handle.getResult();
    expect((await engine.readStream(handle.workflowId, "s")).values).toEqual([deep, deepObject]);
  });

  it.each([MAX_DEPTH + 1, 10_000, 100_000])("a stream value %d levels deep is refused with SerializationError naming the limit", async (levels) => {
    const engine = await openEngine();
    const wf = engine.workflow("deep-refused", async (ctx) => {
      const errors: unknown[] = [];
      for (const value of [nested(levels), nestedObjects(levels)]) {
        errors.push(await ctx.writeStream("s", value).then(() => undefined, (e: unknown) => e));
      }
      return errors.map((e) => (e instanceof SerializationError ? e.message : `not a SerializationError: ${String(e)}`));
    });
    const handle = await wf.start();
    const messages = (await handle.getResult()) as string[];
    for (const message of messages) expect(message).toMatch(new RegExp(`nested more than ${MAX_DEPTH} levels deep`));
    expect(await entryCount(engine.schema)).toBe(0);
  });

  it("a deep workflow input is refused by start before anything is written", async () => {
    const engine = await openEngine();
    const wf = engine.workflow<unknown>("deep-input", async () => "ran");
    await expect(wf.start(nested(10_000))).rejects.toBeInstanceOf(SerializationError);
    const [row] = await admin.unsafe<{ n: number }[]>(`select count(*)::int as n from "${engine.schema}".workflow_status`);
    expect(row!.n).toBe(0);
  });

  it("a step whose output is too deep fails with SerializationError, the same on replay; a too deep workflow output ends it in ERROR", async () => {
    const engine = await openEngine();
    const wf = engine.workflow("deep-step", async (ctx) => {
      const error = await ctx.step("deep", () => nested(10_000)).then(() => undefined, (e: unknown) => e);
      if (!(error instanceof SerializationError)) return "step did not fail as expected";
      return nested(5000);
    });
    const handle = await wf.start();
    const failure = await handle.getResult().then(() => undefined, (e: unknown) => e);
    expect(failure).toBeInstanceOf(SerializationError);
    expect(String((failure as Error).message)).toMatch(/output of workflow .* is nested more than 1000 levels deep/);
    expect(await handle.getStatus()).toBe("ERROR");
  });

  it("a thrown error carrying a deep property is stored without it, its name and message intact", async () => {
    const engine = await openEngine();
    const wf = engine.workflow("deep-error", async () => {
      throw Object.assign(new RangeError("too deep to keep"), { detail: nested(10_000), code: "E_DEEP" });
    });
    const handle = await wf.start();
    const failure = await handle.getResult().then(() => undefined, (e: unknown) => e);
    expect(failure).toBeInstanceOf(RangeError);
    expect(failure).toMatchObject({ message: "too deep to keep", code: "E_DEEP" });
    expect((failure as { detail?: unknown }).detail).toBeUndefined();
  });
});
