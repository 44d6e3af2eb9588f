// An outage is never an outcome (DESIGN invariant 10). When Postgres is unreachable at
// the moment a run talks to it (saving a step, finishing), the call is retried for
// retryTimeoutMs; a brief outage is invisible, a longer one abandons the run with the
// workflow left PENDING, and launch() finishes it once Postgres is back. (A step whose
// save met ECONNREFUSED used to be stored as the workflow's ERROR.)
import { afterEach, describe, expect, it } from "vitest";
import { ConnectionError, Engine } from "../src/index.js";
import { databaseUrl, gate, openEngine, within } from "./support/engines.js";
import { OutageDoor } from "./support/outage.js";

const doors: OutageDoor[] = [];
afterEach(async () => {
  await Promise.all(doors.splice(0).map((door) => door.close()));
});

/** An engine whose every connection goes through a door the test can shut. */
async function engineBehindDoor(retryTimeoutMs: number): Promise<{ engine: Engine; door: OutageDoor; errors: unknown[] }> {
  const door = await OutageDoor.open(databaseUrl);
  doors.push(door);
  const engine = await openEngine({ databaseUrl: door.url(databaseUrl), retryTimeoutMs, heartbeatMs: 200 });
  const errors: unknown[] = [];
  engine.on("error", (error) => errors.push(error));
  return { engine, door, errors };
}

/** The first 'error' event whose message names `what` (the listener reports its own retries too). */
function reportOf(engine: Engine, what: string): Promise<unknown> {
  return new Promise((resolve) => {
    const listener = (error: unknown) => {
      if (!String((error as Error)?.message).includes(what)) return;
      engine.off("error", listener);
      resolve(error);
    };
    engine.on("error", listener);
  });
}

/** A workflow whose one step waits for `stepGate`, then returns `before → after` values around it. */
function gatedStep(engine: Engine) {
  const stepGate = gate();
  const stepStarted = gate();
  const stepRuns: number[] = [];
  const wf = engine.workflow("gated", async (ctx) => {
    await ctx.writeStream("s", "before");
    const value = await ctx.step("slow", async () => {
      stepRuns.push(stepRuns.length);
      stepStarted.open();
      await stepGate.promise;
      return 7;
    });
    await ctx.writeStream("s", value);
    return value * 6;
  });
  return { wf, stepGate, stepStarted, stepRuns };
}

describe("Postgres unreachable while a run saves a step", () => {
  it("a brief outage is retried through: the workflow succeeds as if nothing happened", async () => {
    const { engine, door, errors } = await engineBehindDoor(20_000);
    const { wf, stepGate, stepStarted, stepRuns } = gatedStep(engine);
    const handle = await wf.start();
    await within(5000, "the step to start", stepStarted.promise);
    await door.down("reset");
    stepGate.open();
    await within(10_000, "the save to be retried", door.droppedAtLeast(3));
    await door.up();
    expect(await within(15_000, "the result", handle.getResult())).toBe(42);
    expect(await engine.readStream(handle.workflowId, "s")).toEqual({ values: ["before", 7], closed: true });
    expect(stepRuns).toHaveLength(1);
    // Only the listener's reconnect attempts are reported; no run was abandoned.
    expect(errors.filter((e) => !String((e as Error).message).includes("listen for notifications"))).toEqual([]);
  });

  it.each(["refuse", "reset"] as const)(
    "past retryTimeoutMs (%s): the run is abandoned, the workflow stays PENDING, and launch() finishes it",
    async (mode) => {
      const { engine, door, errors } = await engineBehindDoor(600);
      const { wf, stepGate, stepStarted, stepRuns } = gatedStep(engine);
      const handle = await wf.start();
      await within(5000, "the step to start", stepStarted.promise);
      const abandoned = reportOf(engine, "save step");
      await door.down(mode);
      stepGate.open();
      const reported = await within(10_000, "the run to be abandoned", abandoned);
      expect(reported).toBeInstanceOf(ConnectionError);
      expect(reported).toMatchObject({ code: "CONNECTION", message: expect.stringContaining("save step") });
      await door.up();
      expect(await handle.getStatus()).toBe("PENDING");
      await engine.launch();
      expect(await within(15_000, "the result after launch", handle.getResult())).toBe(42);
      expect(await engine.readStream(handle.workflowId, "s")).toEqual({ values: ["before", 7], closed: true });
      expect(stepRuns).toHaveLength(2); // the step's result was never stored: it ran again
      expect(errors.every((e) => e instanceof ConnectionError)).toBe(true);
    },
  );
});

describe("Postgres unreachable when a run finishes", () => {
  it("past retryTimeoutMs the workflow stays PENDING (never ERROR) and launch() finishes it, without redoing the stored step", async () => {
    const { engine, door } = await engineBehindDoor(600);
    const finishGate = gate();
    const atEnd = gate();
    let stepRuns = 0;
    const wf = engine.workflow("finish-in-outage", async (ctx) => {
      const v = await ctx.step("once", () => ++stepRuns);
      atEnd.open();
      await finishGate.promise;
      return v;
    });
    const handle = await wf.start();
    await within(5000, "the end of the workflow code", atEnd.promise);
    const abandoned = reportOf(engine, "finish workflow");
    await door.down();
    finishGate.open();
    expect(await within(10_000, "the finish to give up", abandoned)).toMatchObject({
      code: "CONNECTION", message: expect.stringContaining("finish workflow"),
    });
    await door.up();
    expect(await handle.getStatus()).toBe("PENDING");
    await engine.launch();
    expect(await within(10_000, "the result", handle.getResult())).toBe(1);
    expect(stepRuns).toBe(1);
  });
});

describe("Postgres unreachable when a recovered run starts", () => {
  it("launch() itself waits out a brief outage, then the run resumes", async () => {
    const { engine, door } = await engineBehindDoor(20_000);
    let stepRuns = 0;
    const wf = engine.workflow("resume-after-outage", async (ctx) => ctx.step("s", () => ++stepRuns));
    void wf;
    await door.down("reset");
    const launching = engine.launch();
    await within(10_000, "launch to retry", door.droppedAtLeast(2));
    await door.up();
    await within(10_000, "launch", launching);
  });

  it("past retryTimeoutMs launch() rejects with ConnectionError and nothing changes", async () => {
    const { engine, door } = await engineBehindDoor(500);
    await door.down();
    const error = await engine.launch().then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect(error).toMatchObject({ code: "CONNECTION", message: expect.stringContaining("launch") });
  });
});

describe("Engine.open while Postgres is unreachable", () => {
  it("gives up after retryTimeoutMs (at least the 10 s connect timeout) with ConnectionError, even for a URL of several hosts that all refuse (the driver alone cycles through them for ever)", async () => {
    const started = Date.now();
    const error = await Engine.open({ databaseUrl: "postgres://u@127.0.0.1:1,127.0.0.1:2/db", retryTimeoutMs: 800 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ConnectionError);
    expect(error).toMatchObject({ message: expect.stringMatching(/^cannot reach Postgres at postgres:\/\/u@127\.0\.0\.1:1,127\.0\.0\.1:2\/db/) });
    expect(Date.now() - started).toBeLessThan(15_000);
  }, 30_000);
});

describe("Engine.open with a URL no connection can use", () => {
  it("an IPv6 address in brackets is refused up front, naming the problem (the driver would look up the host \"[\")", async () => {
    const error = await Engine.open({ databaseUrl: "postgres://postgres@[::1]:5432/db" }).then(() => undefined, (e: unknown) => e);
    expect(error).toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/IPv6 address in brackets/) });
  });

  it("an unknown host name is a ConnectionError after retryTimeoutMs (DNS may not know it yet), never a DatabaseError", async () => {
    const error = await Engine.open({ databaseUrl: "postgres://postgres@no-such-host.invalid:5432/db", retryTimeoutMs: 500 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ConnectionError);
    expect(error).toMatchObject({ message: expect.stringMatching(/ENOTFOUND/) });
  }, 20_000);
});
