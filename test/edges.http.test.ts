// Edge matrix 1, the two timer options of pgtide/http's streamResponse: heartbeatMs (an
// interval of SSE comment lines) and timeoutMs (how long the answer waits for Postgres),
// at every numeric edge and 2^31 − 1, 2^31. A value refused is an InvalidArgumentError
// naming the option, thrown to the app before any answer; a value accepted must work:
// the SSE body carries the stream and its close, and no timer is one that Node fires
// after 1 ms instead (TimeoutOverflowWarning) — a heartbeat asked for every 2^31 ms must
// never become a comment line every millisecond.
import { beforeAll, describe, expect, it } from "vitest";
import { streamResponse } from "../src/http/index.js";
import { InvalidArgumentError, type Engine } from "../src/index.js";
import { expectRefusal, MAX_TIMER_MS, outcome, TIMER_NUMBERS, watchTimers } from "./edges.support.js";
import { openEngine, within } from "./support/engines.js";

let engine: Engine;
let doneId: string;

beforeAll(async () => {
  engine = await openEngine();
  const wf = engine.workflow("three", async (ctx) => {
    for (const v of ["a", "b", "c"]) await ctx.writeStream("s", v);
  });
  const handle = await wf.start();
  await handle.getResult();
  doneId = handle.workflowId;
});

type Verdict = "accept" | "refuse" | "either";
/** A positive number of milliseconds a Node timer honours; 1 ms is asked for, so allowed. */
const EXPECTED: Record<"heartbeatMs" | "timeoutMs", Record<string, Verdict>> = {
  heartbeatMs: { "1": "either", "1.5": "either", "2^31 - 1": "accept" },
  timeoutMs: { "1": "accept", "1.5": "accept", "2^31 - 1": "accept" },
};
const cases = (["heartbeatMs", "timeoutMs"] as const).flatMap((option) =>
  TIMER_NUMBERS.map(([label, value]) => [option, label, option, value] as const));

describe("streamResponse timer options", () => {
  it.each(cases)("%s %s", async (_, label, option, value) => {
    const verdict = EXPECTED[option][label] ?? "refuse";
    const timers = watchTimers();
    try {
      const request = new Request(`http://localhost/streams/${doneId}/s`);
      const answered = await outcome(() =>
        streamResponse(engine, { workflowId: doneId, key: "s", request, authorize: () => true, [option]: value }));
      if (verdict === "refuse" || !answered.ok) {
        if (verdict === "accept") throw new Error(`${option} ${label} was refused: ${String((answered as { error: unknown }).error)}`);
        expectRefusal(answered, InvalidArgumentError, "INVALID_ARGUMENT", option);
        if (typeof value === "number" && value > MAX_TIMER_MS) {
          expect((answered as { error: Error }).error.message).toContain(String(MAX_TIMER_MS));
        }
        return;
      }
      const response = answered.value as Response;
      if (option === "timeoutMs" && (value as number) < 1000) {
        // The door may give up before Postgres answers: a 503 is that option's documented outcome.
        expect([200, 503]).toContain(response.status);
        if (response.status === 503) return void (await response.body?.cancel());
      } else {
        expect(response.status).toBe(200);
      }
      const body = await within(10_000, "the SSE body", response.text());
      for (const v of ["a", "b", "c"]) expect(body).toContain(`data: ${JSON.stringify(v)}`);
      expect(body).toContain("event: close");
      if (option === "heartbeatMs") {
        expect(await within(1000, "the heartbeat timer", timers.effectiveDelayOf((delay) => delay === value))).toBe(value);
      }
    } finally {
      await timers.stop();
    }
    expect(timers.overflows, "a timer past 2^31 - 1 ms, which Node fires after 1 ms").toEqual([]);
  });
});
