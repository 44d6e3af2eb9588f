// Fault schedules: what goes wrong, and where in the program's progress. A point is
// chosen by progress, never by time: "as top-level op n starts", "as step n's body
// starts", "as step n is about to throw". The generated numbers are resolved against the
// program (modulo the number of such points), so a schedule stays valid while the
// program shrinks.
import fc from "fast-check";
import { endId } from "./interpreter.js";
import { allOps, keysOf, type Program, type StepOp } from "./program.js";

export type Where = "op" | "body" | "fail";

export interface Point {
  where: Where;
  n: number;
}

export type Fault =
  /** pg_terminate_backend on engine.listenerPid(). */
  | { kind: "listener-kill"; at: Point }
  /** pg_terminate_backend of the engine's pool backend(s); midResult: while one sends a big page. */
  | { kind: "pool-kill"; at: Point; midResult: boolean }
  /** engine.cancelWorkflow; hold: the workflow waits at the point until it resolved. */
  | { kind: "cancel"; at: Point; hold: boolean }
  /** engine.close(), then a new engine and launch() (or a launch() closed at once, then another). */
  | { kind: "close"; at: Point; hold: boolean; relaunch: "launch" | "close-during-launch" }
  /** engine.close() called while workflow.start() is in flight. */
  | { kind: "close-during-start" }
  /** SIGKILL of the worker process (paused at the point, or running on past it). */
  | { kind: "kill"; at: Point; pause: boolean }
  /** Private Postgres stopped and started; outage: kept down until the run gave up. */
  | { kind: "restart"; at: Point; outage: boolean };

export type From = 0 | "middle" | "close" | "past-close" | "max";

export interface ReaderSpec {
  key: number;
  from: From;
  /** As soon as start() resolved ("before" its first ops, mostly), after it ended, or at a point. */
  start: "before" | "after" | Point;
  abort?: Point | { afterEntries: number };
  api: "entries" | "values" | "readStream";
}

export interface Schedule {
  faults: Fault[];
  readers: ReaderSpec[];
}

const pointArb: fc.Arbitrary<Point> = fc.record({
  where: fc.constantFrom<Where>("op", "op", "body", "fail"),
  n: fc.nat({ max: 40 }),
});

const readerArb: fc.Arbitrary<ReaderSpec> = fc.record(
  {
    key: fc.nat({ max: 10 }),
    from: fc.constantFrom<From>(0, 0, "middle", "close", "close", "past-close", "past-close", "max"),
    start: fc.oneof(fc.constant<"before">("before"), fc.constant<"after">("after"), pointArb, pointArb),
    abort: fc.oneof(pointArb, fc.record({ afterEntries: fc.nat({ max: 4 }) })),
    api: fc.constantFrom<ReaderSpec["api"]>("entries", "entries", "values", "readStream"),
  },
  { requiredKeys: ["key", "from", "start", "api"] },
);

const inProcessFaultArb: fc.Arbitrary<Fault> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("listener-kill" as const), at: pointArb }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("pool-kill" as const), at: pointArb, midResult: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("cancel" as const), at: pointArb, hold: fc.boolean() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("close" as const), at: pointArb, hold: fc.boolean(),
      relaunch: fc.constantFrom<"launch" | "close-during-launch">("launch", "launch", "close-during-launch"),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: "close-during-start" as const }) },
);

export const inProcessScheduleArb: fc.Arbitrary<Schedule> = fc
  .record({ faults: fc.array(inProcessFaultArb, { maxLength: 3 }), readers: fc.array(readerArb, { maxLength: 4 }) })
  .map((s) => withSchedulePrinter(s));

export const killScheduleArb: fc.Arbitrary<Schedule> = fc
  .record({
    faults: fc.tuple(
      fc.array(fc.record({ kind: fc.constant("kill" as const), at: pointArb, pause: fc.boolean() }), { minLength: 1, maxLength: 2 }),
      fc.oneof(
        { weight: 3, arbitrary: fc.constant(null) },
        { weight: 1, arbitrary: fc.record({ kind: fc.constant("cancel" as const), at: pointArb, hold: fc.constant(false) }) },
      ),
    ).map(([kills, cancel]) => (cancel ? [...kills, cancel] : kills) as Fault[]),
    readers: fc.array(readerArb, { maxLength: 3 }),
  })
  .map((s) => withSchedulePrinter(s));

export const restartScheduleArb: fc.Arbitrary<Schedule> = fc
  .record({
    faults: fc.array(fc.record({ kind: fc.constant("restart" as const), at: pointArb, outage: fc.boolean() }), { minLength: 1, maxLength: 2 }) as fc.Arbitrary<Fault[]>,
    readers: fc.array(readerArb, { maxLength: 3 }),
  })
  .map((s) => withSchedulePrinter(s));

// ---------------------------------------------------------------------------------------
// Resolution against a program

/** A resolved point: "op:<id>" (a top-level op or the end), "body:<id>", "fail:<id>". */
export type PointKey = string;

export function resolvePoint(program: Program, point: Point): PointKey {
  const tops = [...program.ops.map((op) => op.id), endId(program)];
  const steps = allOps(program).filter((op): op is StepOp => op.op === "step");
  const failing = steps.filter((s) => s.fails > 0 || "throw" in s.does);
  if (point.where === "fail" && failing.length > 0) return `fail:${failing[point.n % failing.length]!.id}`;
  if (point.where !== "op" && steps.length > 0) return `body:${steps[point.n % steps.length]!.id}`;
  return `op:${tops[point.n % tops.length]}`;
}

/** The stream a reader follows: one the program uses (or "s0"). */
export function readerKey(program: Program, spec: ReaderSpec): string {
  const keys = keysOf(program);
  return keys.length === 0 ? "s0" : keys[spec.key % keys.length]!;
}

/** Index of the top-level op a point belongs to (the end: ops.length). */
export function topIndexOf(program: Program, key: PointKey): number {
  const [where, idText] = key.split(":");
  const id = Number(idText);
  for (const [i, op] of program.ops.entries()) {
    if (op.id === id) return i;
    if (where !== "op" && allOps({ ops: [op], end: program.end }).some((o) => o.id === id)) return i;
  }
  return program.ops.length;
}

export function printPoint(program: Program | undefined, point: Point): string {
  const key = program ? resolvePoint(program, point) : `${point.where}#${point.n}`;
  const [where, id] = key.split(":");
  if (program && Number(id) === endId(program) && where === "op") return "at the end (before return/throw)";
  return where === "op" ? `as op #${id} starts` : where === "body" ? `as step #${id}'s body starts` : `as step #${id} is about to throw`;
}

export function printSchedule(schedule: Schedule, program?: Program): string {
  const lines: string[] = [];
  for (const f of schedule.faults) {
    switch (f.kind) {
      case "listener-kill": lines.push(`kill the listener's backend ${printPoint(program, f.at)}`); break;
      case "pool-kill": lines.push(`kill the pool's backend${f.midResult ? " mid-result (while it sends a page of a 16 MB stream)" : "s"} ${printPoint(program, f.at)}`); break;
      case "cancel": lines.push(`cancelWorkflow ${printPoint(program, f.at)}${f.hold ? ", the workflow held until it resolved" : ""}`); break;
      case "close": lines.push(`engine.close() ${printPoint(program, f.at)}${f.hold ? ", the workflow held until it resolved" : ""}; then a new engine, ${f.relaunch === "launch" ? "launch()" : "launch() and close() at once, then another engine and launch()"}`); break;
      case "close-during-start": lines.push("engine.close() while workflow.start() is in flight; then a new engine and launch()"); break;
      case "kill": lines.push(`SIGKILL the worker ${printPoint(program, f.at)}${f.pause ? " (paused there)" : " (running on)"}; recover in a new process`); break;
      case "restart": lines.push(`${f.outage ? "stop Postgres until the run gives up, then start it" : "restart Postgres"} ${printPoint(program, f.at)}`); break;
    }
  }
  for (const r of schedule.readers) {
    const key = program ? JSON.stringify(readerKey(program, r)) : `key#${r.key}`;
    const start = r.start === "before" ? "as start() resolves" : r.start === "after" ? "after the end" : printPoint(program, r.start);
    const abort = r.abort === undefined ? "" : "afterEntries" in r.abort ? `, aborted after ${r.abort.afterEntries} entries` : `, aborted ${printPoint(program, r.abort)}`;
    lines.push(`reader (${r.api}) of ${key} from ${r.from === "max" ? "Number.MAX_SAFE_INTEGER" : r.from}, started ${start}${abort}`);
  }
  return lines.length === 0 ? "(no faults, no readers)" : lines.map((l) => `- ${l}`).join("\n");
}

function withSchedulePrinter(schedule: Schedule): Schedule {
  Object.defineProperty(schedule, fc.toStringMethod, { value: () => `\n${printSchedule(schedule)}`, enumerable: false });
  return schedule;
}

/** The program and its schedule, printed together (points resolved). */
export function printCase(program: Program, schedule: Schedule, print: (p: Program) => string): string {
  return `${print(program)}\nfaults and readers:\n${printSchedule(schedule, program)}`;
}
