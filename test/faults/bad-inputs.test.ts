// Scenario 8: a corpus of bad inputs across the API. Each must be refused with a named
// PgtideError and its code, and the row counts of every table of the engine must be the
// same after the refusal as before (and a refused schema name must not exist).
// test/inputs.invalid.test.ts specifies the same rule case by case for the core; this is
// the table-driven corpus the fault suite reports on.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Engine, InvalidArgumentError, PgtideError, SerializationError, StreamClosedError, WorkflowConflictError,
  WorkflowFinishedError, WorkflowNotFoundError, type EngineOptions, type ErrorCode, type Workflow, type WorkflowContext,
} from "../../src/index.js";
import { admin, databaseUrl, openEngine } from "../support/engines.js";
import { faultReport } from "./support/report.js";
import { deadline } from "./support/wait.js";

type ErrorClass = new (...args: never[]) => PgtideError;
interface Case {
  name: string;
  /** Where the call runs: inside the probe workflow (with its context), or outside. */
  run: { ctx: (ctx: WorkflowContext) => unknown } | { engine: (engine: Engine) => unknown } | { open: EngineOptions | unknown };
  error: ErrorClass;
  code: ErrorCode;
}

const MAX_VALUE_BYTES = 4096;
const cyclic = (): unknown => {
  const a: Record<string, unknown> = { name: "a" };
  a.self = a;
  return a;
};
const cyclicArray = (): unknown => {
  const a: unknown[] = [1];
  a.push(a);
  return a;
};
class Point {
  constructor(readonly x = 1) {}
}
const write = (value: unknown) => ({ ctx: (ctx: WorkflowContext) => ctx.writeStream("values", value) });
const writeKey = (key: unknown) => ({ ctx: (ctx: WorkflowContext) => ctx.writeStream(key as string, "v") });
const read = (options: unknown, key = "values") => ({
  engine: (e: Engine) => e.readStreamEntries(probeId, key, options as never).next(),
});
const open = (options: unknown) => ({ open: options });
const ser = (name: string, value: unknown): Case => ({ name, run: write(value), error: SerializationError, code: "SERIALIZATION" });
const arg = (name: string, run: Case["run"]): Case => ({ name, run, error: InvalidArgumentError, code: "INVALID_ARGUMENT" });

let probeId = "";
let finishedCtx: WorkflowContext | undefined;

const CASES: Case[] = [
  // Values JSON cannot carry faithfully, or past the size limit.
  ser("value: undefined", undefined),
  ser("value: a function", () => 1),
  ser("value: a symbol", Symbol("s")),
  ser("value: a bigint", 10n),
  ser("value: NaN", NaN),
  ser("value: Infinity", Infinity),
  ser("value: -Infinity", -Infinity),
  ser("value: a cyclic object", cyclic()),
  ser("value: a cyclic array", cyclicArray()),
  ser("value: a Date", new Date(0)),
  ser("value: a Map", new Map([["a", 1]])),
  ser("value: a Set", new Set([1])),
  ser("value: a class instance", new Point()),
  ser("value: a Uint8Array", new Uint8Array([1, 2])),
  ser("value: a sparse array", [1, , 3]),
  ser("value: an object with a symbol key", { [Symbol("k")]: 1, a: 1 }),
  ser("value: a nested undefined", { a: { b: undefined } }),
  ser("value: a string with NUL", "a\u0000b"),
  ser("value: a lone surrogate", "a\ud800b"),
  ser("value: an object key with NUL", { "k\u0000": 1 }),
  ser(`value: past maxValueBytes (${MAX_VALUE_BYTES})`, "x".repeat(MAX_VALUE_BYTES + 1)),
  ser("value: multi-byte text past maxValueBytes", "é".repeat(MAX_VALUE_BYTES / 2 + 1)),
  // Stream keys.
  arg("key: empty", writeKey("")),
  arg("key: 201 characters", writeKey("k".repeat(201))),
  arg("key: a number", writeKey(42)),
  arg("key: null", writeKey(null)),
  arg("key: a newline", writeKey("a\nb")),
  arg("key: NUL", writeKey("\u0000")),
  arg("key: a lone surrogate", writeKey("\udc00")),
  arg("closeStream key: empty", { ctx: (ctx) => ctx.closeStream("") }),
  // Writes that the stream's or the workflow's state forbids.
  { name: "write after close", run: { ctx: (ctx) => ctx.writeStream("closed", 1) }, error: StreamClosedError, code: "STREAM_CLOSED" },
  { name: "write through a finished workflow's context", run: { engine: () => finishedCtx!.writeStream("late", 1) }, error: WorkflowFinishedError, code: "WORKFLOW_FINISHED" },
  { name: "step through a finished workflow's context", run: { engine: () => finishedCtx!.step("late", () => 1) }, error: WorkflowFinishedError, code: "WORKFLOW_FINISHED" },
  // Steps.
  arg("step name: empty", { ctx: (ctx) => ctx.step("", () => 1) }),
  arg("step: not a function", { ctx: (ctx) => ctx.step("s", "nope" as never) }),
  arg("step retries: -1", { ctx: (ctx) => ctx.step("s", () => 1, { retries: -1 }) }),
  arg("step retries: 1.5", { ctx: (ctx) => ctx.step("s", () => 1, { retries: 1.5 }) }),
  // Starting workflows.
  arg("workflowId: empty", { engine: () => target.start(undefined, { workflowId: "" }) }),
  arg("workflowId: 201 characters", { engine: () => target.start(undefined, { workflowId: "w".repeat(201) }) }),
  arg("workflowId: a number", { engine: () => target.start(undefined, { workflowId: 7 as never }) }),
  arg("workflowId: a tab", { engine: () => target.start(undefined, { workflowId: "a\tb" }) }),
  arg("start options: a string", { engine: () => target.start(undefined, "opts" as never) }),
  { name: "start input: cyclic", run: { engine: () => target.start(cyclic()) }, error: SerializationError, code: "SERIALIZATION" },
  { name: "start input: NaN inside", run: { engine: () => target.start({ n: NaN }) }, error: SerializationError, code: "SERIALIZATION" },
  { name: "workflowId taken by another workflow name", run: { engine: () => target.start(undefined, { workflowId: probeId }) }, error: WorkflowConflictError, code: "WORKFLOW_CONFLICT" },
  // Offsets, including strings as a Last-Event-ID header carries them.
  arg("fromOffset: -1", read({ fromOffset: -1 })),
  arg("fromOffset: 1.5", read({ fromOffset: 1.5 })),
  arg("fromOffset: NaN", read({ fromOffset: NaN })),
  arg("fromOffset: 2^53", read({ fromOffset: 2 ** 53 })),
  arg('fromOffset: "5" (a Last-Event-ID string)', read({ fromOffset: "5" })),
  arg('fromOffset: "abc"', read({ fromOffset: "abc" })),
  arg('fromOffset: "1e3"', read({ fromOffset: "1e3" })),
  arg('fromOffset: " 7"', read({ fromOffset: " 7" })),
  arg('fromOffset: "-1"', read({ fromOffset: "-1" })),
  arg("read options: a number", read(5)),
  arg("read signal: a plain object", read({ signal: {} })),
  arg("read key: empty", read({}, "")),
  arg('readStream wait: "yes"', { engine: (e) => e.readStream(probeId, "values", { wait: "yes" as never }) }),
  { name: "readStream of an unknown workflow", run: { engine: (e) => e.readStream("no-such-workflow", "values", { wait: false }) }, error: WorkflowNotFoundError, code: "WORKFLOW_NOT_FOUND" },
  // Other engine calls.
  { name: "getWorkflow of an unknown id", run: { engine: (e) => e.getWorkflow("no-such-workflow") }, error: WorkflowNotFoundError, code: "WORKFLOW_NOT_FOUND" },
  { name: "cancelWorkflow of an unknown id", run: { engine: (e) => e.cancelWorkflow("no-such-workflow") }, error: WorkflowNotFoundError, code: "WORKFLOW_NOT_FOUND" },
  arg("listWorkflows limit: -1", { engine: (e) => e.listWorkflows({ limit: -1 }) }),
  arg("retrieveWorkflow id: empty", { engine: (e) => e.retrieveWorkflow("") }),
  arg("workflow name: empty", { engine: (e) => e.workflow("", async () => 1) }),
  arg("workflow function: not a function", { engine: (e) => e.workflow("not_fn", "nope" as never) }),
  arg("workflow name: registered twice", { engine: (e) => e.workflow("probe", async () => 1) }),
  // Engine options: refused before a schema is created or a connection made.
  arg('schema: "Bad-Name"', open({ schema: "Bad-Name" })),
  arg('schema: "1abc"', open({ schema: "1abc" })),
  arg('schema: "a; drop schema public"', open({ schema: "a; drop schema public" })),
  arg("schema: 51 characters", open({ schema: "s".repeat(51) })),
  arg("databaseUrl: mysql://", open({ databaseUrl: "mysql://localhost/x" })),
  arg("poolSize: 0", open({ poolSize: 0 })),
  arg("poolSize: 1.5", open({ poolSize: 1.5 })),
  arg('heartbeatMs: "1000"', open({ heartbeatMs: "1000" })),
  arg("retryTimeoutMs: -5", open({ retryTimeoutMs: -5 })),
  arg("an unknown option", open({ pollMs: 5 })),
  arg("options: a string", open("opts")),
];

const report = faultReport(
  8,
  "Bad input corpus",
  `${CASES.length} bad inputs across the API (values JSON cannot represent or past maxValueBytes, bad keys and ids, ` +
    "write after close, writes through a finished workflow's context, bad step options, bad offsets including " +
    "Last-Event-ID-like strings, unknown workflows, bad Engine.open options and schema names). Each must be refused " +
    "with the named error class and its code; the row counts of the engine's three tables are compared before and " +
    "after each one, and a refused schema name must not exist. Written counts rows the refusals changed (must be 0).",
);

let engine: Engine;
let target: Workflow<unknown, unknown>;
const jobs: { action: (ctx: WorkflowContext) => unknown; done: (outcome: { error?: unknown }) => void }[] = [];
let wakeProbe: (() => void) | undefined;
let stopProbe = false;

beforeAll(async () => {
  engine = await openEngine({ maxValueBytes: MAX_VALUE_BYTES });
  // A workflow that stays PENDING and runs, with its context, whatever the cases give it.
  const probe = engine.workflow("probe", async (ctx) => {
    await ctx.closeStream("closed");
    for (;;) {
      const job = jobs.shift();
      if (job) {
        try {
          await job.action(ctx);
          job.done({});
        } catch (error) {
          job.done({ error });
        }
        continue;
      }
      if (stopProbe) return;
      await new Promise<void>((resolve) => (wakeProbe = resolve));
    }
  });
  probeId = (await probe.start()).workflowId;
  const keep = engine.workflow("keep_ctx", async (ctx) => {
    finishedCtx = ctx;
  });
  await (await keep.start()).getResult();
  target = engine.workflow<unknown, unknown>("target", async () => 1);
  await inProbe(() => undefined); // the probe has closed "closed" before any case runs
});

afterAll(() => {
  stopProbe = true;
  wakeProbe?.();
});

function inProbe(action: (ctx: WorkflowContext) => unknown): Promise<{ error?: unknown }> {
  return deadline(10_000, "the probe workflow", new Promise((done) => {
    jobs.push({ action, done });
    wakeProbe?.();
  }));
}

async function rowCounts(): Promise<Record<string, number>> {
  const [row] = await admin.unsafe(
    `select (select count(*) from "${engine.schema}".workflow_status)::int as workflows,
            (select count(*) from "${engine.schema}".step_outputs)::int as steps,
            (select count(*) from "${engine.schema}".stream_entries)::int as entries`,
  );
  return row as Record<string, number>;
}

let refused = 0;
let rowsLeft = 0;

describe(`${CASES.length} bad inputs, each refused with a named error and nothing written`, () => {
  it.each(CASES.map((c) => [c.name, c] as const))("%s", async (_, c) => {
    const before = await rowCounts();
    let error: unknown;
    if ("ctx" in c.run) {
      error = (await inProbe(c.run.ctx)).error;
    } else {
      try {
        if ("engine" in c.run) await c.run.engine(engine);
        else {
          const options = c.run.open;
          const opened = await Engine.open(
            (typeof options === "object" && options !== null ? { databaseUrl, ...options } : options) as EngineOptions,
          ).catch((e: unknown) => e);
          if (opened instanceof Engine) await opened.close();
          else throw opened;
        }
      } catch (e) {
        error = e;
      }
    }
    const after = await rowCounts();
    rowsLeft += Math.abs(after.workflows! - before.workflows!) + Math.abs(after.steps! - before.steps!) + Math.abs(after.entries! - before.entries!);
    expect(error, "the input was accepted").toBeDefined();
    expect(error).toBeInstanceOf(c.error);
    expect(error).toMatchObject({ name: c.error.name, code: c.code });
    expect((error as Error).message).not.toBe("");
    expect(after).toEqual(before);
    const schema = "open" in c.run ? (c.run.open as { schema?: unknown })?.schema : undefined;
    if (typeof schema === "string") {
      const [created] = await admin`select count(*)::int as n from pg_namespace where nspname = ${schema} or nspname = ${schema.toLowerCase()}`;
      expect(created).toEqual({ n: 0 });
    }
    refused++;
  });

  it("reports the corpus", () => {
    report.fault("bad input{s} refused", refused);
    report.wrote(rowsLeft);
    const byCode = new Map<string, number>();
    for (const c of CASES) byCode.set(c.code, (byCode.get(c.code) ?? 0) + 1);
    report.note(`${refused} of ${CASES.length} refused as expected; by code: ${[...byCode].map(([code, n]) => `${code} ${n}`).join(", ")}; ${rowsLeft} rows changed`);
    expect(CASES.length).toBeGreaterThanOrEqual(30);
    expect(refused).toBe(CASES.length);
    expect(rowsLeft).toBe(0);
  });
});
