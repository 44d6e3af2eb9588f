// Edge matrix 2, names: workflow ids, stream keys, workflow names, step names and
// executor ids at the edges of what Postgres accepts. A name accepted round-trips
// exactly, in every role at once (a workflow of that name, started with that id by an
// engine of that executor id, runs a step of that name and writes to the key of that
// name), byte for byte as stored. A name refused is an InvalidArgumentError naming the
// role, with nothing written. Schema names are in edges.schema.test.ts.
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine, InvalidArgumentError, type Workflow } from "../src/index.js";
import { counts, expectRefusal, hex, outcome, startProbe, type Probe } from "./edges.support.js";
import { admin, databaseUrl, openEngine, uniqueSchema, within } from "./support/engines.js";

const NFC = "\u00e9"; // é as one code point
const NFD = "e\u0301"; // e + combining acute accent

const ACCEPTED: [label: string, name: string][] = [
  ["1 character", "a"],
  ["200 characters (the limit)", "n".repeat(200)],
  ["200 three-byte characters (600 bytes)", "€".repeat(200)],
  ["100 four-byte emoji (200 UTF-16 units, 400 bytes)", "🦀".repeat(100)],
  ["200 double quotes (escaped twice in a NOTIFY payload)", '"'.repeat(200)],
  ["200 backslashes", "\\".repeat(200)],
  ["a single quote", "it's"],
  ["quotes of both kinds", `'"'"`],
  ["a backslash before a quote", "\\'"],
  ["LIKE wildcards %", "100%"],
  ["LIKE wildcard _", "a_c"],
  ["dollar quoting", "$$x$$"],
  ["a placeholder", "$1"],
  ["SQL keywords", "select"],
  ["an SQL statement", "'; drop table workflow_status; --"],
  ["NULL", "NULL"],
  ["the pg_ prefix", "pg_catalog"],
  ["the pgtide prefix", "pgtide.public"],
  ["the __drizzle prefix", "__drizzle_migrations"],
  ["a space at the start", " lead"],
  ["a space at the end", "trail "],
  ["one space", " "],
  ["é composed (NFC)", NFC],
  ["é decomposed (NFD)", NFD],
  ["a zero-width space inside", "a\u200bb"],
  ["a zero-width joiner alone", "\u200d"],
  ["a word joiner", "\u2060"],
  ["a right-to-left mark", "\u200fabc"],
  ["a right-to-left override", "\u202eabc"],
  ["a left-to-right mark at the end", "abc\u200e"],
  ["a BOM", "\ufeffbom"],
  ["U+2028 and U+2029", "a\u2028b\u2029c"],
  ["U+FFFE and U+FFFF", "\ufffe\uffff"],
  ["U+10FFFF", "\u{10ffff}"],
  ["Hebrew", "שלום"],
];

const REFUSED: [label: string, name: string, says: string][] = [
  ["empty", "", "empty"],
  ["201 characters", "n".repeat(201), "200"],
  ["a lone high surrogate", "a\ud800", "surrogate"],
  ["a lone low surrogate", "\udfffb", "surrogate"],
  ["a reversed surrogate pair", "\udc00\ud800", "surrogate"],
  ["NUL", "a\u0000b", "control"],
  ["a tab", "a\tb", "control"],
  ["a newline", "a\nb", "control"],
  ["a carriage return", "a\rb", "control"],
  ["ESC (terminal escapes)", "a\u001b[31mred", "control"],
  ["U+001F", "a\u001fb", "control"],
  ["DEL", "a\u007fb", "control"],
  // C1 controls are control characters too (Unicode Cc); U+009B is a terminal CSI.
  ["U+0085 (C1 next line)", "a\u0085b", "control"],
  ["U+009B (C1 CSI)", "a\u009b31mb", "control"],
];

let engine: Engine;
let probe: Probe;
let echo: Workflow<unknown, unknown>;

beforeAll(async () => {
  engine = await openEngine({ poolSize: 4 });
  probe = await startProbe(engine);
  echo = engine.workflow("echo", async (_ctx, input: unknown) => input);
});
afterAll(() => probe.stop());

describe("names accepted round-trip exactly in every role", () => {
  it.each(ACCEPTED)("%s", async (_, name) => {
    expect(name.isWellFormed()).toBe(true);
    // An engine whose executor id is the name, in the shared schema.
    const mine = await openEngine({ schema: engine.schema, executorId: name, poolSize: 1 });
    const wf = mine.workflow(name, async (ctx, input: string) => {
      const stepped = await ctx.step(name, () => input);
      await ctx.writeStream(name, stepped);
      return stepped;
    });
    const handle = await wf.start(name, { workflowId: name });
    expect(handle.workflowId).toBe(name);
    expect(await within(10_000, "the workflow", handle.getResult())).toBe(name);

    const row = await engine.getWorkflow(name);
    expect(row).toMatchObject({ workflowId: name, name, executorId: name, status: "SUCCESS", output: name });
    expect(await engine.readStream(name, name)).toEqual({ values: [name], closed: true });
    expect(await engine.listWorkflows({ name })).toEqual([row]);
    // As stored: the same bytes (no trimming, normalisation or escaping on the way).
    const [stored] = await admin.unsafe(
      `select encode(convert_to(s.workflow_id, 'UTF8'), 'hex') as id, encode(convert_to(s.name, 'UTF8'), 'hex') as wf,
              encode(convert_to(s.executor_id, 'UTF8'), 'hex') as executor, encode(convert_to(o.name, 'UTF8'), 'hex') as step,
              (select encode(convert_to(e.key, 'UTF8'), 'hex') from "${engine.schema}".stream_entries e
                where e.workflow_id = s.workflow_id and not e.closed) as key
       from "${engine.schema}".workflow_status s join "${engine.schema}".step_outputs o using (workflow_id)
       where s.workflow_id = $1`,
      [name],
    );
    expect(stored).toEqual({ id: hex(name), wf: hex(name), executor: hex(name), step: hex(name), key: hex(name) });
  });

  it("é composed and é decomposed are two ids, two keys and two names, each its own", async () => {
    expect(NFC.normalize("NFD")).toBe(NFD);
    for (const id of [NFC, NFD]) {
      expect(await engine.getWorkflow(id)).toMatchObject({ workflowId: id, name: id });
      expect(await engine.readStream(id, id)).toEqual({ values: [id], closed: true });
      expect(await engine.listWorkflows({ name: id })).toHaveLength(1);
    }
    // One workflow, one key each: no value crosses over.
    const result = await probe.run(async (ctx) => {
      await ctx.writeStream(NFC, "composed");
      await ctx.writeStream(NFD, "decomposed");
    });
    expect(result.ok).toBe(true);
    expect(await engine.readStream(probe.workflowId, NFC, { wait: false })).toEqual({ values: ["composed"], closed: false });
    expect(await engine.readStream(probe.workflowId, NFD, { wait: false })).toEqual({ values: ["decomposed"], closed: false });
  });

  it("LIKE wildcards in a name filter match only themselves", async () => {
    await within(10_000, "echo", (await echo.start("x", { workflowId: "abc" })).getResult());
    expect((await engine.listWorkflows({ name: "a_c" })).map((r) => r.workflowId)).toEqual(["a_c"]);
    expect((await engine.listWorkflows({ name: "100%" })).map((r) => r.workflowId)).toEqual(["100%"]);
  });

  it("200 four-byte emoji (200 characters, 400 UTF-16 units): accepted and round-trips, or refused by a message that counts in the unit it measures", async () => {
    const id = "🦀".repeat(200);
    const before = await counts(engine.schema);
    const result = await outcome(() => echo.start("emoji", { workflowId: id }));
    if (result.ok) {
      expect(await engine.getWorkflow(id)).toMatchObject({ workflowId: id });
      return;
    }
    const error = expectRefusal(result, InvalidArgumentError, "INVALID_ARGUMENT", "workflowId");
    expect(await counts(engine.schema)).toEqual(before);
    // 200 emoji are 200 characters (the README's "limited to 200 characters"); calling them
    // "400 characters long" misleads: say UTF-16 code units, or count code points.
    expect(error.message).not.toMatch(/\b400 characters\b/);
  });
});

describe("names refused, in every role, with nothing written", () => {
  it.each(REFUSED)("%s", async (_, name, says) => {
    const before = await counts(engine.schema);
    const roles: [string, () => unknown][] = [
      ["workflowId", () => echo.start("input", { workflowId: name })],
      ["workflowId", () => engine.getWorkflow(name)],
      ["workflowId", () => engine.readStream(name, "k")],
      ["workflow name", () => engine.workflow(name, async () => 1)],
      ["workflow name", () => engine.listWorkflows({ name })],
      ["stream key", () => probe.run((ctx) => ctx.writeStream(name, "v")).then((o) => { if (!o.ok) throw o.error; })],
      ["stream key", () => probe.run((ctx) => ctx.closeStream(name)).then((o) => { if (!o.ok) throw o.error; })],
      ["stream key", () => engine.readStream(probe.workflowId, name, { wait: false })],
      ["step name", () => probe.run((ctx) => ctx.step(name, () => 1)).then((o) => { if (!o.ok) throw o.error; })],
    ];
    for (const [role, use] of roles) {
      expectRefusal(await outcome(use), InvalidArgumentError, "INVALID_ARGUMENT", role, says);
    }
    const schema = uniqueSchema("names");
    expectRefusal(await outcome(() => Engine.open({ databaseUrl, schema, executorId: name })), InvalidArgumentError, "INVALID_ARGUMENT", "executorId", says);
    const [created] = await admin`select count(*)::int as n from pg_namespace where nspname = ${schema}`;
    expect(created).toEqual({ n: 0 });
    expect(await counts(engine.schema)).toEqual(before);
  });
});

describe("any string as a workflow id and a key (property)", () => {
  const char = fc.oneof(
    { weight: 6, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }) },
    { weight: 1, arbitrary: fc.integer({ min: 0xd800, max: 0xdfff }).map((n) => String.fromCharCode(n)) },
    { weight: 1, arbitrary: fc.constantFrom("\u0000", "\u0085", "\u009b", "\u007f", "\n", "'", '"', "\\", "%", "$$", "\u200b", "\ufeff", NFD) },
  );
  const name = fc.oneof(fc.string({ unit: char, maxLength: 12 }), fc.string({ unit: char, minLength: 195, maxLength: 205 }));
  const escaped = (s: string) => JSON.stringify(s).replace(/[^\x20-\x7e]/gu, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
  const legal = (s: string) => s.length >= 1 && s.length <= 200 && s.isWellFormed() && !/[\u0000-\u001f\u007f-\u009f]/.test(s);

  it("is refused (InvalidArgumentError, nothing written) or round-trips byte for byte", async () => {
    // Ids used above belong to other workflow names: starting them as "echo" is a conflict.
    // (An id generated twice finds its own "echo" workflow: start returns it.)
    const taken = new Set<string>([...ACCEPTED.map(([, n]) => n), "abc", probe.workflowId]);
    await fc.assert(
      fc.asyncProperty(name.filter((id) => !taken.has(id)), async (id) => {
        const before = await counts(engine.schema);
        const started = await outcome(() => echo.start(id, { workflowId: id }));
        if (!legal(id)) {
          // (fast-check prints C1 controls raw, i.e. invisibly: name the code points.)
          if (started.ok) throw new Error(`accepted the id ${escaped(id)}`);
          expectRefusal(started, InvalidArgumentError, "INVALID_ARGUMENT", "workflowId");
          expect(await counts(engine.schema)).toEqual(before);
          const write = await probe.run((ctx) => ctx.writeStream(id, 1));
          expectRefusal(write, InvalidArgumentError, "INVALID_ARGUMENT", "stream key");
          return;
        }
        expect(started.ok, String((started as { error?: unknown }).error)).toBe(true);
        expect(await within(10_000, "echo", engine.retrieveWorkflow(id).getResult())).toBe(id);
        const [row] = await admin.unsafe(
          `select encode(convert_to(workflow_id, 'UTF8'), 'hex') as id from "${engine.schema}".workflow_status where workflow_id = $1`, [id],
        );
        expect(row).toEqual({ id: hex(id) });
        const write = await probe.run((ctx) => ctx.writeStream(id, id));
        expect(write.ok).toBe(true);
        const { values } = await engine.readStream(probe.workflowId, id, { wait: false });
        expect(values.at(-1)).toBe(id);
      }),
      { numRuns: 150 },
    );
  });
});
