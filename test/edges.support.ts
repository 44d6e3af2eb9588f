// Shared by the edge-matrix files (test/edges.*.test.ts): row counts, a probe workflow
// that runs actions with a live context, the numeric edge values, deep values, a watch
// on the timers the engine sets, and a scratch database for schema-name cases.
import { randomBytes } from "node:crypto";
import { expect, vi } from "vitest";
import { PgtideError, type Engine, type ErrorCode, type WorkflowContext } from "../src/index.js";
import { admin, databaseUrl, within } from "./support/engines.js";

export interface Counts {
  workflows: number;
  steps: number;
  entries: number;
}

/** Rows in the engine's three tables (the `admin` connection, outside the engine). */
export async function counts(schema: string): Promise<Counts> {
  const [row] = await admin.unsafe<Counts[]>(
    `select (select count(*) from "${schema}".workflow_status)::int as workflows,
            (select count(*) from "${schema}".step_outputs)::int as steps,
            (select count(*) from "${schema}".stream_entries)::int as entries`,
  );
  return row!;
}

export type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** Runs `fn`, turning a throw or a rejection into an outcome. */
export async function outcome(fn: () => unknown): Promise<Outcome> {
  try {
    return { ok: true, value: await fn() };
  } catch (error) {
    return { ok: false, error };
  }
}

/** The error of a refused call, checked to be `cls` with `code` and a message naming `named`. */
export function expectRefusal(
  result: Outcome, cls: abstract new (...args: never[]) => PgtideError, code: ErrorCode, ...named: (string | RegExp)[]
): Error {
  if (result.ok) throw new Error(`expected a ${cls.name}, but the call succeeded with ${preview(result.value)}`);
  const error = result.error as Error;
  expect(error, String(error)).toBeInstanceOf(cls);
  expect(error).toBeInstanceOf(PgtideError);
  expect(error).toMatchObject({ name: cls.name, code });
  for (const n of named) {
    if (typeof n === "string") expect(error.message).toContain(n);
    else expect(error.message).toMatch(n);
  }
  return error;
}

export function preview(value: unknown): string {
  try {
    const text = JSON.stringify(value) ?? String(value);
    return text.length > 80 ? `${text.slice(0, 80)}…` : text;
  } catch {
    return String(value);
  }
}

/** The numeric edges every numeric input is tried with. */
export const NUMBERS: [label: string, value: unknown][] = [
  ["0", 0],
  ["1", 1],
  ["MAX_SAFE_INTEGER", Number.MAX_SAFE_INTEGER],
  ["MAX_SAFE_INTEGER + 1", Number.MAX_SAFE_INTEGER + 1],
  ["-1", -1],
  ["NaN", Number.NaN],
  ["+Infinity", Number.POSITIVE_INFINITY],
  ["-Infinity", Number.NEGATIVE_INFINITY],
  ['the string "5"', "5"],
  ["1.5", 1.5],
  ["-0", -0],
  ["5n", 5n],
  ["null", null],
];

/** Node clamps a timer past 2^31 − 1 ms to 1 ms: options used as timers get these too. */
export const TIMER_NUMBERS: [label: string, value: unknown][] = [
  ...NUMBERS,
  ["2^31 - 1", 2 ** 31 - 1],
  ["2^31", 2 ** 31],
];

export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A workflow that stays PENDING and runs, with its context, whatever the tests give it. */
export interface Probe {
  readonly workflowId: string;
  /** Runs `action` in the probe; `ms` is a deadline for it (a hang becomes a failure). */
  run(action: (ctx: WorkflowContext) => unknown, ms?: number): Promise<Outcome>;
  stop(): void;
}

export async function startProbe(engine: Engine, name = "probe"): Promise<Probe> {
  const jobs: { action: (ctx: WorkflowContext) => unknown; done: (o: Outcome) => void }[] = [];
  let wake: (() => void) | undefined;
  let stopped = false;
  const wf = engine.workflow(name, async (ctx) => {
    for (;;) {
      const job = jobs.shift();
      if (job) {
        job.done(await outcome(() => job.action(ctx)));
        continue;
      }
      if (stopped) return;
      await new Promise<void>((resolve) => (wake = resolve));
    }
  });
  const workflowId = `${name}-${randomBytes(4).toString("hex")}`;
  await wf.start(undefined, { workflowId });
  return {
    workflowId,
    run(action, ms = 30_000) {
      return within(ms, "the probe workflow", new Promise<Outcome>((done) => {
        jobs.push({ action, done });
        wake?.();
      }));
    },
    stop() {
      stopped = true;
      wake?.();
    },
  };
}

/** `[[[…0…]]]` with `levels` arrays, built without recursion. */
export function deepArray(levels: number): unknown {
  let value: unknown = 0;
  for (let i = 0; i < levels; i++) value = [value];
  return value;
}

/** `{a:{a:{…0…}}}` with `levels` objects. */
export function deepObject(levels: number): unknown {
  let value: unknown = 0;
  for (let i = 0; i < levels; i++) value = { a: value };
  return value;
}

/** Levels of arrays/objects along the first child, counted without recursion. */
export function depthOf(value: unknown): number {
  let depth = 0;
  for (let v = value; typeof v === "object" && v !== null; depth++) {
    v = Array.isArray(v) ? v[0] : Object.values(v)[0];
  }
  return depth;
}

export function hex(text: string): string {
  return Buffer.from(text, "utf8").toString("hex");
}

export function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value));
}

/**
 * Watches the timers set while it is on (calls go through to Node's own) and Node's
 * TimeoutOverflowWarning: a delay past 2^31 − 1 ms that Node turned into 1 ms.
 */
export function watchTimers() {
  /** `effective`: the delay Node really uses (1 when it clamped the one asked for), read when set. */
  const calls: { kind: "timeout" | "interval"; delay: unknown; effective: unknown }[] = [];
  const overflows: string[] = [];
  const waiters: { test: (delay: unknown) => boolean; resolve: (effective: unknown) => void }[] = [];
  const onWarning = (warning: Error) => {
    if (warning.name === "TimeoutOverflowWarning") overflows.push(warning.message);
  };
  process.on("warning", onWarning);
  // Untyped: Node's overloads do not take a spread of unknowns.
  const realTimeout = globalThis.setTimeout as unknown as (...args: unknown[]) => NodeJS.Timeout;
  const realInterval = globalThis.setInterval as unknown as (...args: unknown[]) => NodeJS.Timeout;
  const record = (kind: "timeout" | "interval", delay: unknown, timer: NodeJS.Timeout) => {
    // Node's own field; clearTimeout sets it to -1, so it is read now.
    const effective = (timer as unknown as { _idleTimeout?: number })._idleTimeout;
    calls.push({ kind, delay, effective });
    for (const w of [...waiters]) {
      if (w.test(delay)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(effective);
      }
    }
  };
  const timeoutSpy = vi.spyOn(globalThis, "setTimeout").mockImplementation(((fn: () => void, delay?: number, ...args: unknown[]) => {
    const timer = realTimeout(fn, delay, ...args);
    record("timeout", delay, timer);
    return timer;
  }) as typeof setTimeout);
  const intervalSpy = vi.spyOn(globalThis, "setInterval").mockImplementation(((fn: () => void, delay?: number, ...args: unknown[]) => {
    const timer = realInterval(fn, delay, ...args);
    record("interval", delay, timer);
    return timer;
  }) as typeof setInterval);
  return {
    calls,
    overflows,
    /** The delay Node really uses for the first timer set with a delay that passes `test`. */
    effectiveDelayOf(test: (delay: unknown) => boolean): Promise<unknown> {
      const seen = calls.find((c) => test(c.delay));
      if (seen) return Promise.resolve(seen.effective);
      return new Promise((resolve) => waiters.push({ test, resolve }));
    },
    /** Node's warnings are emitted on a later tick: let them arrive, then stop watching. */
    async stop(): Promise<void> {
      await new Promise((resolve) => setImmediate(resolve));
      timeoutSpy.mockRestore();
      intervalSpy.mockRestore();
      process.off("warning", onWarning);
    },
  };
}

/** A database of its own, for cases that create schemas by arbitrary names. */
export async function scratchDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `edges_${randomBytes(4).toString("hex")}`;
  await admin.unsafe(`create database "${name}"`);
  const url = new URL(databaseUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      await admin.unsafe(`drop database if exists "${name}" with (force)`);
    },
  };
}
