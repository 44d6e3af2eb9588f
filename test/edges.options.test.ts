// Edge matrix 1, Engine.open: poolSize, maxValueBytes, heartbeatMs and retryTimeoutMs at
// every numeric edge (and 2^31 − 1, 2^31 for the two used as timers). A value refused is
// an InvalidArgumentError naming the option and the accepted range, before any schema
// is created. A value accepted must work: the engine opens, runs a workflow and reads
// its stream, sets no timer Node clamps to 1 ms (TimeoutOverflowWarning), and a heartbeat
// runs at the period asked for — never every millisecond.
import { describe, expect, it } from "vitest";
import { Engine, InvalidArgumentError, SerializationError, type EngineOptions } from "../src/index.js";
import {
  expectRefusal, MAX_TIMER_MS, NUMBERS, outcome, TIMER_NUMBERS, watchTimers,
} from "./edges.support.js";
import { admin, databaseUrl, openEngine, uniqueSchema, within } from "./support/engines.js";

type Option = "poolSize" | "maxValueBytes" | "heartbeatMs" | "retryTimeoutMs";
/** accept: must open and work; refuse: InvalidArgumentError; either: one or the other, done right. */
type Verdict = "accept" | "refuse" | "either";

/**
 * What each option must do with each edge. Non-numbers, non-finite numbers, fractions of
 * a count, and values below the least that works are refused; so are timer values past
 * 2^31 − 1 (Node would fire them after 1 ms), a 1 ms heartbeat (a check every
 * millisecond), a pool of 2^53 connections and a value limit of 2^53 bytes (neither can
 * exist: V8 strings stop near 2^29 characters, jsonb at 255 MiB).
 */
const EXPECTED: Record<Option, Record<string, Verdict>> = {
  poolSize: { "1": "accept" },
  maxValueBytes: { "1": "accept" },
  heartbeatMs: { "2^31 - 1": "accept" },
  retryTimeoutMs: { "1": "accept", "2^31 - 1": "accept", MAX_SAFE_INTEGER: "either" },
};
const TIMERS = new Set<Option>(["heartbeatMs", "retryTimeoutMs"]);

const cases: [string, string, Option, unknown][] = (Object.keys(EXPECTED) as Option[]).flatMap((option) =>
  (TIMERS.has(option) ? TIMER_NUMBERS : NUMBERS).map(([label, value]) => [option, label, option, value] as [string, string, Option, unknown]),
);

async function schemaExists(name: string): Promise<boolean> {
  const [row] = await admin<{ n: number }[]>`select count(*)::int as n from pg_namespace where nspname = ${name}`;
  return row!.n > 0;
}

/** Runs a workflow that writes and returns, and reads its stream back: the engine works. */
async function works(engine: Engine, value: unknown = "v"): Promise<void> {
  const wf = engine.workflow(`works-${Math.random().toString(36).slice(2)}`, async (ctx) => {
    await ctx.writeStream("s", value);
    return value;
  });
  const handle = await wf.start();
  expect(await within(10_000, "the workflow's result", handle.getResult())).toEqual(value);
  expect(await engine.readStream(handle.workflowId, "s")).toEqual({ values: [value], closed: true });
}

describe("Engine.open numeric options", () => {
  it.each(cases)("%s %s", async (_, label, option, value) => {
    const verdict = EXPECTED[option][label] ?? "refuse";
    const schema = uniqueSchema(`opt_${option}`);
    const timers = watchTimers();
    let reconnects = 0;
    try {
      const opened = await outcome(() => openEngine({ databaseUrl, schema, [option]: value } as EngineOptions));
      if (!opened.ok || verdict === "refuse") {
        if (verdict === "accept") throw new Error(`${option} ${label} was refused: ${String((opened as { error: unknown }).error)}`);
        // Named, with the range it accepts ("from 1 to 1000", "between 100 and …").
        expectRefusal(opened, InvalidArgumentError, "INVALID_ARGUMENT", option, /\b(from|between) -?\d+ (to|and) \d+/);
        if (TIMERS.has(option) && typeof value === "number" && value > MAX_TIMER_MS) {
          expect((opened as { error: Error }).error.message).toContain(String(MAX_TIMER_MS));
        }
        expect(await schemaExists(schema)).toBe(false);
        return;
      }
      const engine = opened.value as Engine;
      engine.on("reconnected", () => reconnects++);
      if (option === "heartbeatMs") {
        // The heartbeat's interval keeps the period asked for: not 1 ms.
        expect(await within(1000, "the heartbeat timer", timers.effectiveDelayOf((delay) => delay === value))).toBe(value);
      }
      if (option === "maxValueBytes") {
        await works(engine, 1); // "1" is one byte of JSON
        // "12" is two: refused where it is written (the workflow returns nothing, which fits).
        let refused: unknown;
        const tooBig = engine.workflow("too-big", async (ctx) => {
          refused = (await outcome(() => ctx.writeStream("s", 12))) as unknown;
        });
        const handle = await tooBig.start();
        await within(10_000, "the too-big workflow", handle.getResult());
        expectRefusal(refused as never, SerializationError, "SERIALIZATION", "maxValueBytes");
        expect(await engine.readStream(handle.workflowId, "s")).toEqual({ values: [], closed: true });
      } else {
        await works(engine);
      }
      if (option === "poolSize") {
        const [row] = await admin<{ n: number }[]>`
          select count(*)::int as n from pg_stat_activity where application_name = ${engine.applicationName("pool")}`;
        expect(row!.n).toBeLessThanOrEqual(value as number);
      }
    } finally {
      await timers.stop();
    }
    expect(timers.overflows, "a timer past 2^31 - 1 ms, which Node fires after 1 ms").toEqual([]);
    expect(reconnects).toBe(0);
  });
});
