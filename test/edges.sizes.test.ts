// Edge matrix 3, value sizes with maxValueBytes = 4096: a value of 4095, 4096 and 4097
// bytes of JSON (UTF-8), made of characters whose UTF-16 length and byte length differ
// (é 2 bytes, € 3, an emoji 4 bytes in 2 units, U+0001 escaped to 6, a quote escaped to
// 2), as a stream value, a step output, a workflow input and a workflow output, once and
// 1,000 at a time. Up to the limit each is stored and read back equal; past it, a stream
// value or an input is refused with SerializationError and nothing is written, a step's
// or a workflow's outcome is that SerializationError (stored as its error).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SerializationError, type Engine, type Workflow } from "../src/index.js";
import { counts, expectRefusal, jsonBytes, outcome, startProbe, type Outcome, type Probe } from "./edges.support.js";
import { admin, openEngine, within } from "./support/engines.js";

const LIMIT = 4096;

const KINDS: [label: string, unit: string, object: boolean][] = [
  ["ASCII", "x", false],
  ["é (2 bytes)", "é", false],
  ["€ (3 bytes)", "€", false],
  ["emoji (4 bytes, 2 UTF-16 units)", "🦀", false],
  ["U+0001 (6 bytes as JSON)", "\u0001", false],
  ['" (2 bytes as JSON)', '"', false],
  ["an object of €", "€", true],
];

/** A value whose JSON is exactly `target` bytes: `tag|` + units + ASCII padding. */
function sized(target: number, kind: number, tag: string | number = ""): unknown {
  const [, unit, object] = KINDS[kind]!;
  const room = target - 2 - (object ? 6 : 0) - Buffer.byteLength(`${tag}|`);
  const each = jsonBytes(unit) - 2;
  const n = Math.floor(room / each);
  const text = `${tag}|${unit.repeat(n)}${"x".repeat(room - n * each)}`;
  const value = object ? { v: text } : text;
  if (jsonBytes(value) !== target) throw new Error(`sized(${target}) made ${jsonBytes(value)} bytes`);
  return value;
}

const TARGETS: [label: string, bytes: number][] = [
  ["limit - 1", LIMIT - 1],
  ["the limit", LIMIT],
  ["limit + 1", LIMIT + 1],
];
const fits = (bytes: number) => bytes <= LIMIT;

let engine: Engine;
let probe: Probe;
let inputs: Workflow<unknown, boolean>;
let outputs: Workflow<{ target: number; kind: number; tag: number }, unknown>;
/** What each "inputs" workflow should have been given. */
const expectedInput = new Map<string, unknown>();

beforeAll(async () => {
  engine = await openEngine({ maxValueBytes: LIMIT, poolSize: 4 });
  probe = await startProbe(engine);
  inputs = engine.workflow("inputs", async (ctx, input: unknown) => JSON.stringify(input) === JSON.stringify(expectedInput.get(ctx.workflowId)));
  outputs = engine.workflow("outputs", async (_ctx, { target, kind, tag }) => sized(target, kind, tag));
});
afterAll(() => probe.stop());

type Channel = "stream value" | "step output" | "workflow input" | "workflow output";
const CHANNELS: Channel[] = ["stream value", "step output", "workflow input", "workflow output"];

/**
 * Stores `count` values of `target` bytes through `channel` at once (kinds in turn, each
 * tagged with its index) and checks what came back and what the tables hold.
 */
async function exercise(channel: Channel, target: number, count: number, kinds: number[], name: string): Promise<void> {
  const values = Array.from({ length: count }, (_, i) => sized(target, kinds[i % kinds.length]!, i));
  const before = await counts(engine.schema);
  const key = `${channel}: ${name} ${target}`;
  if (channel === "stream value") {
    const result = await probe.run((ctx) => Promise.allSettled(values.map((v) => ctx.writeStream(key, v))));
    const settled = (result as { value: PromiseSettledResult<void>[] }).value;
    if (fits(target)) {
      expect(settled.every((s) => s.status === "fulfilled")).toBe(true);
      expect(await engine.readStream(probe.workflowId, key, { wait: false })).toEqual({ values, closed: false });
      expect(await counts(engine.schema)).toEqual({ ...before, entries: before.entries + count });
    } else {
      for (const s of settled) expectRefusal(asOutcome(s), SerializationError, "SERIALIZATION", "maxValueBytes", String(target));
      expect(await counts(engine.schema)).toEqual(before);
    }
  } else if (channel === "step output") {
    const result = await probe.run((ctx) => Promise.allSettled(values.map((v, i) => ctx.step(`${key} #${i}`, () => v))));
    const settled = (result as { value: PromiseSettledResult<unknown>[] }).value;
    // Stored either way: the output, or the SerializationError as the step's outcome.
    expect(await counts(engine.schema)).toEqual({ ...before, steps: before.steps + count });
    const rows = await admin.unsafe(
      `select output, error->>'name' as error from "${engine.schema}".step_outputs where workflow_id = $1 and name like $2 order by step_id`,
      [probe.workflowId, `${key} #%`],
    );
    expect(rows).toHaveLength(count);
    if (fits(target)) {
      expect(settled.map((s) => (s as PromiseFulfilledResult<unknown>).value)).toEqual(values);
      expect(rows.map((r) => r.output)).toEqual(values);
    } else {
      for (const s of settled) expectRefusal(asOutcome(s), SerializationError, "SERIALIZATION", "maxValueBytes");
      expect(rows.every((r) => r.output === null && r.error === "SerializationError")).toBe(true);
    }
  } else if (channel === "workflow input") {
    const ids = values.map((_, i) => `${key} #${i}`);
    ids.forEach((id, i) => expectedInput.set(id, values[i]));
    const started = await Promise.all(ids.map((id, i) => outcome(() => inputs.start(values[i], { workflowId: id }))));
    if (fits(target)) {
      const results = await within(60_000, "the inputs workflows", Promise.all(ids.map((id) => engine.retrieveWorkflow(id).getResult())));
      expect(results.every((r) => r === true)).toBe(true);
      const rows = await admin.unsafe(`select workflow_id, input from "${engine.schema}".workflow_status where workflow_id like $1`, [`${key} #%`]);
      expect(rows).toHaveLength(count);
      for (const row of rows) expect(row.input).toEqual(expectedInput.get(row.workflow_id as string));
      expect(await counts(engine.schema)).toEqual({ ...before, workflows: before.workflows + count, entries: before.entries });
    } else {
      for (const s of started) expectRefusal(s, SerializationError, "SERIALIZATION", "maxValueBytes");
      expect(await counts(engine.schema)).toEqual(before);
    }
  } else {
    const handles = await Promise.all(values.map((_, i) =>
      outputs.start({ target, kind: kinds[i % kinds.length]!, tag: i }, { workflowId: `${key} #${i}` })));
    const results = await within(60_000, "the outputs workflows", Promise.all(handles.map((h) => outcome(() => h.getResult()))));
    if (fits(target)) {
      expect(results).toEqual(values.map((value) => ({ ok: true, value })));
    } else {
      for (const r of results) expectRefusal(r, SerializationError, "SERIALIZATION", "maxValueBytes");
      expect(new Set(await Promise.all(handles.map((h) => h.getStatus())))).toEqual(new Set(["ERROR"]));
    }
    expect(await counts(engine.schema)).toEqual({ ...before, workflows: before.workflows + count });
  }
}

function asOutcome(settled: PromiseSettledResult<unknown>): Outcome {
  return settled.status === "fulfilled" ? { ok: true, value: settled.value } : { ok: false, error: settled.reason };
}

describe("one value at a time", () => {
  const cases = CHANNELS.flatMap((channel) =>
    KINDS.flatMap(([kindLabel], kind) => TARGETS.map(([targetLabel, bytes]) =>
      [channel, kindLabel, targetLabel, channel, kind, bytes] as [string, string, string, Channel, number, number])));

  it.each(cases)("%s of %s at %s", async (_c, kindLabel, _t, channel, kind, bytes) => {
    await exercise(channel, bytes, 1, [kind], `one ${kindLabel}`);
  });
});

describe("1,000 values at once", () => {
  const cases = CHANNELS.flatMap((channel) => TARGETS.map(([label, bytes]) => [channel, label, channel, bytes] as [string, string, Channel, number]));

  it.each(cases)("1,000 concurrent: %s at %s", async (_c, _t, channel, bytes) => {
    await exercise(channel, bytes, 1000, KINDS.map((_, i) => i), "thousand");
  }, 120_000);
});

describe("an error too large to store whole", () => {
  it("is stored as a SerializationError that keeps its name, message and code when read back", async () => {
    const wf = engine.workflow("huge-error", async () => {
      throw new Error("m".repeat(LIMIT * 2));
    });
    const handle = await wf.start();
    const error = expectRefusal(await outcome(() => within(10_000, "the result", handle.getResult())), SerializationError, "SERIALIZATION", "maxValueBytes");
    expect(error.message).toContain(handle.workflowId);
  });
});
