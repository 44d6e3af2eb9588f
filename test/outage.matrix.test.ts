// The outage matrix: every public call that talks to Postgres × every kind of outage,
// each cell one named test asserting the documented outcome (README "Guarantees", DESIGN
// invariants 10 and 11):
//
// - brief: Postgres goes away (the door closes every connection, then accepts each new
//   one and resets it: ECONNRESET) and comes back within retryTimeoutMs, once the call
//   has been refused twice: the call succeeds with the right result, nothing duplicated
//   or lost.
// - past retryTimeoutMs (refuse: nothing listens; reset: accepted, startup read, closed
//   with a FIN, as a proxy or a port forwarder with no Postgres behind it does): a call
//   rejects with ConnectionError (code CONNECTION, with a cause) within retryTimeoutMs
//   + 2 s, nothing is written, and the engine works once Postgres is back. Waiting calls
//   wait out an outage of any length and resume with the whole result; a write from
//   workflow code abandons the run, leaves the workflow PENDING (never ERROR), emits a
//   ConnectionError on 'error', and launch() finishes it with nothing written twice.
// - terminated mid-result: the call's pool backend is killed (pg_terminate_backend) after
//   it has sent part of a result (test/support/wireDoor.ts stops the result at row k and
//   says which backend pid sends it): the call is retried and returns the whole result.
// - statement error mid-result: the backend is cancelled (pg_cancel_backend, 57014) while
//   it is blocked sending a large result: it errors after some rows; the call is retried.
// - ended during an outage: a waiting call ends only on its AbortSignal (with its reason)
//   or on engine.close() (EngineClosedError).
//
// Each cell has its own door and engine, in one shared schema (unique executor ids and
// workflow names keep them apart). Outage cells run five at a time (describe.concurrent);
// mid-result cells one at a time, so that an uncaught exception is pinned on its cell. A
// worker engine connected directly (no door) writes what the waiting calls wait for, as
// another process would. Set MATRIX_REPORT=<file> to get the observed table in markdown.
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ConnectionError, Engine, EngineClosedError, WorkflowCancelledError,
  type EngineOptions, type Workflow, type WorkflowContext, type WorkflowRow,
} from "../src/index.js";
import { streamResponse } from "../src/http/index.js";
import { admin, databaseUrl, gate, uniqueSchema, within } from "./support/engines.js";
import { WireDoor, type TrapHit } from "./support/wireDoor.js";

// ---------------------------------------------------------------------------------------
// Bounds and shared data

/** retryTimeoutMs of an engine whose outage must outlast it. */
const PAST_MS = 600;
/** retryTimeoutMs of an engine whose outage must fit inside it. */
const WITHIN_MS = 5000;
/** retryTimeoutMs of an engine whose calls meet faults mid-result (each fault costs ~0.1 s). */
const MID_MS = 2000;
/** "ConnectionError within about retryTimeoutMs + 2 s". */
const SLACK_MS = 2000;
/** How long past retryTimeoutMs a waiting call must still be waiting. */
const WAIT_PAST_MS = PAST_MS + 1000;
/** Connection attempts refused during a brief outage before Postgres comes back. */
const REFUSED = 2;
const BIG = 50_000;
/** Where the SSE cells start reading the big stream. */
const SSE_FROM = 30_000;
const BULK = 10_000;

const SCHEMA = uniqueSchema("matrix");
let worker: Engine;
let smallRow: WorkflowRow;
let bulkRows: WorkflowRow[];
let gatedWorkflow: Workflow<undefined, string>;
const bigValues = Array.from({ length: BIG }, (_, i) => i);
/** Gates of the worker's "gated" workflows, by workflow id. */
const written = new Map<string, ReturnType<typeof gate<void>>>();
const released = new Map<string, ReturnType<typeof gate<void>>>();
const gateOf = (gates: Map<string, ReturnType<typeof gate<void>>>, id: string) => {
  let g = gates.get(id);
  if (!g) gates.set(id, (g = gate()));
  return g;
};

// The statements a trap stops, as pgtide sends them.
const STREAM_READ = /from stream_entries/;
const GET_WORKFLOW = /no_output, error,\s+created_at, updated_at\s+from workflow_status where workflow_id/;
const LIST_WORKFLOWS = /from workflow_status\s+where \(/;
const INSERT_WORKFLOW = /insert into workflow_status/;
const PENDING_OF_EXECUTOR = /from workflow_status where executor_id = \$1 and status = 'PENDING'/;
const FINISH = /select finish_workflow\(/;
const APPEND = /insert into stream_entries/;
const SAVE_STEP = /insert into step_outputs/;
const MIGRATIONS_READ = /select id, hash, created_at from .*__drizzle_migrations/;

beforeAll(async () => {
  worker = await Engine.open({ databaseUrl, schema: SCHEMA, executorId: "worker", heartbeatMs: 500 });
  const finite = worker.workflow("finite", async (ctx, n: number) => {
    for (let i = 0; i < n; i++) await ctx.writeStream("s", i);
    return `ok:${n}`;
  });
  const big = worker.workflow("big", async (ctx, n: number) => {
    for (let i = 0; i < n; i += 5000) {
      await Promise.all(Array.from({ length: Math.min(5000, n - i) }, (_, j) => ctx.writeStream("big", i + j)));
    }
    return n;
  });
  // What the waiting calls wait for: "a", then (once released) "b", "c" and the end.
  gatedWorkflow = worker.workflow("gated", async (ctx) => {
    await ctx.writeStream("s", "a");
    gateOf(written, ctx.workflowId).open();
    await gateOf(released, ctx.workflowId).promise;
    await ctx.writeStream("s", "b");
    await ctx.writeStream("s", "c");
    return "done";
  });
  await (await finite.start(3, { workflowId: "small" })).getResult();
  await (await big.start(BIG, { workflowId: "big" })).getResult();
  // Finished workflows with 1 kB outputs, as many runs would leave them: a listWorkflows
  // result of ~10 MB, enough to block a backend sending it.
  await admin.unsafe(`
    insert into "${SCHEMA}".workflow_status (workflow_id, name, status, executor_id, output)
    select 'bulk-' || lpad(i::text, 5, '0'), 'bulk', 'SUCCESS', 'bulk', to_jsonb(repeat('x', 1000) || i)
    from generate_series(1, ${BULK}) i`);
  smallRow = await worker.getWorkflow("small");
  bulkRows = await worker.listWorkflows({ name: "bulk", limit: BULK });
  expect(bulkRows).toHaveLength(BULK);
}, 60_000);

// ---------------------------------------------------------------------------------------
// The observed table

type Fault = "brief" | "past-refuse" | "past-reset" | "mid-terminate" | "mid-cancel" | "ended";
const FAULT_LABEL: Record<Fault, string> = {
  brief: "down briefly (within retryTimeoutMs)",
  "past-refuse": "down past retryTimeoutMs (refuse)",
  "past-reset": "down past retryTimeoutMs (reset)",
  "mid-terminate": "terminated mid-result",
  "mid-cancel": "statement error mid-result (57014)",
  ended: "ended during an outage (signal, close)",
};
const observed = new Map<string, Map<Fault, string>>();
let faultsInjected = 0;

// A fault must never take the process down: what escapes as an uncaught exception or an
// unhandled rejection is collected here (vitest reports it too) and fails the cell.
const escaped: unknown[] = [];
process.prependListener("uncaughtException", (error) => escaped.push(error));
process.prependListener("unhandledRejection", (error) => escaped.push(error));

function note(row: string, fault: Fault, outcome: string): void {
  if (!observed.has(row)) observed.set(row, new Map());
  observed.get(row)!.set(fault, outcome);
}

afterAll(async () => {
  await worker?.close();
  const file = process.env.MATRIX_REPORT;
  if (!file) return;
  const faults = Object.keys(FAULT_LABEL) as Fault[];
  const lines = [
    `| call | ${faults.map((f) => FAULT_LABEL[f]).join(" | ")} |`,
    `|---|${faults.map(() => "---").join("|")}|`,
    ...[...new Set(cells.map((c) => c.row))].filter((row) => observed.has(row)).map((row) => {
      const seen = observed.get(row)!;
      return `| ${row} | ${faults.map((f) => seen.get(f) ?? "—").join(" | ")} |`;
    }),
    "",
    `cells: ${[...observed.values()].reduce((n, c) => n + c.size, 0)}, faults injected: ${faultsInjected}`,
  ];
  writeFileSync(file, lines.join("\n") + "\n");
});

// ---------------------------------------------------------------------------------------
// A cell's door and engine

interface Fixture {
  door: WireDoor;
  engine: Engine;
  executorId: string;
  retryTimeoutMs: number;
  /** 'error' events other than the listener's own reconnect attempts. */
  errors: unknown[];
  /** Another engine of this cell (closed with it). */
  open(options?: Partial<EngineOptions>): Promise<Engine>;
}

const uid = () => randomBytes(4).toString("hex");

function optionsFor(door: WireDoor, retryTimeoutMs: number, executorId: string): EngineOptions {
  return { databaseUrl: door.url(databaseUrl), schema: SCHEMA, executorId, retryTimeoutMs, heartbeatMs: 500 };
}

async function withEngine(retryTimeoutMs: number, body: (f: Fixture) => Promise<void>): Promise<void> {
  const door = await WireDoor.open(databaseUrl);
  const engines: Engine[] = [];
  const executorId = `m-${uid()}`;
  try {
    const open = async (options: Partial<EngineOptions> = {}) => {
      const engine = await Engine.open({ ...optionsFor(door, retryTimeoutMs, executorId), ...options });
      engines.push(engine);
      return engine;
    };
    const engine = await open();
    const errors: unknown[] = [];
    engine.on("error", (error) => {
      if (!/listen for notifications/.test(String((error as Error)?.message))) errors.push(error);
    });
    await body({ door, engine, executorId, retryTimeoutMs, errors, open });
  } finally {
    door.disarm();
    await door.up();
    await Promise.all(engines.map((e) => e.close()));
    await door.close();
  }
}

// ---------------------------------------------------------------------------------------
// The faults

/** Postgres away until the call has been refused REFUSED times on `role`'s connections, then back. */
async function briefly<T>(door: WireDoor, role: string, call: () => Promise<T>): Promise<T> {
  const before = door.stats.refused[role] ?? 0;
  await door.down("rst");
  const pending = call();
  pending.catch(() => {});
  await within(10_000, `${REFUSED} refused ${role} connection attempts`, door.refusedAtLeast(before + REFUSED, role));
  faultsInjected++;
  await door.up();
  return within(15_000, "the call once Postgres is back", pending);
}

const RESOLVED = Symbol("resolved");

/**
 * Postgres away for good; the call's outcome and how long it took. A call still pending at
 * retryTimeoutMs + SLACK_MS fails the cell there: it would have hung.
 */
async function pastBound(
  door: WireDoor, mode: "refuse" | "reset", retryTimeoutMs: number, call: () => Promise<unknown>,
): Promise<{ error: unknown; ms: number }> {
  await door.down(mode);
  faultsInjected++;
  const started = performance.now();
  const outcome = call().then(() => RESOLVED, (e: unknown) => e);
  const error = await within(retryTimeoutMs + SLACK_MS, `the call to give up (retryTimeoutMs ${retryTimeoutMs} ms + ${SLACK_MS} ms)`, outcome);
  return { error, ms: Math.round(performance.now() - started) };
}

/**
 * The call gave up with a ConnectionError. Returns the rest of the contract (its cause,
 * its message, when it came) to check last, after what the cell checks about the data.
 */
function expectConnectionError(error: unknown, ms: number, retryTimeoutMs: number, what?: RegExp): () => void {
  expect(error, "the call resolved during the outage").not.toBe(RESOLVED);
  expect(error).toBeInstanceOf(ConnectionError);
  expect(error).toMatchObject({ code: "CONNECTION" });
  return () => {
    expect((error as Error).cause, `the ConnectionError has no cause: ${(error as Error).message}`).toBeDefined();
    if (what) expect((error as Error).message).toMatch(what);
    expect(ms).toBeGreaterThanOrEqual(retryTimeoutMs - 50);
    expect(ms).toBeLessThan(retryTimeoutMs + SLACK_MS);
  };
}

interface Midway {
  sql: RegExp;
  afterRows: number;
  role?: string;
  /** Faults in one call: each on a later result (or a retry) than the one before. */
  faults?: number;
  /** Matching results let through whole between two faults. */
  every?: number;
  kind?: "terminate" | "cancel";
}

interface MidOutcome<T> {
  result: T;
  hits: TrapHit[];
}

/**
 * Stops a result of `sql` at row `afterRows` and kills (or cancels) the backend sending
 * it, `faults` times; returns the call's result. Terminate: the door holds the rest, the
 * backend is terminated, and the engine gets its FATAL 57P01 after those rows (a result
 * the backend had completed is not delivered). Cancel: the door stops reading until the
 * backend is blocked sending (ClientWrite), so the cancel lands mid-result for real.
 */
async function midResult<T>(door: WireDoor, spec: Midway, call: () => Promise<T>): Promise<MidOutcome<T>> {
  const kind = spec.kind ?? "terminate";
  const pause = kind === "cancel" || spec.afterRows >= 1000; // large results: the backend really is mid-send
  const faults = spec.faults ?? 1;
  const trapSpec = { role: spec.role ?? "pool", sql: spec.sql, afterRows: spec.afterRows, pause };
  const closedBefore = door.stats.closedMidResult;
  const cancelsBefore = door.stats.errorsMidResult["57014"] ?? 0;
  let trap = door.trap(trapSpec);
  const pending = call();
  pending.catch(() => {});
  const early = pending.then(() => {
    throw new Error("the call finished before its result was interrupted");
  });
  early.catch(() => {});
  const hits: TrapHit[] = [];
  for (let i = 0; i < faults; i++) {
    const hit = await within(15_000, `fault ${i + 1}: row ${spec.afterRows} of a result`, Promise.race([trap, early]));
    hits.push(hit);
    if (pause) await blockedSending(hit.pid);
    if (kind === "terminate") {
      const [row] = await admin`select pg_terminate_backend(${hit.pid}, 5000) as done`;
      expect(row!.done, "the backend was terminated").toBe(true);
      if (!pause) await within(5000, "Postgres to close the terminated connection", hit.upstreamClosed);
    } else {
      const [row] = await admin`select pg_cancel_backend(${hit.pid}) as done`;
      expect(row!.done, "the statement was cancelled").toBe(true);
    }
    faultsInjected++;
    if (i + 1 < faults) trap = door.trap({ ...trapSpec, skipResults: spec.every ?? 0 });
    hit.release({ splice: true });
  }
  const result = await within(30_000, "the call after the faults", pending);
  // The engine did see each result broken after some of its rows.
  if (kind === "terminate") expect(door.stats.closedMidResult - closedBefore).toBeGreaterThanOrEqual(faults);
  else expect((door.stats.errorsMidResult["57014"] ?? 0) - cancelsBefore).toBeGreaterThanOrEqual(faults);
  return { result, hits };
}

/**
 * After a fault: the engine answers again, on both of its pool connections at once (a
 * connection left broken by the fault would hold a call forever), and nothing escaped.
 */
async function stillWorks(engine: Engine, escapedBefore: number): Promise<void> {
  const calls = Array.from({ length: 4 }, () => engine.getWorkflow("small"));
  const rows = await within(MID_MS + SLACK_MS, "4 concurrent calls after the fault", Promise.all(calls)).catch((e: unknown) => e);
  expect(escaped.slice(escapedBefore), "uncaught exceptions or unhandled rejections").toEqual([]);
  expect(rows).toEqual(calls.map(() => smallRow));
}

/** Waits until the backend is blocked writing to its client: mid-result, with more to send. */
async function blockedSending(pid: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const [row] = await admin`select wait_event from pg_stat_activity where pid = ${pid}`;
    if (row?.wait_event === "ClientWrite") return;
    if (Date.now() > deadline) throw new Error(`backend ${pid} never blocked sending its result (wait_event ${row?.wait_event})`);
  }
}

const PENDING = Symbol("pending");

/** An observation window, not a synchronisation: the promise must not settle within `ms`. */
async function stillPendingAfter(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const window = new Promise<typeof PENDING>((resolve) => (timer = setTimeout(() => resolve(PENDING), ms)));
  const outcome = await Promise.race([promise.then((v) => ({ settled: v }), (e: unknown) => ({ settled: e })), window]);
  clearTimeout(timer);
  expect(outcome, `settled during an outage of ${ms} ms`).toBe(PENDING);
}

/** The first 'error' event whose message matches. */
function reportOf(engine: Engine, what: RegExp): Promise<unknown> {
  return new Promise((resolve) => {
    const listener = (error: unknown) => {
      if (!what.test(String((error as Error)?.message))) return;
      engine.off("error", listener);
      resolve(error);
    };
    engine.on("error", listener);
  });
}

async function rowsOf(where: string, ...params: string[]): Promise<Record<string, unknown>[]> {
  return [...(await admin.unsafe(`select * from "${SCHEMA}".workflow_status where ${where}`, params))];
}

function parseSse(text: string): { entries: [number, unknown][]; closed: boolean } {
  const entries: [number, unknown][] = [];
  let closed = false;
  for (const block of text.split("\n\n")) {
    if (block === "" || block.startsWith(":")) continue;
    expect(closed, "nothing after the close event").toBe(false);
    const lines = block.split("\n");
    if (lines[0] === "event: close") {
      closed = true;
      continue;
    }
    const id = lines.find((l) => l.startsWith("id: "))!;
    const data = lines.find((l) => l.startsWith("data: "))!;
    entries.push([Number(id.slice(4)), JSON.parse(data.slice(6))]);
  }
  return { entries, closed };
}

function request(workflowId: string, key: string, query = "", signal?: AbortSignal): Request {
  return new Request(`http://pgtide.test/streams/${workflowId}/${key}${query}`, signal ? { signal } : {});
}

function respond(engine: Engine, workflowId: string, key: string, query = "", signal?: AbortSignal): Promise<Response> {
  return streamResponse(engine, { workflowId, key, request: request(workflowId, key, query, signal), authorize: () => true });
}

// ---------------------------------------------------------------------------------------
// Rows 1: calls that answer once (and so give up past retryTimeoutMs)

interface CallCase<T> {
  call: () => Promise<T>;
  check: (result: T) => void | Promise<void>;
  /** After a call that gave up: nothing was written. */
  unchanged?: () => Promise<void>;
  /** After Postgres is back: the engine works (default: the call again, checked). */
  again?: () => Promise<void>;
  /** Where the mid-result fault strikes. */
  mid?: Midway;
  /** After a mid-result fault: what else must hold (exactly once, …). */
  afterMid?: (outcome: MidOutcome<T>) => void | Promise<void>;
  /** A larger call for the mid-result fault (the same statement, over the big stream), and its check. */
  midCall?: () => Promise<unknown>;
  midCheck?: (result: any) => void | Promise<void>;
  /** pgtide/http: an outage is answered (503), not thrown. */
  http503?: boolean;
}

interface CallRow {
  name: string;
  /** The role whose refused connection attempts show the call retrying ("pool", or "migrator" for open). */
  role?: string;
  faults: Fault[];
  /** Message of the ConnectionError past the bound. */
  what?: RegExp;
  setup(f: Fixture, fault: Fault): Promise<CallCase<any>>;
}

const ONCE: Fault[] = ["brief", "past-refuse", "past-reset", "mid-terminate"];

/** A workflow of the fixture's engine that records each run of itself. */
function doubling(f: Fixture) {
  const runs: string[] = [];
  const name = `double-${uid()}`;
  const wf = f.engine.workflow(name, async (ctx, n: number) => {
    runs.push(ctx.workflowId);
    return n * 2;
  });
  return { wf, runs, name };
}

/** A run of the fixture's engine that wrote "a" to "s" and then waits to be cancelled. */
async function cancellable(f: Fixture) {
  const started = gate<AbortSignal>();
  const wf = f.engine.workflow(`hold-${uid()}`, async (ctx) => {
    await ctx.writeStream("s", "a");
    started.open(ctx.signal);
    await new Promise((_, reject) => ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason), { once: true }));
  });
  const handle = await wf.start();
  const signal = await within(5000, "the run to start", started.promise);
  return { id: handle.workflowId, signal };
}

const CALL_ROWS: CallRow[] = [
  {
    name: "Engine.open",
    role: "migrator",
    faults: ONCE,
    what: /cannot reach Postgres/,
    async setup(f, fault) {
      // Past the bound: a schema never created, so "nothing written" can be checked.
      const fresh = uniqueSchema("mx");
      const schema = fault.startsWith("past") ? fresh : SCHEMA;
      const migrations = async () => Number((await admin.unsafe(`select count(*)::int as n from "${SCHEMA}".__drizzle_migrations`))[0]!.n);
      const before = await migrations();
      return {
        call: () => f.open({ schema, retryTimeoutMs: f.retryTimeoutMs }),
        async check(engine: Engine) {
          expect(await engine.getWorkflow("small")).toEqual(smallRow);
          expect(await migrations()).toBe(before); // applied once, never again
        },
        unchanged: async () => {
          expect(await admin`select 1 from pg_namespace where nspname = ${fresh}`).toHaveLength(0);
        },
        again: async () => {
          const engine = await within(10_000, "open once Postgres is back", f.open({ schema: fresh }));
          expect(await engine.listWorkflows()).toEqual([]);
        },
        mid: { role: "migrator", sql: MIGRATIONS_READ, afterRows: 1 },
      };
    },
  },
  {
    name: "workflow.start (workflowId)",
    faults: ONCE,
    what: /start workflow/,
    async setup(f) {
      const { wf, runs } = doubling(f);
      const id = `start-${uid()}`;
      const check = async (handle: { workflowId: string; getResult(): Promise<unknown> }) => {
        expect(handle.workflowId).toBe(id);
        expect(await within(10_000, "the result", handle.getResult())).toBe(42);
        expect(runs).toEqual([id]); // run once
        expect(await rowsOf("workflow_id = $1", id)).toHaveLength(1); // stored once
      };
      return {
        call: () => wf.start(21, { workflowId: id }),
        check,
        unchanged: async () => {
          expect((await rowsOf("workflow_id = $1", id)).length).toBeLessThanOrEqual(1);
          expect(runs).toEqual([]);
        },
        again: async () => check(await within(10_000, "start once Postgres is back", wf.start(21, { workflowId: id }))),
        mid: { sql: INSERT_WORKFLOW, afterRows: 1 },
        afterMid: ({ hits }) => {
          // The insert had committed when the answer was lost: the retry found the row.
          expect(hits[0]!.serverFinished).toBe(true);
        },
      };
    },
  },
  {
    name: "workflow.start (no workflowId)",
    faults: ONCE,
    what: /start workflow/,
    async setup(f) {
      const { wf, runs, name } = doubling(f);
      const check = async (handle: { workflowId: string; getResult(): Promise<unknown> }) => {
        expect(await within(10_000, "the result", handle.getResult())).toBe(42);
        expect(runs).toEqual([handle.workflowId]);
        expect((await rowsOf("name = $1", name)).map((r) => r.workflow_id)).toEqual([handle.workflowId]);
      };
      return {
        call: () => wf.start(21),
        check,
        unchanged: async () => {
          expect((await rowsOf("name = $1", name)).length).toBeLessThanOrEqual(1);
          expect(runs).toEqual([]);
        },
        again: async () => {
          // A row left by an attempt whose answer was lost (allowed: at most one) is not this start's.
          await admin.unsafe(`delete from "${SCHEMA}".workflow_status where name = $1`, [name]);
          await check(await within(10_000, "start once Postgres is back", wf.start(21)));
        },
        mid: { sql: INSERT_WORKFLOW, afterRows: 1 },
        afterMid: ({ hits }) => expect(hits[0]!.serverFinished).toBe(true),
      };
    },
  },
  {
    name: "engine.launch",
    faults: ONCE,
    what: /launch/,
    async setup(f) {
      const runs: string[] = [];
      const name = `resume-${uid()}`;
      f.engine.workflow(name, async (ctx, n: number) => {
        runs.push(ctx.workflowId);
        return n + 1;
      });
      // Three PENDING workflows of this executor, as a process that died leaves them.
      const ids = [1, 2, 3].map((n) => `${name}-${n}`);
      await admin.unsafe(
        `insert into "${SCHEMA}".workflow_status (workflow_id, name, status, executor_id, input)
         select id, $1, 'PENDING', $2, to_jsonb(n) from unnest($3::text[], $4::int[]) as t(id, n)`,
        [name, f.executorId, ids, [1, 2, 3]] as never,
      );
      const check = async () => {
        for (const [i, id] of ids.entries()) {
          expect(await within(10_000, "a resumed result", f.engine.retrieveWorkflow(id).getResult())).toBe(i + 2);
        }
        expect([...runs].sort()).toEqual(ids); // each resumed once
      };
      return {
        call: () => f.engine.launch(),
        check,
        unchanged: async () => {
          expect((await rowsOf("name = $1", name)).map((r) => r.status)).toEqual(["PENDING", "PENDING", "PENDING"]);
          expect(runs).toEqual([]);
        },
        mid: { sql: PENDING_OF_EXECUTOR, afterRows: 1 },
      };
    },
  },
  {
    name: "engine.cancelWorkflow",
    faults: ONCE,
    what: /cancel workflow/,
    async setup(f) {
      const { id, signal } = await cancellable(f);
      const check = async () => {
        expect((await rowsOf("workflow_id = $1", id))[0]!.status).toBe("CANCELLED");
        expect(await worker.readStream(id, "s", { wait: false })).toEqual({ values: ["a"], closed: true });
        const closes = await admin.unsafe(`select count(*)::int as n from "${SCHEMA}".stream_entries where workflow_id = $1 and closed`, [id]);
        expect(closes[0]!.n).toBe(1);
        expect(signal.aborted).toBe(true); // its run stops
        expect(signal.reason).toBeInstanceOf(WorkflowCancelledError);
      };
      return {
        call: () => f.engine.cancelWorkflow(id),
        check,
        unchanged: async () => {
          expect((await rowsOf("workflow_id = $1", id))[0]!.status).toBe("PENDING");
          expect(await worker.readStream(id, "s", { wait: false })).toEqual({ values: ["a"], closed: false });
          expect(signal.aborted).toBe(false);
        },
        mid: { sql: FINISH, afterRows: 1 },
      };
    },
  },
  ...(["engine.getWorkflow", "handle.getStatus", "handle.getInfo"] as const).map((name): CallRow => ({
    name,
    faults: ONCE,
    what: /get workflow/,
    async setup(f) {
      const handle = f.engine.retrieveWorkflow("small");
      const call = name === "engine.getWorkflow" ? () => f.engine.getWorkflow("small")
        : name === "handle.getStatus" ? () => handle.getStatus()
        : () => handle.getInfo();
      return {
        call,
        check: (result: unknown) => expect(result).toEqual(name === "handle.getStatus" ? "SUCCESS" : smallRow),
        mid: { sql: GET_WORKFLOW, afterRows: 1 },
      };
    },
  })),
  {
    name: "engine.listWorkflows (10,000 rows, ~10 MB)",
    faults: [...ONCE, "mid-cancel"],
    what: /list workflows/,
    async setup(f) {
      return {
        call: () => f.engine.listWorkflows({ name: "bulk", limit: BULK }),
        check: (rows: WorkflowRow[]) => {
          expect(rows.length).toBe(BULK);
          expect(rows).toEqual(bulkRows);
        },
        mid: { sql: LIST_WORKFLOWS, afterRows: 1000 },
      };
    },
  },
  {
    name: "engine.readStream (wait: false)",
    faults: ONCE,
    what: /read stream/,
    async setup(f) {
      return {
        // brief and past: a small stream; mid-result: 50,000 entries, 25 pages, 3 faults.
        call: () => f.engine.readStream("small", "s", { wait: false }),
        check: (result) => expect(result).toEqual({ values: [0, 1, 2], closed: true }),
        mid: { sql: STREAM_READ, afterRows: 500, faults: 3, every: 8 },
        midCall: () => f.engine.readStream("big", "big", { wait: false }),
        midCheck: (result: { values: number[]; closed: boolean }) => {
          expect(result.closed).toBe(true);
          expect(result.values).toEqual(bigValues);
        },
      };
    },
  },
  {
    name: "streamResponse (SSE)",
    faults: ONCE,
    async setup(f) {
      const sse = async (response: Response) => {
        expect(response.status, await response.clone().text().catch(() => "")).toBe(200);
        expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
        return parseSse(await within(30_000, "the whole event stream", response.text()));
      };
      return {
        call: () => respond(f.engine, "small", "s"),
        check: async (response: Response) => expect(await sse(response)).toEqual({ entries: [[0, 0], [1, 1], [2, 2]], closed: true }),
        // An event per entry is slow to build: the last 20,000 entries (resumed by Last-Event-ID).
        mid: { sql: STREAM_READ, afterRows: 500, faults: 3, every: 2 },
        midCall: () => respond(f.engine, "big", "big", `?lastEventId=${SSE_FROM - 1}`).then(sse),
        midCheck: (body: { entries: [number, unknown][]; closed: boolean }) => {
          expect(body.closed).toBe(true);
          expect(body.entries).toEqual(bigValues.slice(SSE_FROM).map((v) => [v, v]));
        },
        http503: true,
      };
    },
  },
  {
    name: "streamResponse (?format=json)",
    faults: ONCE,
    async setup(f) {
      const json = async (response: Response) => {
        expect(response.status, await response.clone().text()).toBe(200);
        return JSON.parse(await response.text()) as { entries: { offset: number; value: unknown }[]; next: number; closed: boolean };
      };
      return {
        call: () => respond(f.engine, "small", "s", "?format=json"),
        check: async (response: Response) => {
          expect(await json(response)).toEqual({ entries: [0, 1, 2].map((v) => ({ offset: v, value: v })), next: 3, closed: true });
        },
        mid: { sql: STREAM_READ, afterRows: 500, faults: 3, every: 8 },
        midCall: () => respond(f.engine, "big", "big", "?format=json").then(json),
        midCheck: (body: { entries: { offset: number; value: unknown }[]; next: number; closed: boolean }) => {
          expect(body.next).toBe(BIG);
          expect(body.closed).toBe(true);
          expect(body.entries).toEqual(bigValues.map((v) => ({ offset: v, value: v })));
        },
        http503: true,
      };
    },
  },
];

function retryTimeoutFor(fault: Fault): number {
  return fault.startsWith("past") || fault === "ended" ? PAST_MS : fault.startsWith("mid") ? MID_MS : WITHIN_MS;
}

async function runCallCell(row: CallRow, fault: Fault): Promise<void> {
  const retryTimeoutMs = retryTimeoutFor(fault);
  await withEngine(retryTimeoutMs, async (f) => {
    const c = await row.setup(f, fault);
    if (fault === "brief") {
      const started = performance.now();
      const result = await briefly(f.door, row.role ?? "pool", c.call);
      await c.check(result);
      expect(f.errors).toEqual([]);
      note(row.name, fault, `ok in ${Math.round(performance.now() - started)} ms`);
    } else if (fault === "past-refuse" || fault === "past-reset") {
      // streamResponse answers instead of rejecting: its 503 is the outcome looked for.
      const call = c.http503
        ? () => (c.call() as Promise<Response>).then((response) => (response.status === 503 ? Promise.reject(response) : response))
        : c.call;
      const { error, ms } = await pastBound(f.door, fault === "past-refuse" ? "refuse" : "reset", retryTimeoutMs, call);
      let rest = () => {};
      if (c.http503) {
        // pgtide/http answers an outage with 503 + Retry-After, never a 500 or a rejection.
        expect(error, "streamResponse rejected instead of answering 503").toBeInstanceOf(Response);
        const response = error as unknown as Response;
        expect(response.status, await response.clone().text()).toBe(503);
        expect(response.headers.get("retry-after")).toBe("2");
        expect(ms).toBeLessThan(retryTimeoutMs + SLACK_MS);
      } else {
        rest = expectConnectionError(error, ms, retryTimeoutMs, row.what);
      }
      await c.unchanged?.();
      await f.door.up();
      if (c.again) await c.again();
      else await c.check(await within(15_000, "the call once Postgres is back", c.call()));
      rest();
      note(row.name, fault, c.http503 ? `503 in ${ms} ms; 200 after` : `ConnectionError in ${ms} ms; works after`);
    } else {
      const escapedBefore = escaped.length;
      const call = c.midCall ?? c.call;
      const outcome = await midResult(f.door, { ...c.mid!, kind: fault === "mid-cancel" ? "cancel" : "terminate" }, call);
      for (const hit of outcome.hits) {
        if ((c.mid!.role ?? "pool") === "pool") expect(hit.applicationName).toBe(f.engine.applicationName("pool"));
      }
      await (c.midCheck ?? c.check)(outcome.result);
      await c.afterMid?.(outcome);
      expect(f.errors).toEqual([]);
      await stillWorks(f.engine, escapedBefore);
      note(row.name, fault, `whole result after ${outcome.hits.length} fault${outcome.hits.length > 1 ? "s" : ""} at row ${c.mid!.afterRows}`);
    }
  });
}

// ---------------------------------------------------------------------------------------
// Rows 2: calls that wait (readers, results): they outlast any outage

/** A waiting call that has made its first read (and is now waiting); `result` is its outcome. */
interface Waiting<T> {
  result: Promise<T>;
}

interface WaiterRow {
  name: string;
  /** Starts waiting on the gated workflow `id` (it has written "a"). */
  start(f: Fixture, id: string, signal?: AbortSignal): Promise<Waiting<unknown>>;
  /** The whole outcome once "b", "c" and the end followed. */
  whole: unknown;
  /** Mid-result: the call over a finished workflow, its check, where the faults strike. */
  mid: { call: (f: Fixture) => Promise<unknown>; check: (result: any) => void; at: Midway };
}

async function afterFirstRead<T>(f: Fixture, sql: RegExp, start: () => Promise<T>): Promise<Waiting<T>> {
  const before = f.door.deliveredCount("pool", sql);
  const result = start();
  result.catch(() => {});
  await within(10_000, "the first read", Promise.race([f.door.deliveredAtLeast(before + 1, "pool", sql), result.then(() => {
    throw new Error("the waiting call ended before the workflow did");
  })]));
  return { result };
}

/** Iterates an async generator after taking its first value. */
async function afterFirst<T>(iterator: AsyncGenerator<T, void, undefined>, expected: T): Promise<Waiting<T[]>> {
  const first = await within(10_000, "the first value", iterator.next());
  expect(first).toEqual({ done: false, value: expected });
  const result = (async () => {
    const values = [first.value as T];
    for (;;) {
      const next = await iterator.next();
      if (next.done) return values;
      values.push(next.value);
    }
  })();
  result.catch(() => {});
  return { result };
}

const BIG_ENTRIES = bigValues.map((v) => ({ offset: v, value: v }));
const THREE_FAULTS: Midway = { sql: STREAM_READ, afterRows: 500, faults: 3, every: 8 };

const WAITER_ROWS: WaiterRow[] = [
  {
    name: "engine.readStream (wait: true)",
    start: (f, id, signal) => afterFirstRead(f, STREAM_READ, () => f.engine.readStream(id, "s", { signal })),
    whole: { values: ["a", "b", "c"], closed: true },
    mid: { call: (f) => f.engine.readStream("big", "big"), check: (r) => expect(r).toEqual({ values: bigValues, closed: true }), at: THREE_FAULTS },
  },
  {
    name: "engine.readStreamAsync",
    start: (f, id, signal) => afterFirst(f.engine.readStreamAsync(id, "s", { signal }), "a"),
    whole: ["a", "b", "c"],
    mid: {
      call: async (f) => {
        const values: unknown[] = [];
        for await (const value of f.engine.readStreamAsync("big", "big")) values.push(value);
        return values;
      },
      check: (r) => expect(r).toEqual(bigValues),
      at: THREE_FAULTS,
    },
  },
  {
    name: "engine.readStreamEntries",
    start: (f, id, signal) => afterFirst(f.engine.readStreamEntries(id, "s", { signal }), { offset: 0, value: "a" }),
    whole: [{ offset: 0, value: "a" }, { offset: 1, value: "b" }, { offset: 2, value: "c" }],
    mid: {
      call: async (f) => {
        const entries: unknown[] = [];
        for await (const entry of f.engine.readStreamEntries("big", "big")) entries.push(entry);
        return entries;
      },
      check: (r) => expect(r).toEqual(BIG_ENTRIES),
      at: THREE_FAULTS,
    },
  },
  {
    name: "handle.getResult",
    start: (f, id, signal) => afterFirstRead(f, GET_WORKFLOW, () => f.engine.retrieveWorkflow(id).getResult(signal ? { signal } : {})),
    whole: "done",
    mid: { call: (f) => f.engine.retrieveWorkflow("small").getResult(), check: (r) => expect(r).toBe("ok:3"), at: { sql: GET_WORKFLOW, afterRows: 1 } },
  },
  {
    name: "engine.waitForWorkflow",
    start: async (f, id, signal) => {
      const waiting = await afterFirstRead(f, GET_WORKFLOW, () => f.engine.waitForWorkflow(id, signal));
      return { result: waiting.result.then((row) => ({ status: row.status, output: row.output })) };
    },
    whole: { status: "SUCCESS", output: "done" },
    mid: { call: (f) => f.engine.waitForWorkflow("small"), check: (r) => expect(r).toEqual(smallRow), at: { sql: GET_WORKFLOW, afterRows: 1 } },
  },
  {
    name: "streamResponse SSE body (after its 200)",
    start: async (f, id, signal) => {
      const response = await respond(f.engine, id, "s", "", signal);
      expect(response.status).toBe(200);
      const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      while (!text.includes("\n\n")) {
        const { done, value } = await within(10_000, "the first event", reader.read());
        if (done) throw new Error("the body ended before its first event");
        text += value;
      }
      expect(parseSse(text).entries).toEqual([[0, "a"]]);
      const result = (async () => {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) return parseSse(text);
          text += value;
        }
      })();
      result.catch(() => {});
      return { result };
    },
    whole: { entries: [[0, "a"], [1, "b"], [2, "c"]], closed: true },
    mid: {
      call: async (f) => parseSse(await (await respond(f.engine, "big", "big", `?lastEventId=${SSE_FROM - 1}`)).text()),
      check: (r) => expect(r).toEqual({ entries: bigValues.slice(SSE_FROM).map((v) => [v, v]), closed: true }),
      at: { sql: STREAM_READ, afterRows: 500, faults: 3, every: 2 },
    },
  },
];

/** A gated workflow of the worker (no door), which has written "a" to "s". */
async function gated(): Promise<{ id: string; release: () => Promise<void> }> {
  const handle = await gatedWorkflow.start(undefined, { workflowId: `gated-${uid()}` });
  const id = handle.workflowId;
  await within(5000, `"a" written by ${id}`, gateOf(written, id).promise);
  return {
    id,
    release: async () => {
      gateOf(released, id).open();
      expect(await within(10_000, "the worker's run", handle.getResult())).toBe("done");
    },
  };
}

async function runWaiterCell(row: WaiterRow, fault: Fault): Promise<void> {
  const retryTimeoutMs = retryTimeoutFor(fault);
  await withEngine(retryTimeoutMs, async (f) => {
    if (fault === "mid-terminate") {
      const escapedBefore = escaped.length;
      const outcome = await midResult(f.door, row.mid.at, () => row.mid.call(f));
      row.mid.check(outcome.result);
      for (const hit of outcome.hits) expect(hit.applicationName).toBe(f.engine.applicationName("pool"));
      expect(f.errors).toEqual([]);
      await stillWorks(f.engine, escapedBefore);
      note(row.name, fault, `whole result after ${outcome.hits.length} fault${outcome.hits.length > 1 ? "s" : ""} at row ${row.mid.at.afterRows}`);
      return;
    }
    if (fault === "ended") {
      const a = await gated();
      const b = await gated();
      const controller = new AbortController();
      const aborted = await row.start(f, a.id, controller.signal);
      const closed = await row.start(f, b.id);
      await f.door.down("refuse");
      faultsInjected++;
      await stillPendingAfter(Promise.race([aborted.result, closed.result]), WAIT_PAST_MS);
      const reason = new Error("the caller gave up");
      const abortedAt = performance.now();
      controller.abort(reason);
      const sse = row.name.startsWith("streamResponse");
      if (sse) {
        // The client left: the body ends at once, without the close event, and frees its reader.
        expect(await within(3000, "the body to end", aborted.result)).toEqual({ entries: [[0, "a"]], closed: false });
      } else {
        expect(await within(3000, "the abort", aborted.result.then(() => RESOLVED, (e: unknown) => e))).toBe(reason);
      }
      const abortMs = Math.round(performance.now() - abortedAt);
      const closedAt = performance.now();
      const closing = f.engine.close();
      if (sse) {
        // The engine closing ends the body without the close event (the client reconnects elsewhere).
        expect(await within(10_000, "the body to end", closed.result)).toEqual({ entries: [[0, "a"]], closed: false });
      } else {
        expect(await within(10_000, "the close", closed.result.then(() => RESOLVED, (e: unknown) => e))).toBeInstanceOf(EngineClosedError);
      }
      await within(10_000, "close() during the outage", closing);
      const closeMs = Math.round(performance.now() - closedAt);
      expect(f.engine.readerCount).toBe(0);
      await f.door.up();
      await a.release();
      await b.release();
      note(row.name, fault, sse
        ? `waited ${WAIT_PAST_MS} ms; abort → body ends (no close event) in ${abortMs} ms; close → body ends, close() ${closeMs} ms`
        : `waited ${WAIT_PAST_MS} ms; abort → its reason in ${abortMs} ms; close → EngineClosedError, close() ${closeMs} ms`);
      return;
    }
    const { id, release } = await gated();
    const waiting = await row.start(f, id);
    if (fault === "brief") {
      const before = f.door.stats.refused.listener ?? 0;
      await f.door.down("rst");
      await release(); // the workflow ends while this engine cannot hear it
      await within(10_000, "the listener to be refused", f.door.refusedAtLeast(before + REFUSED, "listener"));
      faultsInjected++;
      const downFor = performance.now();
      await f.door.up();
      expect(await within(15_000, "the waiting call once Postgres is back", waiting.result)).toEqual(row.whole);
      expect(f.errors).toEqual([]);
      note(row.name, fault, `whole, ${Math.round(performance.now() - downFor)} ms after Postgres is back`);
    } else {
      await f.door.down(fault === "past-refuse" ? "refuse" : "reset");
      faultsInjected++;
      await release();
      await stillPendingAfter(waiting.result, WAIT_PAST_MS);
      const upAt = performance.now();
      await f.door.up();
      expect(await within(15_000, "the waiting call once Postgres is back", waiting.result)).toEqual(row.whole);
      note(row.name, fault, `still waiting at ${WAIT_PAST_MS} ms; whole ${Math.round(performance.now() - upAt)} ms after Postgres is back`);
    }
  });
}

// ---------------------------------------------------------------------------------------
// Rows 3: writes from workflow code (and the finish)

type Op = "ctx.writeStream" | "ctx.closeStream" | "ctx.writeProgress" | "ctx.step" | "run finish (return)";
const OPS: { op: Op; what: RegExp; trap: RegExp; final: Record<string, unknown[]> }[] = [
  { op: "ctx.writeStream", what: /append to stream/, trap: APPEND, final: { s: ["a", "b"] } },
  { op: "ctx.closeStream", what: /append to stream/, trap: APPEND, final: { s: ["a"] } },
  { op: "ctx.writeProgress", what: /append to stream/, trap: APPEND, final: { s: ["a"], p: [{ done: 1, total: 1 }] } },
  { op: "ctx.step", what: /save step/, trap: SAVE_STEP, final: { s: ["a"] } },
  { op: "run finish (return)", what: /finish workflow/, trap: FINISH, final: { s: ["a"] } },
];

/** A workflow that writes "a", then waits for `go`, then does `op` and returns "done". */
function opWorkflow(engine: Engine, op: Op, name = `op-${uid()}`) {
  const reached = gate();
  const go = gate();
  let stepRuns = 0;
  const fn = async (ctx: WorkflowContext) => {
    await ctx.writeStream("s", "a");
    if (op === "ctx.step") {
      const seven = await ctx.step("x", async () => {
        stepRuns++;
        reached.open();
        await go.promise;
        return 7;
      });
      expect(seven).toBe(7);
    } else {
      reached.open();
      await go.promise;
      if (op === "ctx.writeStream") await ctx.writeStream("s", "b");
      else if (op === "ctx.closeStream") await ctx.closeStream("s");
      else if (op === "ctx.writeProgress") await ctx.writeProgress("p", { done: 1, total: 1 });
      // "run finish (return)": the finish is the next thing stored
    }
    return "done";
  };
  const wf = engine.workflow(name, fn);
  return { wf, fn, name, reached, go, stepRuns: () => stepRuns };
}

async function expectStreams(id: string, streams: Record<string, unknown[]>, closed: boolean): Promise<void> {
  for (const [key, values] of Object.entries(streams)) {
    expect(await worker.readStream(id, key, { wait: false }), `stream ${key}`).toEqual({ values, closed });
  }
}

async function runOpCell(spec: (typeof OPS)[number], fault: Fault): Promise<void> {
  const retryTimeoutMs = retryTimeoutFor(fault);
  await withEngine(retryTimeoutMs, async (f) => {
    const { wf, reached, go, stepRuns } = opWorkflow(f.engine, spec.op);
    const handle = await wf.start();
    const id = handle.workflowId;
    await within(5000, "the workflow to reach the operation", reached.promise);
    if (fault === "brief") {
      const before = f.door.stats.refused.pool ?? 0;
      await f.door.down("rst");
      go.open();
      await within(10_000, "the write to be refused", f.door.refusedAtLeast(before + REFUSED, "pool"));
      faultsInjected++;
      await f.door.up();
      expect(await within(15_000, "the result", handle.getResult())).toBe("done");
      await expectStreams(id, spec.final, true);
      expect(stepRuns()).toBe(spec.op === "ctx.step" ? 1 : 0);
      expect(f.errors).toEqual([]);
      note(spec.op, fault, "SUCCESS, written once");
    } else if (fault === "past-refuse" || fault === "past-reset") {
      const reported = reportOf(f.engine, spec.what);
      await f.door.down(fault === "past-refuse" ? "refuse" : "reset");
      faultsInjected++;
      const started = performance.now();
      go.open();
      const error = await within(retryTimeoutMs + SLACK_MS, `the run to be abandoned (retryTimeoutMs ${retryTimeoutMs} ms + ${SLACK_MS} ms)`, reported);
      const ms = Math.round(performance.now() - started);
      const rest = expectConnectionError(error, ms, retryTimeoutMs, spec.what);
      await f.door.up();
      // Never ERROR: PENDING, and nothing after the lost write was stored.
      expect(await within(10_000, "the status", handle.getStatus())).toBe("PENDING");
      const before: Record<string, unknown[]> = { s: ["a"], ...(spec.op === "ctx.writeProgress" ? { p: [] } : {}) };
      await expectStreams(id, before, false);
      await within(10_000, "launch once Postgres is back", f.engine.launch());
      expect(await within(15_000, "the result after launch", handle.getResult())).toBe("done");
      await expectStreams(id, spec.final, true);
      // The step's result was never stored: it ran again (documented at-least-once for steps).
      expect(stepRuns()).toBe(spec.op === "ctx.step" ? 2 : 0);
      expect(f.errors.every((e) => e instanceof ConnectionError)).toBe(true);
      rest();
      note(spec.op, fault, `run abandoned in ${ms} ms (ConnectionError on 'error'), PENDING; launch() → SUCCESS, once`);
    } else {
      const escapedBefore = escaped.length;
      const outcome = await midResult(f.door, { sql: spec.trap, afterRows: 1 }, async () => {
        go.open();
        return handle.getResult();
      });
      expect(outcome.result).toBe("done");
      expect(outcome.hits[0]!.applicationName).toBe(f.engine.applicationName("pool"));
      await expectStreams(id, spec.final, true);
      expect(stepRuns()).toBe(spec.op === "ctx.step" ? 1 : 0);
      expect(f.errors).toEqual([]);
      await stillWorks(f.engine, escapedBefore);
      const committed = outcome.hits[0]!.serverFinished ? "answer lost after its commit" : "before its commit";
      note(spec.op, fault, `SUCCESS, written once (${committed})`);
    }
  });
}

// ---------------------------------------------------------------------------------------
// Row 4: engine.close

async function runCloseCell(fault: Fault): Promise<void> {
  const retryTimeoutMs = retryTimeoutFor(fault);
  await withEngine(retryTimeoutMs, async (f) => {
    if (fault === "mid-terminate") {
      const escapedBefore = escaped.length;
      const closing: Promise<void>[] = [];
      let hits = 0;
      const before = f.door.stats.closedMidResult;
      const trap = f.door.trap({ role: "pool", sql: STREAM_READ, afterRows: 500 });
      const read = f.engine.readStream("big", "big", { wait: false }).then(() => RESOLVED, (e: unknown) => e);
      const hit = await within(10_000, "a page mid-result", trap);
      hits++;
      const started = performance.now();
      closing.push(f.engine.close());
      const [row] = await admin`select pg_terminate_backend(${hit.pid}, 5000) as done`;
      expect(row!.done).toBe(true);
      await within(5000, "the connection to close", hit.upstreamClosed);
      faultsInjected++;
      hit.release({ splice: true });
      const error = await within(10_000, "the read to end", read);
      expect(error).toBeInstanceOf(EngineClosedError);
      await within(10_000, "close()", closing[0]!);
      expect(f.door.stats.closedMidResult - before).toBe(hits);
      expect(escaped.slice(escapedBefore), "uncaught exceptions or unhandled rejections").toEqual([]);
      note("engine.close", fault, `resolved in ${Math.round(performance.now() - started)} ms; the read in flight → EngineClosedError`);
      return;
    }
    // A write retrying when close() is called, and a reader waiting on the same stream.
    const name = `close-${uid()}`;
    const { wf, fn, reached, go } = opWorkflow(f.engine, "ctx.writeStream", name);
    const handle = await wf.start();
    const id = handle.workflowId;
    await within(5000, "the workflow to reach its write", reached.promise);
    const reader = await afterFirst(f.engine.readStreamAsync(id, "s"), "a");
    const before = f.door.stats.refused.pool ?? 0;
    // The write is retrying (its attempts are refused) when close() is called.
    await f.door.down(fault === "past-reset" ? "reset" : "rst");
    faultsInjected++;
    go.open();
    await within(10_000, "the write to be refused", f.door.refusedAtLeast(before + REFUSED, "pool"));
    if (fault === "past-refuse") await f.door.down("refuse");
    const started = performance.now();
    const closing = f.engine.close().then(() => RESOLVED, (e: unknown) => e);
    if (fault === "brief") await f.door.up();
    // Never rejects; waits for the write (retryTimeoutMs at most), then ends the pool (its 5 s bound).
    const bound = retryTimeoutMs + SLACK_MS + 5000;
    expect(await within(bound, `close() within ${bound} ms`, closing)).toBe(RESOLVED);
    const ms = Math.round(performance.now() - started);
    expect(await within(5000, "the reader", reader.result.then(() => RESOLVED, (e: unknown) => e))).toBeInstanceOf(EngineClosedError);
    await f.door.up();
    // Brief: the queued write was flushed. Past: it was lost. Either way the workflow stays PENDING.
    expect((await rowsOf("workflow_id = $1", id))[0]!.status).toBe("PENDING");
    await expectStreams(id, { s: fault === "brief" ? ["a", "b"] : ["a"] }, false);
    // Another engine of the same executor finishes it: "b" stored once.
    const next = await f.open();
    next.workflow(name, fn);
    await next.launch();
    expect(await within(15_000, "the result after launch", next.retrieveWorkflow(id).getResult())).toBe("done");
    await expectStreams(id, { s: ["a", "b"] }, true);
    note("engine.close", fault, `resolved in ${ms} ms; ${fault === "brief" ? "queued write flushed" : "queued write lost"}; reader → EngineClosedError; launch() finishes, once`);
  });
}

// ---------------------------------------------------------------------------------------
// The matrix

interface Cell {
  name: string;
  row: string;
  fault: Fault;
  run: () => Promise<void>;
}

/**
 * Runs a cell; a failure goes into the table too (its first line), then fails the test.
 * Nothing may escape while it runs (cells beside it run at the same time, except mid-result ones).
 */
async function runCell(cell: Cell): Promise<void> {
  const escapedBefore = escaped.length;
  try {
    await cell.run();
    expect(escaped.slice(escapedBefore), "uncaught exceptions or unhandled rejections while this cell ran").toEqual([]);
  } catch (error) {
    note(cell.row, cell.fault, `**FAILS**: ${String((error as Error)?.message ?? error).split("\n")[0]!.slice(0, 140)}`);
    throw error;
  }
}

const cells: Cell[] = [
  ...CALL_ROWS.flatMap((row) => row.faults.map((fault) => ({ name: `${row.name} × ${FAULT_LABEL[fault]}`, row: row.name, fault, run: () => runCallCell(row, fault) }))),
  ...WAITER_ROWS.flatMap((row) =>
    (["brief", "past-refuse", "past-reset", "mid-terminate", "ended"] as const).map((fault) => ({
      name: `${row.name} × ${FAULT_LABEL[fault]}`,
      row: row.name,
      fault,
      run: () => runWaiterCell(row, fault),
    })),
  ),
  ...OPS.flatMap((spec) => ONCE.map((fault) => ({ name: `${spec.op} × ${FAULT_LABEL[fault]}`, row: spec.op, fault, run: () => runOpCell(spec, fault) }))),
  ...ONCE.map((fault) => ({ name: `engine.close × ${FAULT_LABEL[fault]}`, row: "engine.close", fault, run: () => runCloseCell(fault) })),
];

const isMid = (cell: Cell) => cell.fault.startsWith("mid");
const named = (selected: Cell[]) => selected.map((cell) => [cell.name, cell] as const);

// Outages: five cells at a time (most of their time is waiting out retryTimeoutMs).
describe.concurrent("outage matrix: Postgres down", () => {
  it.each(named(cells.filter((c) => !isMid(c) && c.fault !== "past-reset")))("%s", async (_name, cell) => {
    await runCell(cell);
  });
});

// Apart from the others: a client that reconnects in a loop without end (see the report)
// would slow every cell running beside it.
describe.concurrent("outage matrix: Postgres down, connections accepted and closed", () => {
  it.each(named(cells.filter((c) => c.fault === "past-reset")))("%s", async (_name, cell) => {
    await runCell(cell);
  });
});

// Faults mid-result: one at a time, so whatever escapes is this cell's.
describe("outage matrix: connection broken mid-result", () => {
  it.each(named(cells.filter(isMid)))("%s", async (_name, cell) => {
    await runCell(cell);
  });
});
