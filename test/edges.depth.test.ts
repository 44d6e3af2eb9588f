// Edge matrix 4, nesting depth (src/json.ts MAX_DEPTH = 1000): 1,000 levels of arrays or
// objects are stored and read back from the database equal; 1,001, 10,000 and 100,000
// levels are refused with SerializationError naming the limit — never a RangeError from
// a recursion — as a stream value, a workflow input, a step output and a workflow
// output. A thrown Error carrying a deeply nested property keeps its name, message,
// stack and its other properties (e.g. `code`); the deep one is kept if storable, else
// left out. Deep values are compared without recursion (depthOf) or through JSON text.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SerializationError, type Engine } from "../src/index.js";
import {
  counts, deepArray, deepObject, depthOf, expectRefusal, outcome, startProbe, type Outcome, type Probe,
} from "./edges.support.js";
import { admin, openEngine, within } from "./support/engines.js";

const LEVELS: [label: string, levels: number][] = [
  ["1,000", 1000],
  ["1,001", 1001],
  ["10,000", 10_000],
  ["100,000", 100_000],
];
const SHAPES: [label: string, make: (levels: number) => unknown][] = [
  ["arrays", deepArray],
  ["objects", deepObject],
];
const cases = SHAPES.flatMap(([shape, make]) => LEVELS.map(([label, levels]) => [label, shape, levels, make] as const));

let engine: Engine;
let probe: Probe;

beforeAll(async () => {
  engine = await openEngine();
  probe = await startProbe(engine);
});
afterAll(() => probe.stop());

/** Equal as JSON text, which V8 writes without trouble at 1,000 levels. */
function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** The refusal past the limit: a SerializationError that names it, never a RangeError. */
function refusedPastLimit(result: Outcome): void {
  if (!result.ok) expect(result.error).not.toBeInstanceOf(RangeError);
  expectRefusal(result, SerializationError, "SERIALIZATION", "1000");
}

describe("a stream value", () => {
  it.each(cases)("%s levels of %s", async (_, shape, levels, make) => {
    const value = make(levels);
    const key = `deep ${shape} ${levels}`;
    const before = await counts(engine.schema);
    const result = await probe.run((ctx) => ctx.writeStream(key, value));
    if (levels > 1000) {
      refusedPastLimit(result);
      expect(await counts(engine.schema)).toEqual(before);
      return;
    }
    expect(result.ok).toBe(true);
    const { values } = await engine.readStream(probe.workflowId, key, { wait: false });
    expect(values).toHaveLength(1);
    expect(depthOf(values[0])).toBe(levels);
    expect(sameJson(values[0], value)).toBe(true);
  });
});

describe("a workflow input and a workflow output", () => {
  it.each(cases)("%s levels of %s", async (label, shape, levels, make) => {
    const value = make(levels);
    let received: unknown;
    const echo = engine.workflow(`echo ${shape} ${label}`, async (_ctx, input: unknown) => {
      received = input;
      return input;
    });
    const before = await counts(engine.schema);
    const started = await outcome(() => echo.start(value));
    if (levels > 1000) {
      refusedPastLimit(started);
      expect(await counts(engine.schema)).toEqual(before);
      // As an output: the workflow's outcome is the SerializationError.
      const makes = engine.workflow(`makes ${shape} ${label}`, async () => make(levels));
      const handle = await makes.start();
      refusedPastLimit(await outcome(() => within(10_000, "the result", handle.getResult())));
      expect(await handle.getStatus()).toBe("ERROR");
      return;
    }
    const handle = (started as { value: { workflowId: string; getResult(): Promise<unknown> } }).value;
    const output = await within(10_000, "the result", handle.getResult());
    expect(depthOf(received)).toBe(levels);
    expect(depthOf(output)).toBe(levels);
    expect(sameJson(output, value)).toBe(true);
    // The stored input, read back from the table.
    const [row] = await admin.unsafe(`select input from "${engine.schema}".workflow_status where workflow_id = $1`, [handle.workflowId]);
    expect(sameJson(row!.input, value)).toBe(true);
  });
});

describe("a step output", () => {
  it.each(cases)("%s levels of %s", async (_, shape, levels, make) => {
    const name = `deep step ${shape} ${levels}`;
    const result = await probe.run((ctx) => ctx.step(name, () => make(levels)));
    const [row] = await admin.unsafe(
      `select output, error->>'name' as error from "${engine.schema}".step_outputs where workflow_id = $1 and name = $2`,
      [probe.workflowId, name],
    );
    if (levels > 1000) {
      refusedPastLimit(result);
      expect(row).toEqual({ output: null, error: "SerializationError" });
      return;
    }
    expect(result.ok).toBe(true);
    expect(row!.error).toBeNull();
    expect(depthOf(row!.output)).toBe(levels);
    expect(sameJson(row!.output, make(levels))).toBe(true);
  });
});

describe("a thrown Error carrying a deeply nested property", () => {
  // 998 levels is the deepest that fits inside the stored error ({ props: { deep } }).
  const depths: [string, number][] = [["998", 998], ["999", 999], ["1,000", 1000], ["1,001", 1001], ["10,000", 10_000], ["100,000", 100_000]];

  it.each(depths)("a %s-level property: the workflow's stored error keeps name, message, stack and code", async (label, levels) => {
    const wf = engine.workflow(`throws deep ${label}`, async () => {
      throw Object.assign(new TypeError("deep inside"), { code: "E_DEEP", deep: deepArray(levels) });
    });
    const handle = await wf.start();
    const result = await outcome(() => within(10_000, "the result", handle.getResult()));
    expect(result.ok).toBe(false);
    const error = (result as { error: Error & { code?: unknown; deep?: unknown } }).error;
    expect(error).not.toBeInstanceOf(RangeError);
    expect(error).toBeInstanceOf(TypeError);
    expect(error.message).toBe("deep inside");
    expect(typeof error.stack).toBe("string");
    expect(error.code).toBe("E_DEEP");
    if (error.deep !== undefined) expect(depthOf(error.deep)).toBe(levels);
  });

  it.each(depths)("a step throwing it: the step's stored error keeps name, message and code (%s levels)", async (label, levels) => {
    const name = `step throws deep ${label}`;
    await probe.run((ctx) => ctx.step(name, () => {
      throw Object.assign(new TypeError("deep inside"), { code: "E_DEEP", deep: deepArray(levels) });
    }));
    const [row] = await admin.unsafe(
      `select error->>'name' as name, error->>'message' as message, error->'props'->>'code' as code
       from "${engine.schema}".step_outputs where workflow_id = $1 and name = $2`,
      [probe.workflowId, name],
    );
    expect(row).toEqual({ name: "TypeError", message: "deep inside", code: "E_DEEP" });
  });

  it.each([["1,000", 1000], ["100,000", 100_000]] as const)("a thrown plain value nested %s levels: stored equal, or replaced by a SerializationError", async (label, levels) => {
    const wf = engine.workflow(`throws value ${label}`, async () => {
      throw deepObject(levels);
    });
    const handle = await wf.start();
    const result = await outcome(() => within(10_000, "the result", handle.getResult()));
    expect(result.ok).toBe(false);
    const thrown = (result as { error: unknown }).error;
    if (levels <= 1000) {
      // A value of 1,000 levels is storable anywhere else: thrown, it must come back equal.
      expect(depthOf(thrown)).toBe(levels);
    } else {
      refusedPastLimit(result);
    }
  });
});
