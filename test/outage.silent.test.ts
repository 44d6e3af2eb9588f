// Two ways a call used to wait far past retryTimeoutMs (found by the black-box attack):
// - a silent TCP path (a NAT or load balancer that forgot the connection drops its
//   packets without closing it): a query waited for the kernel's keepalive, ~11 minutes,
//   and getStatus, a workflow's writes and engine.close() with it;
// - many calls at once while Postgres refuses connections: postgres.js queues them until
//   a connection answers, and each call's own window only started when it got one (20
//   calls with retryTimeoutMs 1 s took up to 11 s).
import { afterEach, describe, expect, it } from "vitest";
import { CONNECT_TIMEOUT_MS } from "../src/db/connect.js";
import { ConnectionError, type Engine } from "../src/index.js";
import { PausableProxy } from "./faults/support/proxy.js";
import { databaseUrl, gate, openEngine, within } from "./support/engines.js";
import { OutageDoor } from "./support/outage.js";

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((close) => close()));
});

/** What the promise settled with, and after how many ms. */
async function timed(promise: Promise<unknown>): Promise<{ outcome: unknown; ms: number }> {
  const started = Date.now();
  const outcome = await promise.then((value) => value, (error: unknown) => error);
  return { outcome, ms: Date.now() - started };
}

describe("many calls at once while Postgres refuses connections", () => {
  it("each rejects with ConnectionError about retryTimeoutMs after it was made, however many wait", async () => {
    const door = await OutageDoor.open(databaseUrl);
    closers.push(() => door.close());
    const engine = await openEngine({ databaseUrl: door.url(databaseUrl), retryTimeoutMs: 800 });
    engine.on("error", () => {});
    await door.down();
    const calls = Array.from({ length: 20 }, (_, i) => timed(engine.retrieveWorkflow(`w${i}`).getStatus()));
    const results = await within(20_000, "20 calls", Promise.all(calls));
    for (const { outcome, ms } of results) {
      expect(outcome).toBeInstanceOf(ConnectionError);
      expect(ms).toBeLessThan(800 + 1500);
    }
    await door.up();
    await expect(engine.retrieveWorkflow("w0").getStatus()).rejects.toMatchObject({ code: "WORKFLOW_NOT_FOUND" });
  });
});

describe("a query connection whose TCP path goes silent", () => {
  it(`a call on it fails over to a new connection within max(retryTimeoutMs, ${CONNECT_TIMEOUT_MS} ms); a run's write and close() are not held`, async () => {
    const target = new URL(databaseUrl);
    const proxy = await PausableProxy.start({ host: target.hostname, port: Number(target.port || 5432) });
    closers.push(() => proxy.close());
    const engine: Engine = await openEngine({ databaseUrl: proxy.url(databaseUrl), retryTimeoutMs: 1000, poolSize: 1 });
    const errors: unknown[] = [];
    engine.on("error", (error) => errors.push(error));
    const wrote = gate();
    const release = gate();
    const wf = engine.workflow("silent", async (ctx) => {
      await ctx.writeStream("s", "before");
      wrote.open();
      await release.promise;
      await ctx.writeStream("s", "after");
      return "done";
    });
    const handle = await wf.start();
    await within(5000, "the first write", wrote.promise);
    // Every byte on the pool's open connection is dropped from now on; new connections work.
    expect(proxy.blackhole((c) => c.applicationName === engine.applicationName("pool"))).toBe(1);
    release.open();
    const status = await within(CONNECT_TIMEOUT_MS + 10_000, "getStatus", timed(handle.getStatus()));
    // Answered on a new connection once the silent one was given up (or ConnectionError).
    expect(status.ms).toBeLessThan(CONNECT_TIMEOUT_MS + 5000);
    if (!(status.outcome instanceof ConnectionError)) expect(["PENDING", "SUCCESS"]).toContain(status.outcome);
    // The run's next write queued behind the silent connection: within its window it is
    // answered on a new connection, or rejected with ConnectionError (never held), and
    // the run, abandoned, is finished by launch() (the README's contract for writes).
    const abandoned = new Promise<"abandoned">((resolve) =>
      engine.on("error", (e) => e instanceof ConnectionError && /append to stream/.test(e.message) && resolve("abandoned")),
    );
    const run = await within(CONNECT_TIMEOUT_MS + 5000, "the run", Promise.race([handle.getResult(), abandoned]));
    if (run !== "done") {
      // Asked again until the silent connection is given up (each ask fails within its window).
      const status = (): Promise<string> => handle.getStatus().catch((e: unknown) => (e instanceof ConnectionError ? status() : Promise.reject(e)));
      expect(await within(CONNECT_TIMEOUT_MS + 5000, "the status on a new connection", status())).toBe("PENDING");
      await engine.launch();
      expect(await within(10_000, "the launched run", handle.getResult())).toBe("done");
    }
    expect((await engine.readStream(handle.workflowId, "s")).values).toEqual(["before", "after"]);
    const closing = await within(CONNECT_TIMEOUT_MS + 5000, "close", timed(engine.close()));
    expect(closing.ms).toBeLessThan(CONNECT_TIMEOUT_MS + 2000);
    expect(errors.every((e) => e instanceof ConnectionError)).toBe(true);
  }, 60_000);
});

describe("every connection silent, new ones unanswered (a blackholed path)", () => {
  it("a run's write rejects with ConnectionError within max(retryTimeoutMs, 10 s); waits end at their signal", async () => {
    // Found by the black-box attack: the write took 30 s with retryTimeoutMs 2 s (its
    // attempt had no deadline: queued for a connection, it sat through connect timeouts),
    // and getResult/waitForWorkflow with a signal ended 16 s after it fired (their status
    // read was not raced against it).
    const target = new URL(databaseUrl);
    const proxy = await PausableProxy.start({ host: target.hostname, port: Number(target.port || 5432) });
    closers.push(() => proxy.close());
    const engine: Engine = await openEngine({ databaseUrl: proxy.url(databaseUrl), retryTimeoutMs: 2000 });
    engine.on("error", () => {});
    closers.push(() => engine.close());
    const wrote = gate();
    const release = gate();
    let second: Promise<{ outcome: unknown; ms: number }> | undefined;
    const wf = engine.workflow("blackholed", async (ctx) => {
      await ctx.writeStream("s", "before");
      wrote.open();
      await release.promise;
      second = timed(ctx.writeStream("s", "after"));
      await second;
      return "done";
    });
    const handle = await wf.start();
    await within(5000, "the first write", wrote.promise);
    proxy.holdNew(() => true);
    proxy.blackhole(() => true);
    const waiting = new AbortController();
    const result = timed(handle.getResult({ signal: waiting.signal }));
    const waited = timed(engine.waitForWorkflow(handle.workflowId, waiting.signal));
    release.open();
    await within(5000, "the second write to start", new Promise<void>((resolve) => {
      const look = () => (second ? resolve() : setImmediate(look));
      look();
    }));
    setTimeout(() => waiting.abort(new Error("the caller gave up")), 1000);
    const write = await within(CONNECT_TIMEOUT_MS + 10_000, "the second write", second!);
    expect(write.outcome).toBeInstanceOf(ConnectionError);
    expect(write.ms).toBeLessThan(CONNECT_TIMEOUT_MS + 3000);
    for (const wait of [await within(10_000, "getResult", result), await within(10_000, "waitForWorkflow", waited)]) {
      expect(String(wait.outcome)).toMatch(/the caller gave up/);
      expect(wait.ms).toBeLessThan(1000 + 1000);
    }
  }, 60_000);
});

