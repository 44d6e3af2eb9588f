// Edge matrix 5, characters and numbers JSON, jsonb and JS disagree on: each character as
// part of a stream value, an object key, a step's error message and a workflow's error
// message; numbers as values. What the README promises: a value is stored faithfully or
// refused with SerializationError (NUL, lone surrogates, NaN, ±Infinity…). So every
// accepted string must come back identical (and be stored as the same UTF-8 bytes), and
// every accepted number must come back as the same JS number (Object.is).
//
// What jsonb normalises, checked below: the text of a number (1e308 is stored as 1 and
// 308 zeros, 5e-324 as 0.000…5) — the JS number read back is the same; key order (the
// README says so). −0 is the exception: JSON writes it as 0, and it reads back as 0.
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SerializationError, type Engine } from "../src/index.js";
import { counts, expectRefusal, hex, outcome, startProbe, type Probe } from "./edges.support.js";
import { admin, openEngine, within } from "./support/engines.js";

const u = (code: number) => `U+${code.toString(16).toUpperCase().padStart(4, "0")}`;

/** [label, text, stored] — stored false: refused with SerializationError wherever it goes. */
const TEXTS: [label: string, text: string, stored: boolean][] = [
  ["U+0000 (jsonb cannot hold it)", "\u0000", false],
  ...Array.from({ length: 31 }, (_, i) => [`${u(i + 1)} (a C0 control)`, String.fromCharCode(i + 1), true] as [string, string, boolean]),
  ["U+007F (DEL)", "\u007f", true],
  ["U+0085 (C1 next line)", "\u0085", true],
  ["U+009B (C1 CSI)", "\u009b", true],
  ["U+2028 (line separator)", "\u2028", true],
  ["U+2029 (paragraph separator)", "\u2029", true],
  ["a lone high surrogate", "\ud800", false],
  ["a lone low surrogate", "\udc00", false],
  ["a high surrogate at the end", "x\udbff", false],
  ["a reversed surrogate pair", "\udc00\ud800", false],
  ["a valid surrogate pair (emoji)", "🦀", true],
  ["U+10000 (first astral)", "\u{10000}", true],
  ["U+10FFFF (last code point)", "\u{10ffff}", true],
  ["U+FFFE", "\ufffe", true],
  ["U+FFFF", "\uffff", true],
  ["a BOM at the start", "\ufeffstart", true],
  ['"\\u0000" as six characters', "\\u0000", true],
  ['"\\ud800" as six characters', "\\ud800", true],
  ["a backslash and a quote", '\\"', true],
  ["é decomposed (NFD)", "e\u0301", true],
];

let engine: Engine;
let probe: Probe;

beforeAll(async () => {
  engine = await openEngine();
  probe = await startProbe(engine);
});
afterAll(() => probe.stop());

describe("characters in values, object keys and error messages", () => {
  it.each(TEXTS)("%s", async (label, text, stored) => {
    const value = `a${text}b`;
    const object = { [`k${text}`]: value, plain: 1 };
    const before = await counts(engine.schema);
    const wrote = await probe.run((ctx) => ctx.writeStream(`value ${label}`, value));
    const keyed = await probe.run((ctx) => ctx.writeStream(`key ${label}`, object));
    const stepped = await probe.run((ctx) => ctx.step(`throws ${label}`, () => {
      throw new Error(`m${text}`);
    }));
    const wf = engine.workflow(`throws ${label}`, async () => {
      throw new RangeError(`w${text}`);
    });
    const handle = await wf.start();
    const thrown = await outcome(() => within(10_000, "the result", handle.getResult()));
    const [step] = await admin.unsafe(
      `select error->>'name' as name, error->>'message' as message from "${engine.schema}".step_outputs where workflow_id = $1 and name = $2`,
      [probe.workflowId, `throws ${label}`],
    );
    if (!stored) {
      expectRefusal(wrote, SerializationError, "SERIALIZATION");
      expectRefusal(keyed, SerializationError, "SERIALIZATION", "key");
      // Both runs see the same outcome: the SerializationError that replaced the error.
      expect((stepped as { error: unknown }).error).toBeInstanceOf(SerializationError);
      expect(step!.name).toBe("SerializationError");
      expect((thrown as { error: unknown }).error).toBeInstanceOf(SerializationError);
      expect(await counts(engine.schema)).toEqual({ ...before, workflows: before.workflows + 1, steps: before.steps + 1 });
      return;
    }
    expect(wrote.ok && keyed.ok).toBe(true);
    expect(await engine.readStream(probe.workflowId, `value ${label}`, { wait: false })).toEqual({ values: [value], closed: false });
    expect(await engine.readStream(probe.workflowId, `key ${label}`, { wait: false })).toEqual({ values: [object], closed: false });
    const [bytes] = await admin.unsafe(
      `select encode(convert_to(value #>> '{}', 'UTF8'), 'hex') as hex from "${engine.schema}".stream_entries where workflow_id = $1 and key = $2`,
      [probe.workflowId, `value ${label}`],
    );
    expect(bytes).toEqual({ hex: hex(value) });
    expect(step).toEqual({ name: "Error", message: `m${text}` });
    const error = (thrown as { error: Error }).error;
    expect(error).toBeInstanceOf(RangeError);
    expect(error.message).toBe(`w${text}`);
  });

  it("keys that differ only in normalisation, an empty key and __proto__ are all kept", async () => {
    const object = JSON.parse('{"\u00e9": 1, "e\u0301": 2, "": 3, "__proto__": 4, "constructor": 5}') as Record<string, number>;
    expect(Object.keys(object)).toHaveLength(5);
    expect((await probe.run((ctx) => ctx.writeStream("odd keys", object))).ok).toBe(true);
    const { values } = await engine.readStream<Record<string, number>>(probe.workflowId, "odd keys", { wait: false });
    const back = values[0]!;
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype);
    expect(Object.entries(back).sort()).toEqual(Object.entries(object).sort());
  });

  it("a string of ~1 MB mixing every stored character comes back identical", async () => {
    const alphabet = TEXTS.filter(([, , s]) => s).map(([, t]) => t).join("") + "plain ascii €";
    let text = "";
    while (Buffer.byteLength(JSON.stringify(text + alphabet)) < 1_000_000) text += alphabet;
    expect((await probe.run((ctx) => ctx.writeStream("long", text))).ok).toBe(true);
    const { values } = await engine.readStream<string>(probe.workflowId, "long", { wait: false });
    expect(values[0] === text).toBe(true);
  });
});

const NUMBERS: [label: string, value: number][] = [
  ["1e308", 1e308],
  ["Number.MAX_VALUE", Number.MAX_VALUE],
  ["-Number.MAX_VALUE", -Number.MAX_VALUE],
  ["5e-324 (Number.MIN_VALUE)", 5e-324],
  ["-5e-324", -5e-324],
  ["2^53", 2 ** 53],
  ["2^53 + 1 (2^53 as a JS number)", 2 ** 53 + 1],
  ["-(2^53 - 1)", -Number.MAX_SAFE_INTEGER],
  ["0.1 + 0.2", 0.1 + 0.2],
  ["1.0", 1.0],
  ["1e21 (JSON writes 1e+21)", 1e21],
  ["1e-7 (JSON writes 1e-7)", 1e-7],
  ["2^-1074 × 3", 3 * 2 ** -1074],
  ["123.456", 123.456],
];

describe("numbers", () => {
  it.each(NUMBERS)("%s reads back as the same JS number, in a value, an object, an array and a step output", async (label, n) => {
    const key = `number ${label}`;
    const result = await probe.run(async (ctx) => {
      for (const v of [n, { n }, [n]]) await ctx.writeStream(key, v);
      return ctx.step(key, () => n);
    });
    expect(result).toEqual({ ok: true, value: n });
    const { values } = await engine.readStream<unknown>(probe.workflowId, key, { wait: false });
    expect(Object.is(values[0], n)).toBe(true);
    expect(Object.is((values[1] as { n: number }).n, n)).toBe(true);
    expect(Object.is((values[2] as number[])[0], n)).toBe(true);
    // jsonb keeps the exact decimal of the JSON text: its own text (often written out in
    // full, without an exponent) parses back to the same double.
    const [row] = await admin.unsafe(
      `select value::text as text from "${engine.schema}".stream_entries where workflow_id = $1 and key = $2 and "offset" = 0`,
      [probe.workflowId, key],
    );
    expect(Object.is(Number(row!.text), n)).toBe(true);
    const [step] = await admin.unsafe(`select output from "${engine.schema}".step_outputs where workflow_id = $1 and name = $2`, [probe.workflowId, key]);
    expect(Object.is(step!.output, n)).toBe(true);
  });

  it("jsonb writes 1e308 and 5e-324 out in full (documented normalisation of the text, not of the number)", async () => {
    const [row] = await admin`select ${"1e308"}::text::jsonb::text as big, ${"5e-324"}::text::jsonb::text as small`;
    expect(row!.big).toBe(`1${"0".repeat(308)}`);
    expect(row!.small).toBe(`0.${"0".repeat(323)}5`);
  });

  it("-0 is stored as 0, as the README says (JSON has no negative zero; Math.round(-0.4) must not fail a write)", async () => {
    const result = await probe.run((ctx) => ctx.writeStream("minus zero", Math.round(-0.4)));
    expect(result.ok).toBe(true);
    const { values } = await engine.readStream(probe.workflowId, "minus zero", { wait: false });
    expect(Object.is(values[0], 0), `-0 reads back as ${String(values[0])}`).toBe(true);
  });
});

describe("properties", () => {
  const unit = fc.oneof(
    { weight: 8, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }) },
    { weight: 1, arbitrary: fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c)) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 0x9f }).map((c) => String.fromCharCode(c)) },
  );
  const text = fc.string({ unit, maxLength: 40 });
  let n = 0;

  it("any string, as a value or an object key, is refused (NUL, lone surrogate) or comes back identical", async () => {
    await fc.assert(fc.asyncProperty(text, async (s) => {
      const key = `prop ${n++}`;
      const storable = !s.includes("\u0000") && s.isWellFormed();
      const result = await probe.run((ctx) => ctx.writeStream(key, [s, { [s]: s }]));
      if (!storable) {
        expectRefusal(result, SerializationError, "SERIALIZATION");
        return;
      }
      expect(result.ok).toBe(true);
      const { values } = await engine.readStream(probe.workflowId, key, { wait: false });
      expect(values).toEqual([[s, { [s]: s }]]);
    }), { numRuns: 200 });
  });

  it("any double but -0 is refused (NaN, ±Infinity) or comes back as the same number", async () => {
    await fc.assert(fc.asyncProperty(fc.double().filter((d) => !Object.is(d, -0)), async (d) => {
      const key = `double ${n++}`;
      const result = await probe.run((ctx) => ctx.writeStream(key, d));
      if (!Number.isFinite(d)) {
        expectRefusal(result, SerializationError, "SERIALIZATION");
        return;
      }
      const { values } = await engine.readStream(probe.workflowId, key, { wait: false });
      expect(Object.is(values[0], d)).toBe(true);
    }), { numRuns: 200 });
  });
});
