import { readFileSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import {
  Engine, InvalidArgumentError, PgtideError, SerializationError, StreamClosedError, WorkflowFinishedError,
  WorkflowNotFoundError, type EngineOptions, type ErrorCode, type Workflow, type WorkflowContext,
} from "../src/index.js";
import { admin, collect, databaseUrl, openEngine, uniqueSchema, within } from "./support/engines.js";

// Bad input is refused before anything is written (DESIGN.md, invariant 8): every case
// below checks the error's class, name and code, and that the row counts of the
// engine's tables are the same after the refusal as before it.

type PgtideErrorClass = new (...args: never[]) => PgtideError;

interface Counts {
  workflows: number;
  steps: number;
  entries: number;
}

async function counts(schema: string): Promise<Counts> {
  const [row] = await admin.unsafe<Counts[]>(
    `select (select count(*) from "${schema}".workflow_status)::int as workflows,
            (select count(*) from "${schema}".step_outputs)::int as steps,
            (select count(*) from "${schema}".stream_entries)::int as entries`,
  );
  return row!;
}

/** What `fn` threw or rejected with; fails the test if it succeeded. */
async function errorOf(fn: () => unknown, what = "the input"): Promise<unknown> {
  try {
    await fn();
  } catch (error) {
    return error;
  }
  throw new Error(`expected ${what} to be refused, but it was accepted`);
}

function expectNamedError(error: unknown, cls: PgtideErrorClass, code: ErrorCode): void {
  expect(error).toBeInstanceOf(cls);
  expect(error).toBeInstanceOf(PgtideError);
  expect(error).toMatchObject({ name: cls.name, code });
  expect((error as Error).message.length).toBeGreaterThan(0);
}

/** Runs `fn` outside any workflow and returns its error and whether any row changed. */
async function refusedOutside(
  schema: string, fn: () => unknown, what?: string,
): Promise<{ error: unknown; before: Counts; after: Counts }> {
  const before = await counts(schema);
  const error = await errorOf(fn, what);
  return { error, before, after: await counts(schema) };
}

/**
 * Each engine gets an "attempt" workflow that runs a given action against its context,
 * counting the rows just before and just after it.
 */
interface Attempts {
  run(attempt: (ctx: WorkflowContext) => unknown): Promise<{ error: unknown; before: Counts; after: Counts }>;
}

function attemptsOn(engine: Engine): Attempts {
  const actions = new Map<string, (ctx: WorkflowContext) => unknown>();
  const outcomes = new Map<string, { error: unknown; before: Counts; after: Counts }>();
  let next = 0;
  const wf = engine.workflow("attempt", async (ctx) => {
    const action = actions.get(ctx.workflowId)!;
    const before = await counts(engine.schema);
    const error = await errorOf(() => action(ctx));
    outcomes.set(ctx.workflowId, { error, before, after: await counts(engine.schema) });
  });
  return {
    async run(attempt) {
      const workflowId = `attempt-${next++}`;
      actions.set(workflowId, attempt);
      await within(10_000, "the attempt workflow", (await wf.start(undefined, { workflowId })).getResult());
      return outcomes.get(workflowId)!;
    },
  };
}

let engine: Engine;
let attempts: Attempts;
let echo: Workflow<unknown, unknown>;
/** A workflow that exists, for reads with bad arguments. */
let existingId: string;

beforeAll(async () => {
  engine = await openEngine();
  attempts = attemptsOn(engine);
  echo = engine.workflow("echo", async (_ctx, input: unknown) => input);
  const writer = engine.workflow("writer", async (ctx) => {
    await ctx.writeStream("k", 1);
  });
  const handle = await writer.start();
  await handle.getResult();
  existingId = handle.workflowId;
});

const circular: Record<string, unknown> = { a: 1 };
circular.self = circular;
class Point {
  constructor(readonly x: number, readonly y: number) {}
}
const sparse = [1, , 3];

/** [label, value, also refused as a workflow input] — undefined as input means "no input". */
const badValues: [string, unknown, boolean][] = [
  ["a BigInt", 10n, true],
  ["a function", () => 1, true],
  ["a circular object", circular, true],
  ["undefined", undefined, false],
  ["undefined inside an object", { a: undefined }, true],
  ["NaN", Number.NaN, true],
  ["Infinity", Number.POSITIVE_INFINITY, true],
  ["-Infinity inside an array", [1, Number.NEGATIVE_INFINITY], true],
  ["a Map", new Map([["a", 1]]), true],
  ["a Set", new Set([1]), true],
  ["a Date", new Date(0), true],
  ["a class instance", new Point(1, 2), true],
  ["a sparse array", sparse, true],
  ['a string with "\\u0000"', "a\u0000b", true],
  ["a lone surrogate", "ab\ud800", true],
  ["a lone surrogate in an object key", { "\udc00": 1 }, true],
  ["a symbol", Symbol("s"), true],
  ["an object with a symbol key", { [Symbol("k")]: 1 }, true],
  ["a BigInt deep inside", { list: [1, { n: 1n }] }, true],
];

describe("values JSON cannot store faithfully are refused with SerializationError", () => {
  for (const [label, value, asInput] of badValues) {
    it(`${label}: writeStream rejects and stores nothing`, async () => {
      const { error, before, after } = await attempts.run((ctx) => ctx.writeStream("s", value));
      expectNamedError(error, SerializationError, "SERIALIZATION");
      expect((error as Error).message).toContain('stream "s"');
      expect(after).toEqual(before);
    });
    if (asInput) {
      it(`${label}: as a workflow input, start rejects and creates no workflow`, async () => {
        const { error, before, after } = await refusedOutside(engine.schema, () => echo.start(value));
        expectNamedError(error, SerializationError, "SERIALIZATION");
        expect(after).toEqual(before);
      });
    }
  }

  it("a refused write takes no offset: the next write in the same workflow is at offset 0", async () => {
    const wf = engine.workflow("refused-then-ok", async (ctx) => {
      await errorOf(() => ctx.writeStream("s", Number.NaN));
      await ctx.writeStream("s", "ok");
    });
    const handle = await wf.start();
    await handle.getResult();
    expect(await collect(engine.readStreamEntries(handle.workflowId, "s"))).toEqual([{ offset: 0, value: "ok" }]);
  });

  it("a step whose output cannot be stored fails with SerializationError (its outcome), which workflow code can catch", async () => {
    const wf = engine.workflow("bad-step-output", async (ctx) => {
      const error = await errorOf(() => ctx.step("returns-a-map", () => new Map()));
      return { name: (error as Error).name, code: (error as PgtideError).code };
    });
    const handle = await wf.start();
    expect(await handle.getResult()).toEqual({ name: "SerializationError", code: "SERIALIZATION" });
  });

  it("a workflow whose return value cannot be stored ends in ERROR with SerializationError", async () => {
    const wf = engine.workflow("bad-output", async () => new Date(0));
    const handle = await wf.start();
    const error = await errorOf(() => handle.getResult());
    expectNamedError(error, SerializationError, "SERIALIZATION");
    expect(await handle.getStatus()).toBe("ERROR");
  });
});

describe("values larger than maxValueBytes are refused with SerializationError", () => {
  let small: Engine;
  let smallAttempts: Attempts;
  let smallEcho: Workflow<unknown, unknown>;
  beforeAll(async () => {
    small = await openEngine({ maxValueBytes: 64 });
    smallAttempts = attemptsOn(small);
    smallEcho = small.workflow("echo", async (_ctx, input: unknown) => input);
  });

  it("a value of exactly the limit in JSON bytes is stored; one byte more is refused, storing nothing", async () => {
    const atLimit = "x".repeat(62); // 64 bytes with its quotes
    const ok = await small.workflow("at-limit", async (ctx) => {
      await ctx.writeStream("s", atLimit);
      await ctx.writeStream("s", "é".repeat(31)); // 2 bytes each in UTF-8: 64
    }).start();
    await ok.getResult();
    expect(await small.readStream(ok.workflowId, "s")).toEqual({ values: [atLimit, "é".repeat(31)], closed: true });

    for (const value of ["x".repeat(63), "é".repeat(32), { list: Array.from({ length: 30 }, (_, i) => i) }]) {
      const { error, before, after } = await smallAttempts.run((ctx) => ctx.writeStream("s", value));
      expectNamedError(error, SerializationError, "SERIALIZATION");
      expect((error as Error).message).toContain("maxValueBytes");
      expect(after).toEqual(before);
    }
  });

  it("a workflow input over the limit: start rejects and creates no workflow", async () => {
    const { error, before, after } = await refusedOutside(small.schema, () => smallEcho.start("y".repeat(100)));
    expectNamedError(error, SerializationError, "SERIALIZATION");
    expect(after).toEqual(before);
  });
});

/** Names: stream keys, workflow ids, step names. [label, value] */
const badNames: [string, unknown][] = [
  ["empty", ""],
  ["201 characters long", "k".repeat(201)],
  ["a number", 7],
  ["null", null],
  ["undefined", undefined],
  ['containing "\\n"', "a\nb"],
  ['containing "\\u0000"', "a\u0000b"],
  ["a lone surrogate", "a\ud800"],
];

describe("bad stream keys are refused with InvalidArgumentError", () => {
  for (const [label, key] of badNames) {
    it(`a key (${label}): writeStream and closeStream reject inside a workflow, storing nothing`, async () => {
      for (const attempt of [
        (ctx: WorkflowContext) => ctx.writeStream(key as string, "v"),
        (ctx: WorkflowContext) => ctx.closeStream(key as string),
      ]) {
        const { error, before, after } = await attempts.run(attempt);
        expectNamedError(error, InvalidArgumentError, "INVALID_ARGUMENT");
        expect((error as Error).message).toContain("stream key");
        expect(after).toEqual(before);
      }
    });

    it(`a key (${label}): readStream, readStreamAsync and readStreamEntries refuse it`, async () => {
      for (const read of [
        () => engine.readStream(existingId, key as string),
        () => engine.readStream(existingId, key as string, { wait: false }),
        () => collect(engine.readStreamAsync(existingId, key as string)),
        () => collect(engine.readStreamEntries(existingId, key as string)),
      ]) {
        const { error, before, after } = await refusedOutside(engine.schema, read);
        expectNamedError(error, InvalidArgumentError, "INVALID_ARGUMENT");
        expect(after).toEqual(before);
      }
    });

    it(`a step name (${label}): step rejects without running the function, storing nothing`, async () => {
      let calls = 0;
      const { error, before, after } = await attempts.run((ctx) => ctx.step(key as string, () => ++calls));
      expectNamedError(error, InvalidArgumentError, "INVALID_ARGUMENT");
      expect(calls).toBe(0);
      expect(after).toEqual(before);
    });
  }

  it("a key of exactly 200 characters is accepted", async () => {
    const key = "k".repeat(200);
    const wf = engine.workflow("long-key", async (ctx) => {
      await ctx.writeStream(key, "fits");
    });
    const handle = await wf.start();
    await handle.getResult();
    expect(await engine.readStream(handle.workflowId, key)).toEqual({ values: ["fits"], closed: true });
  });
});

describe("bad workflow ids are refused with InvalidArgumentError", () => {
  for (const [label, id] of badNames) {
    if (id === undefined) continue; // no id: start picks one, the others require it (checked by type)
    it(`a workflow id (${label}): start creates nothing, and every call taking an id refuses it`, async () => {
      const uses: [string, () => unknown][] = [
        ["start", () => echo.start("input", { workflowId: id as string })],
        ["retrieveWorkflow", () => engine.retrieveWorkflow(id as string)],
        ["getWorkflow", () => engine.getWorkflow(id as string)],
        ["cancelWorkflow", () => engine.cancelWorkflow(id as string)],
        ["waitForWorkflow", () => engine.waitForWorkflow(id as string)],
        ["readStream", () => engine.readStream(id as string, "k")],
        ["readStreamAsync", () => collect(engine.readStreamAsync(id as string, "k"))],
        ["readStreamEntries", () => collect(engine.readStreamEntries(id as string, "k"))],
      ];
      for (const [what, use] of uses) {
        const { error, before, after } = await refusedOutside(engine.schema, use, `${what} with workflowId ${label}`);
        expect(error, what).toBeInstanceOf(InvalidArgumentError);
        expectNamedError(error, InvalidArgumentError, "INVALID_ARGUMENT");
        expect((error as Error).message, what).toContain("workflowId");
        expect(after, what).toEqual(before);
      }
    });
  }
});

describe("bad read options are refused with InvalidArgumentError", () => {
  const badOffsets: [string, unknown][] = [
    ["-1", -1],
    ["1.5", 1.5],
    ['the string "3"', "3"],
    ["NaN", Number.NaN],
    ["null", null],
    ["Infinity", Number.POSITIVE_INFINITY],
    ["2^53 (not a safe integer)", 2 ** 53],
  ];
  for (const [label, fromOffset] of badOffsets) {
    it(`fromOffset ${label}`, async () => {
      const options = { fromOffset: fromOffset as number };
      for (const read of [
        () => engine.readStream(existingId, "k", options),
        () => engine.readStream(existingId, "k", { ...options, wait: false }),
        () => collect(engine.readStreamAsync(existingId, "k", options)),
        () => collect(engine.readStreamEntries(existingId, "k", options)),
      ]) {
        const { error, before, after } = await refusedOutside(engine.schema, read);
        expectNamedError(error, InvalidArgumentError, "INVALID_ARGUMENT");
        expect((error as Error).message).toContain("fromOffset");
        expect(after).toEqual(before);
      }
    });
  }

  it("wait that is not a boolean, a signal that is not an AbortSignal, options that are not an object", async () => {
    for (const read of [
      () => engine.readStream(existingId, "k", { wait: "no" as unknown as boolean }),
      () => engine.readStream(existingId, "k", { signal: {} as AbortSignal }),
      () => collect(engine.readStreamAsync(existingId, "k", { signal: "abort" as unknown as AbortSignal })),
      () => engine.readStream(existingId, "k", 5 as never),
    ]) {
      expectNamedError(await errorOf(read), InvalidArgumentError, "INVALID_ARGUMENT");
    }
  });
});

describe("an unknown workflow is named in WorkflowNotFoundError", () => {
  it("by reads, getWorkflow and getResult", async () => {
    for (const use of [
      () => engine.readStream("no-such-workflow", "k"),
      () => engine.readStream("no-such-workflow", "k", { wait: false }),
      () => collect(engine.readStreamAsync("no-such-workflow", "k")),
      () => engine.getWorkflow("no-such-workflow"),
      () => engine.retrieveWorkflow("no-such-workflow").getResult(),
    ]) {
      const { error, before, after } = await refusedOutside(engine.schema, use);
      expectNamedError(error, WorkflowNotFoundError, "WORKFLOW_NOT_FOUND");
      expect(error).toMatchObject({ workflowId: "no-such-workflow" });
      expect(after).toEqual(before);
    }
  });
});

describe("registering workflows", () => {
  it("refuses a bad name, a missing function and a name registered twice, with InvalidArgumentError", async () => {
    const fn = async () => 1;
    for (const register of [
      () => engine.workflow("", fn),
      () => engine.workflow("x".repeat(201), fn),
      () => engine.workflow(5 as unknown as string, fn),
      () => engine.workflow("no-function", "not a function" as unknown as typeof fn),
      () => engine.workflow("echo", fn),
    ]) {
      expectNamedError(await errorOf(register), InvalidArgumentError, "INVALID_ARGUMENT");
    }
  });
});

describe("writes through a context that can no longer write", () => {
  it("a write after closeStream rejects with StreamClosedError and stores nothing; other keys stay writable", async () => {
    let refusal: { error: unknown; before: Counts; after: Counts } | undefined;
    const wf = engine.workflow("close-then-write", async (ctx) => {
      await ctx.writeStream("s", "only");
      await ctx.closeStream("s");
      refusal = await refusedOutside(engine.schema, () => ctx.writeStream("s", "too late"));
      await ctx.closeStream("s"); // closing again is a no-op
      await ctx.writeStream("other", "fine");
    });
    const handle = await wf.start();
    await handle.getResult();
    expectNamedError(refusal!.error, StreamClosedError, "STREAM_CLOSED");
    expect(refusal!.error).toMatchObject({ workflowId: handle.workflowId, key: "s" });
    expect(refusal!.after).toEqual(refusal!.before);
    expect(await engine.readStream(handle.workflowId, "s")).toEqual({ values: ["only"], closed: true });
    expect(await engine.readStream(handle.workflowId, "other")).toEqual({ values: ["fine"], closed: true });
  });

  for (const ending of ["SUCCESS", "ERROR"] as const) {
    it(`writeStream, closeStream and step through the context of a workflow that ended in ${ending} reject with WorkflowFinishedError, storing nothing`, async () => {
      let kept: WorkflowContext | undefined;
      const wf = engine.workflow(`keeps-ctx-${ending}`, async (ctx) => {
        kept = ctx;
        await ctx.writeStream("s", "during");
        if (ending === "ERROR") throw new Error("ends in error");
        return "done";
      });
      const handle = await wf.start();
      await engine.waitForWorkflow(handle.workflowId);
      expect(await handle.getStatus()).toBe(ending);
      let calls = 0;
      for (const use of [
        () => kept!.writeStream("s", "after"),
        () => kept!.writeStream("fresh-key", "after"),
        () => kept!.closeStream("s"),
        () => kept!.step("late-step", () => ++calls),
      ]) {
        const { error, before, after } = await refusedOutside(engine.schema, use);
        expectNamedError(error, WorkflowFinishedError, "WORKFLOW_FINISHED");
        expect(error).toMatchObject({ workflowId: handle.workflowId });
        expect((error as Error).message).toContain(ending);
        expect(after).toEqual(before);
      }
      expect(calls).toBe(0);
      expect(await engine.readStream(handle.workflowId, "s")).toEqual({ values: ["during"], closed: true });
    });
  }
});

describe("Engine.open refuses bad options with InvalidArgumentError, creating no schema", () => {
  async function schemaExists(name: string): Promise<boolean> {
    const [row] = await admin<{ n: number }[]>`
      select count(*)::int as n from pg_namespace where nspname = ${name} or nspname = ${name.toLowerCase()}`;
    return row!.n > 0;
  }

  const badSchemas: [string, unknown][] = [
    ['"Bad-Name"', "Bad-Name"],
    ['"1abc"', "1abc"],
    ["a 60-character name", "s".repeat(60)],
    ["empty", ""],
    ['"has space"', "has space"],
    ["a number", 12],
  ];
  for (const [label, schema] of badSchemas) {
    it(`schema ${label}`, async () => {
      const error = await errorOf(() => Engine.open({ databaseUrl, schema: schema as string }));
      expectNamedError(error, InvalidArgumentError, "INVALID_ARGUMENT");
      expect((error as Error).message).toContain("schema");
      if (typeof schema === "string" && schema !== "") expect(await schemaExists(schema)).toBe(false);
    });
  }

  const badOptions: [string, Record<string, unknown>, string][] = [
    ["an unknown option name", { shcema: "x" }, '"shcema"'],
    ["poolSize 0", { poolSize: 0 }, "poolSize"],
    ["poolSize 1.5", { poolSize: 1.5 }, "poolSize"],
    ["poolSize as a string", { poolSize: "2" }, "poolSize"],
    ["maxValueBytes -1", { maxValueBytes: -1 }, "maxValueBytes"],
    ["heartbeatMs NaN", { heartbeatMs: Number.NaN }, "heartbeatMs"],
    ["an executorId with a newline", { executorId: "a\nb" }, "executorId"],
    ["a databaseUrl that is not postgres://", { databaseUrl: "mysql://localhost/db" }, "databaseUrl"],
    ["errorClasses that are not classes", { errorClasses: ["Error"] }, "errorClasses"],
  ];
  for (const [label, options, named] of badOptions) {
    it(label, async () => {
      const schema = uniqueSchema("opt");
      const error = await errorOf(() => Engine.open({ databaseUrl, schema, ...options } as EngineOptions));
      expectNamedError(error, InvalidArgumentError, "INVALID_ARGUMENT");
      expect((error as Error).message).toContain(named);
      expect(await schemaExists(schema)).toBe(false);
    });
  }
});

/** Migrations drizzle-kit recorded in its journal. */
const MIGRATIONS = (JSON.parse(readFileSync(new URL("../drizzle/meta/_journal.json", import.meta.url), "utf8")) as { entries: unknown[] }).entries.length;

describe("opening engines at once", () => {
  it("5 concurrent Engine.open on one fresh schema all succeed, and each migration is applied once", async () => {
    const schema = uniqueSchema("concurrent");
    const engines = await within(20_000, "5 concurrent opens", Promise.all(
      Array.from({ length: 5 }, (_, i) => openEngine({ schema, executorId: `exec-${i}`, poolSize: 1 })),
    ));
    expect(engines).toHaveLength(5);
    const [applied] = await admin.unsafe<{ n: number }[]>(`select count(*)::int as n from "${schema}".__drizzle_migrations`);
    expect(applied!.n).toBe(MIGRATIONS);
    // The schema works: one engine runs a workflow, another reads its stream.
    const wf = engines[0]!.workflow("after-concurrent-open", async (ctx) => {
      await ctx.writeStream("s", "hello");
    });
    const handle = await wf.start();
    await handle.getResult();
    expect(await engines[4]!.readStream(handle.workflowId, "s")).toEqual({ values: ["hello"], closed: true });
  });
});
